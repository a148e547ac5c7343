"""Training throughput on a CUDA device: the table of benchmarks/throughput.py, GPU settings on.

    .venv/bin/python benchmarks/gpu.py [--device cuda] [--ks 1,3,8,16] [--seconds 3] [--no-amp]

bf16 autocast and channels-last convolutions are on for CUDA (tensor cores, NHWC cuDNN
kernels) and off elsewhere: on CPU they only slow the step down. The same script runs on
CPU, slowly, with a tiny setting (tests/test_nn.py does that), so it cannot rot between
the occasions a GPU is lent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import parser, table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = parser()
    p.set_defaults(device="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-amp", action="store_true", help="fp32 even on CUDA")
    p.add_argument("--no-channels-last", action="store_true", help="NCHW even on CUDA")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernel once
    gpu = device.type == "cuda"
    for line in table(device, [int(x) for x in args.ks.split(",")], args.nets.split(","), args.batch,
                      args.n_critic, args.seconds, amp=gpu and not args.no_amp,
                      channels_last=gpu and not args.no_channels_last):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
