"""The learned image prior for activation maximisation (docs/architecture.md §4; DGN-AM,
Nguyen et al. 2016).

An encoder E maps an image to a code h; a decoder G_prior turns codes back into images.
Activation maximisation then optimises a code instead of pixels, kept inside the region of
code space real images occupy (``region``), so every image it can reach is a decoded code.
For that to mean "looks like the data", random codes in the region must decode to images
like the data — which the independent judge checks (``metrics``), against a PCA decoder.

    networks   encoders (small, critic, vgg16), decoder   encoders.py, decoder.py
    region     per-dimension and length bounds of codes    region.py
    file       the Prior and its safetensors format        model.py
    training   PriorConfig, train_prior                    training.py
    metrics    reconstruction, realism by the judge, PCA   metrics.py
"""

from kgan_core.prior.decoder import Decoder, ImageDiscriminator
from kgan_core.prior.encoders import (
    ENCODERS,
    VGG16_FILE,
    VGG16_URL,
    CriticEncoder,
    SmallEncoder,
    VGGEncoder,
    load_vgg16_encoder,
    vgg16_weight_candidates,
)
from kgan_core.prior.errors import EncoderWeightsMissing, PriorError, PriorMismatchError
from kgan_core.prior.metrics import JudgeRealism, PCADecoder, code_psnr_ssim, ssim_psnr
from kgan_core.prior.model import PRIOR_FORMAT, Prior, load_prior
from kgan_core.prior.region import CodeRegion
from kgan_core.prior.training import PriorConfig, PriorProgress, PriorResult, holdout_split, train_prior

__all__ = [
    "ENCODERS", "PRIOR_FORMAT", "VGG16_FILE", "VGG16_URL", "CodeRegion", "CriticEncoder", "Decoder",
    "EncoderWeightsMissing", "ImageDiscriminator", "JudgeRealism", "PCADecoder", "Prior", "PriorConfig",
    "PriorError", "PriorMismatchError", "PriorProgress", "PriorResult", "SmallEncoder", "VGGEncoder",
    "code_psnr_ssim", "holdout_split", "load_prior", "load_vgg16_encoder", "ssim_psnr", "train_prior",
    "vgg16_weight_candidates",
]
