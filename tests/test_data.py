"""Dataset loaders, on real files made here and the real MNIST digits the package ships."""

import gzip
import io
import os
import socket
import stat
import struct
import tarfile
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from kgan_core.data import (
    BUILTIN_DATASETS,
    Dataset,
    DatasetError,
    builtin,
    images_from_model,
    images_to_model,
    load_dataset,
)
from kgan_core.data.builtin import available_offline
from kgan_core.data.files import decode_image
from kgan_core.data.network import reachable


def encode(color, size=(6, 6), mode="RGB", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format=fmt)
    return buf.getvalue()


def noise(size=(12, 12), channels=3, seed=0) -> np.ndarray:
    shape = (size[1], size[0], channels) if channels == 3 else (size[1], size[0])
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def png_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_tree(folder, files: dict[str, bytes]):
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def write_zip(path, files: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def write_tar(path, files: dict[str, bytes], compression=""):
    with tarfile.open(path, f"w:{compression}") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


# --- 2-D mixtures --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, modes, sigma", [("ring8", 8, 0.02), ("grid25", 25, 0.05)])
def test_mixtures_are_seeded_samples_around_their_centres(name, modes, sigma):
    a = load_dataset(name, n_points=5000, seed=1)
    assert a.kind == "points" and a.x.shape == (5000, 2) and a.x.dtype == torch.float32 and a.item_shape == (2,)
    assert a.centres.shape == (modes, 2) and a.centres.dtype == torch.float32 and a.sigma == sigma
    assert torch.equal(a.x, load_dataset(name, n_points=5000, seed=1).x)
    assert not torch.equal(a.x, load_dataset(name, n_points=5000, seed=2).x)
    nearest = torch.cdist(a.x, a.centres).min(1)
    assert torch.equal(nearest.indices, a.labels) and a.labels.dtype == torch.int64
    assert float(nearest.values.max()) < 6 * sigma
    assert torch.bincount(a.labels, minlength=modes).min() > 5000 / modes * 0.7
    assert torch.equal(a.to_model(a.x), a.x)


def test_mixture_centres_follow_the_design():
    ring = load_dataset("ring8").centres
    angles = torch.arange(8) * (2 * torch.pi / 8)
    assert torch.allclose(ring, 2 * torch.stack([angles.cos(), angles.sin()], 1), atol=1e-6)
    grid = {tuple(c) for c in load_dataset("grid25").centres.tolist()}
    assert grid == {(x, y) for x in (-4.0, -2.0, 0.0, 2.0, 4.0) for y in (-4.0, -2.0, 0.0, 2.0, 4.0)}


def test_limit_keeps_the_first_points():
    full = load_dataset("grid25", n_points=300, seed=4)
    cut = load_dataset("grid25", n_points=300, seed=4, limit=40)
    assert torch.equal(cut.x, full.x[:40]) and torch.equal(cut.labels, full.labels[:40])


# --- MNIST and IDX --------------------------------------------------------------------------------


def test_mnist_from_the_bundled_idx_files(mnist_dir):
    d = load_dataset("mnist", root=mnist_dir)
    assert d.name == "mnist" and d.kind == "images"
    assert d.x.shape == (10000, 1, 28, 28) and d.x.dtype == torch.uint8 and d.x.is_contiguous()
    assert d.labels.shape == (10000,) and set(d.labels.tolist()) == set(range(10))
    assert d.classes == tuple("0123456789")
    as_folder = load_dataset(mnist_dir)
    assert torch.equal(as_folder.x, d.x) and torch.equal(as_folder.labels, d.labels)
    small = load_dataset(mnist_dir, image_size=32, limit=100)
    assert small.x.shape == (100, 1, 32, 32) and torch.equal(small.labels, d.labels[:100])
    one_file = load_dataset(mnist_dir / "t10k-images-idx3-ubyte.gz", limit=7)
    assert torch.equal(one_file.x, d.x[:7]) and torch.equal(one_file.labels, d.labels[:7])


def test_mnist_needs_no_files_beside_the_package(tmp_path):
    # A fresh clone or the Docker image: an empty root still finds the bundled test digits.
    d = load_dataset("mnist", root=tmp_path, limit=10)
    assert d.x.shape == (10, 1, 28, 28) and d.classes == tuple("0123456789")
    assert load_dataset("mnist", limit=10).x.equal(d.x)


def test_mnist_resized_to_32_keeps_the_digits(mnist_dir):
    d = load_dataset("mnist", root=mnist_dir, limit=500)
    big = load_dataset("mnist", root=mnist_dir, limit=500, image_size=32)
    assert big.x.shape == (500, 1, 32, 32) and big.x.dtype == torch.uint8
    assert abs(big.x.float().mean() - d.x.float().mean()) < 3  # same ink, spread over more pixels
    rgb = load_dataset("mnist", root=mnist_dir, limit=5, channels=3)
    assert rgb.x.shape == (5, 3, 28, 28)
    assert torch.equal(rgb.x[:, 0], d.x[:5, 0]) and torch.equal(rgb.x[:, 2], d.x[:5, 0])


def test_train_and_test_pairs_load_train_first(tmp_path):
    train, test = np.full((3, 4, 4), 10, np.uint8), np.full((2, 4, 4), 200, np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx(train))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx(np.array([1, 2, 3])))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(test)))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(np.array([4, 5]))))
    d = load_dataset("mnist", root=tmp_path)
    assert d.x[:, 0, 0, 0].tolist() == [10, 10, 10, 200, 200] and d.labels.tolist() == [1, 2, 3, 4, 5]


def test_fashion_mnist_is_read_from_root_without_any_download(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"  # where torchvision's download leaves it
    raw.mkdir(parents=True)
    assert not available_offline("fashion-mnist", tmp_path)
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx(np.zeros((4, 28, 28), np.uint8)))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx(np.array([0, 9, 3, 3])))
    assert available_offline("fashion-mnist", tmp_path)
    d = load_dataset("fashion-mnist", root=tmp_path)
    assert d.name == "fashion-mnist" and d.x.shape == (4, 1, 28, 28) and d.classes[9] == "Ankle boot"


@pytest.mark.parametrize("content, why", [
    (gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 20), "truncated"),
    (gzip.compress(b"\x12\x34\x08\x03" + b"\x00" * 20), "magic"),
    (gzip.compress(idx(np.zeros((2, 4, 4), np.uint8)))[:30], "cannot read"),
    (b"not gzip at all", "cannot read"),
])
def test_corrupt_idx_files_are_named(tmp_path, content, why):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(content)
    with pytest.raises(DatasetError, match=f"t10k-images-idx3-ubyte.gz.*{why}|{why}.*t10k-images-idx3-ubyte.gz"):
        load_dataset(tmp_path)


def test_idx_labels_that_do_not_match_the_images_are_named(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx(np.zeros((3, 4, 4), np.uint8)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx(np.array([1, 2])))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=tmp_path)


# --- folders and archives of images ---------------------------------------------------------------


def test_folder_with_subfolder_labels_grey_and_rgb(tmp_path):
    write_tree(tmp_path, {"cats/a.png": encode((255, 0, 0)), "dogs/b.png": encode(128, mode="L"),
                          "dogs/c.jpg": encode((0, 0, 255), fmt="JPEG"), ".hidden.png": b"junk",
                          "cats/.DS_Store": b"junk", "notes.txt": b"ignored"})
    d = load_dataset(tmp_path)
    assert d.name == tmp_path.name and d.kind == "images"
    assert d.x.shape == (3, 3, 6, 6) and d.labels.tolist() == [0, 1, 1]  # any colour -> all RGB
    assert d.classes == ("cats", "dogs")
    assert d.x[0, :, 0, 0].tolist() == [255, 0, 0] and d.x[1, :, 0, 0].tolist() == [128, 128, 128]
    grey = load_dataset(tmp_path, channels=1, image_size=8)
    assert grey.x.shape == (3, 1, 8, 8)
    assert grey.x[1].unique().tolist() == [128] and grey.x[0].unique().tolist() == [76]  # PIL's luma of red


def test_all_grey_folder_stays_grey_and_channels_3_makes_rgb(tmp_path):
    write_tree(tmp_path, {"a.png": encode(10, mode="L"), "b.gif": encode(20, mode="L", fmt="GIF"),
                          "c.bmp": encode(30, mode="L", fmt="BMP")})
    d = load_dataset(tmp_path)
    assert d.x.shape == (3, 1, 6, 6) and d.x[:, 0, 0, 0].tolist() == [10, 20, 30] and d.labels is None
    assert load_dataset(tmp_path, channels=3).x.shape == (3, 3, 6, 6)


def test_sixteen_bit_and_alpha_images_are_scaled_not_clipped(tmp_path):
    deep = Image.fromarray(np.full((5, 5), 32896, np.uint16))  # 128 * 257
    buf = io.BytesIO()
    deep.save(buf, format="PNG")
    write_tree(tmp_path, {"deep.png": buf.getvalue(), "rgba.png": encode((9, 8, 7, 0), size=(5, 5), mode="RGBA")})
    d = load_dataset(tmp_path, channels=1)
    assert d.x[0].unique().tolist() == [128]
    assert load_dataset(tmp_path).x[1, :, 0, 0].tolist() == [9, 8, 7]  # alpha dropped


def test_labels_use_the_first_subfolder_below_a_shared_top_folder(tmp_path):
    files = {"faces/ann/1.png": encode(1, mode="L"), "faces/ann/x/2.png": encode(2, mode="L"),
             "faces/bob/3.png": encode(3, mode="L")}
    d = load_dataset(write_tree(tmp_path / "tree", files))
    assert d.labels.tolist() == [0, 0, 1] and d.classes == ("ann", "bob")
    flat = load_dataset(write_tree(tmp_path / "flat", {"only/1.png": encode(1, mode="L")}))
    assert flat.labels is None and flat.classes is None
    mixed = load_dataset(write_tree(tmp_path / "mixed", {"top.png": encode(1, mode="L"),
                                                         "sub/1.png": encode(1, mode="L")}))
    assert mixed.labels is None


def test_labels_keep_their_class_index_under_limit(tmp_path):
    write_tree(tmp_path, {f"{c}/{i}.png": encode(i, mode="L") for c in ("a", "b", "c") for i in range(2)})
    d = load_dataset(tmp_path, limit=3)
    assert d.n == 3 and d.labels.tolist() == [0, 0, 1] and d.classes == ("a", "b", "c")


def test_decode_image_gives_a_pil_image_for_callers_that_inspect_uploads():
    image = decode_image(encode((255, 0, 0), size=(7, 5)), "upload.png", 4096 * 4096, None)
    assert image.size == (7, 5) and image.mode == "RGB"
    assert decode_image(encode(3, mode="L"), "g.png", 100, 4, "RGB").size == (4, 4)
    with pytest.raises(DatasetError, match="upload.png"):
        decode_image(b"nope", "upload.png", 100, None)


def test_non_square_images_are_centre_cropped_before_resizing(tmp_path):
    image = np.zeros((4, 12), np.uint8)
    image[:, 4:8] = 255  # the centre square is white, the sides black
    write_tree(tmp_path, {"wide.png": png_of(image)})
    d = load_dataset(tmp_path, image_size=8)
    assert d.x.shape == (1, 1, 8, 8) and d.x.min() == 255


def test_images_of_different_sizes_need_image_size(tmp_path):
    write_tree(tmp_path, {"a.png": encode(0, size=(6, 6)), "b.png": encode(0, size=(9, 7))})
    with pytest.raises(DatasetError, match=r"b\.png is 9x7.*image_size"):
        load_dataset(tmp_path)
    assert load_dataset(tmp_path, image_size=5).x.shape == (2, 3, 5, 5)


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tgz"])
def test_archives_load_the_same_pixels_and_labels_as_the_folder(tmp_path, kind):
    files = {f"set/{c}/img{i}.png": png_of(noise(seed=10 * i + len(c))) for c in ("x", "yy") for i in range(3)}
    files["set/readme.txt"] = b"not an image, skipped"
    folder = load_dataset(write_tree(tmp_path / "folder", files))
    path = tmp_path / f"data.{kind}"
    if kind == "zip":
        write_zip(path, files)
    else:
        write_tar(path, files, "" if kind == "tar" else "gz")
    d = load_dataset(path)
    assert d.name == f"data.{kind}" and d.x.shape == (6, 3, 12, 12)
    assert torch.equal(d.x, folder.x) and d.labels.tolist() == [0, 0, 0, 1, 1, 1] and d.classes == ("x", "yy")


def test_folder_and_array_of_the_same_pixels_load_identically(tmp_path):
    images = np.stack([noise(size=(20, 14), seed=s) for s in range(4)])  # (4, 14, 20, 3)
    write_tree(tmp_path / "f", {f"{i}.png": png_of(a) for i, a in enumerate(images)})
    np.save(tmp_path / "a.npy", images)
    for options in ({}, {"image_size": 9}, {"channels": 1, "image_size": 16}):
        from_files = load_dataset(tmp_path / "f", **options)
        from_array = load_dataset(tmp_path / "a.npy", **options)
        assert torch.equal(from_files.x, from_array.x), options


# --- numpy arrays ---------------------------------------------------------------------------------


def test_npy_points_and_npz_points_with_labels(tmp_path):
    points = np.random.default_rng(0).normal(size=(50, 3))
    np.save(tmp_path / "pts.npy", points)
    d = load_dataset(tmp_path / "pts.npy", image_size=8, channels=1)  # image options do not apply to points
    assert d.kind == "points" and d.x.shape == (50, 3) and d.x.dtype == torch.float32 and d.labels is None
    assert np.allclose(d.x.numpy(), points, atol=1e-6)
    np.savez(tmp_path / "pts.npz", y=np.arange(50) % 4, points=points)
    d = load_dataset(tmp_path / "pts.npz", limit=10)
    assert d.x.shape == (10, 3) and d.labels.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize("shape, to_nchw", [
    ((4, 8, 6), lambda a: a[:, None]),
    ((4, 8, 6, 3), lambda a: a.transpose(0, 3, 1, 2)),
    ((4, 8, 6, 1), lambda a: a.transpose(0, 3, 1, 2)),
    ((4, 3, 8, 6), lambda a: a),
])
def test_npy_image_layouts(tmp_path, shape, to_nchw):
    a = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "im.npy", a)
    d = load_dataset(tmp_path / "im.npy")
    assert d.kind == "images" and d.x.shape[0] == 4 and d.x.shape[2:] == (8, 6)
    assert np.array_equal(d.x.numpy(), to_nchw(a))


@pytest.mark.parametrize("values, expected", [
    (np.array([0.0, 0.5, 1.0]), [0, 128, 255]),             # [0, 1]
    (np.array([-1.0, 0.0, 1.0]), [0, 128, 255]),            # [-1, 1], the model range
    (np.array([0.0, 17.0, 255.0]), [0, 17, 255]),           # 8-bit levels stored as float
    (np.array([0, 17, 255], dtype=np.int64), [0, 17, 255]),  # wide integers
    (np.array([False, True, True]), [0, 255, 255]),
])
def test_npz_pixel_ranges_map_to_uint8(tmp_path, values, expected):
    images = np.broadcast_to(values[:, None, None], (3, 4, 4)).copy()
    np.savez(tmp_path / "im.npz", images=images, labels=np.array([2, 0, 1]))
    d = load_dataset(tmp_path / "im.npz")
    assert d.x[:, 0, 0, 0].tolist() == expected and d.labels.tolist() == [2, 0, 1]


def test_model_range_round_trips_from_a_generator_output(tmp_path):
    fake = torch.rand(5, 3, 4, 4) * 2 - 1
    np.save(tmp_path / "fake.npy", fake.numpy())
    d = load_dataset(tmp_path / "fake.npy")
    assert torch.equal(d.x, images_from_model(fake))


def test_npz_with_labels_stored_first_uses_the_other_array(tmp_path):
    np.savez(tmp_path / "d.npz", labels=np.array([1, 0]), pixels=np.zeros((2, 5, 5), np.uint8))
    d = load_dataset(tmp_path / "d.npz")
    assert d.x.shape == (2, 1, 5, 5) and d.labels.tolist() == [1, 0]


# --- model range ----------------------------------------------------------------------------------


def test_model_range_round_trip():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    f = images_to_model(x)
    assert f.dtype == torch.float32 and f.min() == -1 and f.max() == 1
    assert torch.equal(images_from_model(f), x)
    assert images_from_model(torch.tensor([-3.0, -0.999, 0.0, 2.0])).tolist() == [0, 0, 128, 255]
    with pytest.raises(TypeError, match="uint8"):
        images_to_model(f)


def test_to_model_maps_stored_images_to_minus_one_one(mnist_dir):
    d = load_dataset(mnist_dir, limit=64)
    batch = d.to_model(d.x[:16])
    assert batch.dtype == torch.float32 and batch.shape == (16, 1, 28, 28)
    assert batch.min() == -1 and batch.max() == 1 and d.x.dtype == torch.uint8  # the stored copy is untouched


def test_dataset_refuses_inconsistent_tensors():
    with pytest.raises(DatasetError, match="uint8"):
        Dataset("bad", torch.zeros(2, 1, 4, 4), None, "images")
    with pytest.raises(DatasetError, match="labels"):
        Dataset("bad", torch.zeros(2, 3), torch.zeros(3, dtype=torch.int64), "points")


# --- built-ins that need files or ship offline ------------------------------------------------------


def test_lfw_subset_ships_offline():
    d = load_dataset("lfw-subset")
    assert d.x.shape == (200, 1, 25, 25) and d.x.dtype == torch.uint8 and d.x.max() > 200
    assert d.labels.bincount().tolist() == [100, 100] and d.classes == ("face", "non-face")
    assert load_dataset("lfw-subset", image_size=32, channels=3).x.shape == (200, 3, 32, 32)


def test_lfw_is_read_from_an_unpacked_folder_in_root(tmp_path):
    people = {f"lfw-deepfunneled/{p}/{p}_000{i}.jpg": encode((40 * i, 90, 20), size=(25, 25), fmt="JPEG")
              for p in ("Ada_Lovelace", "Alan_Turing") for i in (1, 2)}
    assert not available_offline("lfw", tmp_path)
    write_tree(tmp_path, people)
    assert available_offline("lfw", tmp_path) and available_offline("lfw-subset", tmp_path)
    d = load_dataset("lfw", root=tmp_path, image_size=16, limit=3)
    assert d.name == "lfw" and d.x.shape == (3, 3, 16, 16) and d.labels.tolist() == [0, 0, 1]
    assert d.classes == ("Ada_Lovelace", "Alan_Turing")


@pytest.mark.parametrize("name", ["fashion-mnist", "lfw"])
def test_download_only_datasets_fail_fast_offline_naming_the_folder(tmp_path, name, monkeypatch):
    # As on a machine without network: a test must never download, even where CI has network.
    monkeypatch.setattr("kgan_core.data.builtin.reachable", lambda url, timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=str(tmp_path)):
        load_dataset(name, root=tmp_path)
    assert time.perf_counter() - start < 15
    assert not any(tmp_path.iterdir())  # nothing half-downloaded left behind


def test_reachability_probe_answers_quickly():
    server = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{server.getsockname()[1]}/"
    assert reachable(url)
    server.close()
    start = time.perf_counter()
    assert not reachable(url)  # refused
    assert not reachable("http://kgan-probe.invalid/")  # a name that never resolves (RFC 2606)
    assert time.perf_counter() - start < 10


def test_mnist_missing_names_the_folder_and_files(tmp_path, monkeypatch):
    # Only an install that lost its bundled digits gets here; the message still says what to do.
    monkeypatch.setattr(builtin, "BUNDLED_MNIST", tmp_path / "not-installed")
    with pytest.raises(DatasetError, match=f"{tmp_path}.*t10k-images-idx3-ubyte"):
        load_dataset("mnist", root=tmp_path)


# --- bad inputs -----------------------------------------------------------------------------------


def test_unknown_names_and_missing_paths(tmp_path):
    with pytest.raises(DatasetError, match="'ring9'.*did you mean 'ring8'.*lfw-subset"):
        load_dataset("ring9")
    with pytest.raises(DatasetError, match="missing.zip"):
        load_dataset(tmp_path / "missing.zip")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="notes.txt"):
        load_dataset(tmp_path / "notes.txt")


@pytest.mark.parametrize("options, word", [({"channels": 2}, "channels"), ({"limit": 0}, "limit"),
                                           ({"image_size": 0}, "image_size"), ({"n_points": 0}, "n_points")])
def test_bad_options(options, word):
    with pytest.raises(DatasetError, match=word):
        load_dataset("ring8", **options)


def test_undecodable_and_truncated_files_are_named(tmp_path):
    write_tree(tmp_path / "fake", {"ok.png": encode(0), "fake.png": b"this is not a png"})
    with pytest.raises(DatasetError, match="fake.png"):
        load_dataset(tmp_path / "fake")
    write_tree(tmp_path / "cut", {"cut.png": png_of(noise(size=(64, 64)))[:300]})
    with pytest.raises(DatasetError, match="cut.png"):
        load_dataset(tmp_path / "cut")
    write_tree(tmp_path / "cutjpg", {"cut.jpg": encode((1, 2, 3), size=(64, 64), fmt="JPEG")[:200]})
    with pytest.raises(DatasetError, match="cut.jpg"):
        load_dataset(tmp_path / "cutjpg")


def test_empty_collections_say_what_was_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty holds no images"):
        load_dataset(tmp_path / "empty")
    write_zip(tmp_path / "docs.zip", {"a.txt": b"x", "b.csv": b"y"})
    with pytest.raises(DatasetError, match=r"docs\.zip holds no images.*a\.txt"):
        load_dataset(tmp_path / "docs.zip")


def test_bad_archive_members_are_named(tmp_path):
    write_zip(tmp_path / "bad.zip", {"good.png": encode(0), "inner/broken.png": b"\x89PNG garbage"})
    with pytest.raises(DatasetError, match="inner/broken.png in .*bad.zip"):
        load_dataset(tmp_path / "bad.zip")
    write_tar(tmp_path / "bad.tgz", {"good.png": encode(0), "broken.jpg": b"garbage"}, "gz")
    with pytest.raises(DatasetError, match="broken.jpg in .*bad.tgz"):
        load_dataset(tmp_path / "bad.tgz")


def test_corrupt_archives_are_named(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"PK not really a zip")
    with pytest.raises(DatasetError, match="junk.zip"):
        load_dataset(tmp_path / "junk.zip")
    whole = write_tar(tmp_path / "whole.tar.gz", {f"{i}.png": png_of(noise(seed=i)) for i in range(20)}, "gz")
    (tmp_path / "cut.tar.gz").write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(DatasetError, match="cut.tar.gz"):
        load_dataset(tmp_path / "cut.tar.gz")


def test_links_in_archives_are_refused(tmp_path):
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as t:
        info = tarfile.TarInfo("evil.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    with pytest.raises(DatasetError, match="evil.png.*link"):
        load_dataset(path)
    zpath = tmp_path / "links.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        info = zipfile.ZipInfo("evil.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, "/etc/passwd")
    with pytest.raises(DatasetError, match="evil.png.*link"):
        load_dataset(zpath)


def test_pixel_limit_names_the_file_and_restores_pil(tmp_path):
    pil_limit = Image.MAX_IMAGE_PIXELS
    write_tree(tmp_path, {"huge.png": encode(0, size=(300, 300), mode="L")})
    for max_pixels in (200 * 200, 100 * 100):  # PIL's own warning band, and its hard limit
        with pytest.raises(DatasetError, match="huge.png.*over the limit of max_pixels"):
            load_dataset(tmp_path, max_pixels=max_pixels)
    assert pil_limit == Image.MAX_IMAGE_PIXELS
    assert load_dataset(tmp_path, max_pixels=300 * 300).x.shape == (1, 1, 300, 300)


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 1, 1, 1, 1)), "rank 5"),
    (np.arange(5.0), "rank 1"),
    (np.float32(3.0), "rank 0"),
    (np.zeros((0, 4)), "empty"),
    (np.zeros((2, 5, 5, 4)), "1 or 3 channels"),
    (np.full((2, 4, 4), 300.0), r"\[0, 1\], \[-1, 1\] or \[0, 255\]"),
    (np.full((2, 4, 4), -5, dtype=np.int16), "0..255"),
    (np.array([["a", "b"]]), "numbers"),
    (np.array([[np.nan, 1.0]]), "NaN"),
])
def test_bad_arrays_are_named(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DatasetError, match=f"bad.npy.*{message}|{message}.*bad.npy"):
        load_dataset(tmp_path / "bad.npy")


def test_bad_npz_files_are_named(tmp_path):
    np.savez(tmp_path / "mismatch.npz", x=np.zeros((3, 2)), labels=np.arange(2))
    with pytest.raises(DatasetError, match="mismatch.npz.*labels"):
        load_dataset(tmp_path / "mismatch.npz")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="objects.npz"):
        load_dataset(tmp_path / "objects.npz")
    np.savez(tmp_path / "only-labels.npz", labels=np.arange(3))
    with pytest.raises(DatasetError, match="only-labels.npz holds no data array"):
        load_dataset(tmp_path / "only-labels.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match="junk.npz"):
        load_dataset(tmp_path / "junk.npz")


def test_builtin_names_are_listed():
    assert BUILTIN_DATASETS == ("ring8", "grid25", "mnist", "stacked-mnist", "fashion-mnist", "lfw", "lfw-subset")
    assert os.fspath(load_dataset("lfw-subset").name) == "lfw-subset"


def test_the_probed_fashion_mirror_is_the_one_torchvision_downloads_from():
    from torchvision.datasets import FashionMNIST

    from kgan_core.data.builtin import FASHION_MIRROR

    assert FASHION_MIRROR in FashionMNIST.mirrors


def test_a_run_reloads_its_data_with_the_pixel_limit_it_is_given(tmp_path):
    """Pictures that reload a run's data must accept what its training accepted (a server's
    KGAN_MAX_IMAGE_PIXELS can be above the loader's default)."""
    from PIL import Image

    from kgan_core.run import load_run
    from kgan_core.train import TrainConfig, train

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.new("L", (40, 30), color=60 * i).save(folder / f"{i}.png")
    config = TrainConfig(dataset=str(folder), image_size=8, k=2, steps=1, batch_size=2, n_critic=1, width=4,
                         rounds=0, device="cpu", checkpoint_every=1, log_every=1)
    train(config, tmp_path / "run", dataset=load_dataset(str(folder), image_size=8, max_pixels=40 * 30))
    with pytest.raises(DatasetError, match="pixel"):
        _ = load_run(tmp_path / "run", max_pixels=40 * 30 - 1).dataset
    assert load_run(tmp_path / "run", max_pixels=40 * 30).dataset.n == 4
