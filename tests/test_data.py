"""Dataset loaders, on real files made here and the real MNIST digits that ship beside the repo."""

import gzip
import io
import tarfile
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from kgan_core.data import BUILTIN_DATASETS, DatasetError, images_from_model, images_to_model, load_dataset


def png(color, size=(6, 6), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name, modes, sigma", [("ring8", 8, 0.02), ("grid25", 25, 0.05)])
def test_mixtures(name, modes, sigma):
    a = load_dataset(name, n_points=5000, seed=1)
    assert a.kind == "points" and a.x.shape == (5000, 2) and a.x.dtype == torch.float32
    assert a.centres.shape == (modes, 2) and a.sigma == sigma
    assert torch.equal(a.x, load_dataset(name, n_points=5000, seed=1).x)
    assert not torch.equal(a.x, load_dataset(name, n_points=5000, seed=2).x)
    nearest = torch.cdist(a.x, a.centres).min(1)
    assert torch.equal(nearest.indices, a.labels)
    assert float(nearest.values.max()) < 6 * sigma
    assert torch.bincount(a.labels, minlength=modes).min() > 5000 / modes * 0.7


def test_ring8_centres_sit_on_radius_two():
    assert torch.allclose(load_dataset("ring8").centres.norm(dim=1), torch.full((8,), 2.0))


def test_mnist_from_the_shared_idx_files(shared_mnist):
    d = load_dataset("mnist", root=shared_mnist)
    assert d.x.shape == (10000, 1, 28, 28) and d.x.dtype == torch.uint8
    assert d.labels.shape == (10000,) and set(d.labels.tolist()) == set(range(10))
    same = load_dataset(shared_mnist, image_size=32, limit=100)
    assert same.x.shape == (100, 1, 32, 32) and torch.equal(same.labels, d.labels[:100])


def test_corrupt_idx_file_is_named(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 20))
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset(tmp_path)


def test_folder_with_subfolder_labels_grey_and_rgb(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(png((255, 0, 0)))
    (tmp_path / "dogs" / "b.png").write_bytes(png(128, mode="L"))
    (tmp_path / ".hidden.png").write_bytes(b"junk")
    d = load_dataset(tmp_path)
    assert d.x.shape == (2, 3, 6, 6) and d.labels.tolist() == [0, 1]  # mixed modes -> RGB
    grey = load_dataset(tmp_path, channels=1, image_size=8)
    assert grey.x.shape == (2, 1, 8, 8)
    assert int(grey.x[1].float().mean().round()) == 128


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar"])
def test_archives_round_trip(tmp_path, kind):
    members = {f"img{i}.png": png((i * 40, 0, 0)) for i in range(3)}
    path = tmp_path / f"data.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz" if kind == "tar.gz" else "w") as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    d = load_dataset(path)
    assert d.x.shape == (3, 3, 6, 6) and d.labels is None
    assert d.x[:, 0, 0, 0].tolist() == [0, 40, 80]


def test_npy_points_and_npz_images(tmp_path):
    np.save(tmp_path / "pts.npy", np.random.default_rng(0).normal(size=(50, 3)))
    pts = load_dataset(tmp_path / "pts.npy")
    assert pts.kind == "points" and pts.x.shape == (50, 3) and pts.x.dtype == torch.float32
    images = np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype(np.float32)
    np.savez(tmp_path / "im.npz", images=images, labels=np.arange(4))
    im = load_dataset(tmp_path / "im.npz")
    assert im.kind == "images" and im.x.shape == (4, 3, 8, 8) and im.labels.tolist() == [0, 1, 2, 3]
    assert abs(int(im.x[0, 0, 0, 0]) - round(float(images[0, 0, 0, 0]) * 255)) <= 1


def test_model_range_round_trip():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    f = images_to_model(x)
    assert f.min() == -1 and f.max() == 1
    assert torch.equal(images_from_model(f), x)


def test_lfw_subset_ships_offline():
    d = load_dataset("lfw-subset")
    assert d.x.shape == (200, 1, 25, 25) and d.x.dtype == torch.uint8


@pytest.mark.parametrize("name", ["fashion-mnist", "lfw"])
def test_download_only_datasets_fail_fast_offline_naming_the_folder(tmp_path, name):
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=str(tmp_path)):
        load_dataset(name, root=tmp_path)
    assert time.perf_counter() - start < 15


def test_bad_inputs_name_what_is_wrong(tmp_path):
    with pytest.raises(DatasetError, match="built-in datasets are"):
        load_dataset("ring9")
    with pytest.raises(DatasetError, match="neither a built-in"):
        load_dataset(tmp_path / "missing.zip")
    (tmp_path / "fake.png").write_bytes(b"this is not a png")
    with pytest.raises(DatasetError, match="fake.png"):
        load_dataset(tmp_path)
    trunc = tmp_path / "t"
    trunc.mkdir()
    (trunc / "cut.png").write_bytes(png((1, 2, 3), size=(64, 64))[:60])
    with pytest.raises(DatasetError, match="cut.png"):
        load_dataset(trunc)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        load_dataset(empty)
    np.save(tmp_path / "rank5.npy", np.zeros((2, 1, 1, 1, 1)))
    with pytest.raises(DatasetError, match="rank 5"):
        load_dataset(tmp_path / "rank5.npy")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="notes.txt"):
        load_dataset(tmp_path / "notes.txt")


def test_pixel_limit_and_links_in_tar(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    (big / "huge.png").write_bytes(png(0, size=(300, 300), mode="L"))
    with pytest.raises(DatasetError, match="huge.png.*over the limit"):
        load_dataset(big, max_pixels=200 * 200)
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as t:
        info = tarfile.TarInfo("evil.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    with pytest.raises(DatasetError, match="link"):
        load_dataset(path)


def test_builtin_names_are_listed():
    assert set(BUILTIN_DATASETS) == {"ring8", "grid25", "mnist", "fashion-mnist", "lfw", "lfw-subset"}
