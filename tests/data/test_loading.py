"""Data sets load from their official on-disk layouts; bad folders and files give one clear error."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan.data import load_images
from dcgan.errors import DataError
from tests.conftest import SHARED_DATA

rng = np.random.default_rng(0)


def _write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if gz else open)(path, "wb").write(data)  # type: ignore[operator]


def _save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_idx_layout_takes_count_from_header(tmp_path: Path) -> None:
    images = rng.integers(0, 255, (37, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", images)
    _write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.arange(37) % 10)
    data = load_images("mnist", root=tmp_path, image_size=32, use_cache=False)
    assert data.images.shape == (37, 1, 32, 32) and data.labels is not None and data.labels[3] == 3


def test_gzipped_idx_like_debian_fashion_mnist(tmp_path: Path) -> None:
    _write_idx(tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((5, 28, 28)), gz=True)
    data = load_images("fashion-mnist", root=tmp_path, split="test", image_size=16, use_cache=False)
    assert data.images.shape == (5, 1, 16, 16)


def test_truncated_idx_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    _write_idx(path, np.zeros((10, 28, 28)))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError, match="truncated"):
        load_images("mnist", root=tmp_path, image_size=32, use_cache=False)


def test_cifar_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        batch = {"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), "labels": [i] * 4, "filenames": ["x"] * 4}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    data = load_images("cifar10", root=tmp_path, image_size=32, use_cache=False)
    assert data.images.shape == (20, 3, 32, 32) and data.labels is not None and data.labels.tolist()[-1] == 5
    gray = load_images("cifar10", root=tmp_path, image_size=16, channels=1, use_cache=False)
    assert gray.images.shape == (20, 1, 16, 16)


def test_cifar_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (marker,))

    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": Exploit(), "labels": []}))
    with pytest.raises(DataError, match="Refusing"):
        load_images("cifar10", root=tmp_path, image_size=32, use_cache=False)
    assert not marker.exists()


def test_svhn_mat(tmp_path: Path) -> None:
    from scipy.io import savemat

    x = rng.integers(0, 255, (32, 32, 3, 6), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [2], [3], [4], [5]])})
    data = load_images("svhn", root=tmp_path, image_size=32, use_cache=False)
    assert data.images.shape == (6, 3, 32, 32)
    assert data.labels is not None and data.labels.tolist() == [0, 1, 2, 3, 4, 5], "SVHN's label 10 means digit 0"
    assert np.array_equal(data.images[2].permute(1, 2, 0).numpy(), x[..., 2])


def test_celeba_layout_with_official_partition(tmp_path: Path) -> None:
    folder = tmp_path / "celeba" / "img_align_celeba"
    for i in range(6):
        _save_png(folder / f"{i:06d}.jpg", rng.integers(0, 255, (218, 178, 3), dtype=np.uint8))
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text(
        "\n".join(f"{i:06d}.jpg {0 if i < 4 else 2}" for i in range(6))
    )
    train = load_images("celeba", root=tmp_path, image_size=64, use_cache=False)
    test = load_images("celeba", root=tmp_path, image_size=64, split="test", use_cache=False)
    assert train.images.shape == (4, 3, 64, 64) and test.images.shape == (2, 3, 64, 64)


def test_lsun_lmdb(tmp_path: Path) -> None:
    import lmdb

    env = lmdb.open(str(tmp_path / "bedroom_train_lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(5):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(buf, format="WEBP")
            txn.put(f"key{i}".encode(), buf.getvalue())
        txn.put(b"broken", b"not an image")
    env.close()
    data = load_images("lsun:bedroom", root=tmp_path, image_size=32, use_cache=False)
    assert data.images.shape == (5, 3, 32, 32) and data.skipped == ["broken"]


def test_folder_is_recursive_and_skips_undecodable_files(tmp_path: Path) -> None:
    _save_png(tmp_path / "a" / "one.png", rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    _save_png(tmp_path / "a" / "b" / "two.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)).save(tmp_path / "three.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    good = (tmp_path / "three.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (tmp_path / "notes.txt").write_text("not an image, not counted")
    data = load_images(str(tmp_path), image_size=32, use_cache=False)
    assert data.images.shape[1:] == (3, 32, 32)
    assert len(data) + len(data.skipped) == 5
    assert any("corrupt.jpg" in s for s in data.skipped)


def _smooth(size: int, channels: int) -> np.ndarray:
    """A photo-like image (smooth gradients and a disc) that JPEG keeps recognisable."""
    y, x = np.mgrid[0:size, 0:size] / size
    planes = [x * 200, y * 180 + 40 * ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1), (x + y) * 100]
    return np.stack(planes[:channels], -1).squeeze().astype(np.uint8)


@pytest.mark.parametrize("channels", [3, 1])
def test_jpegs_at_the_training_size_decode_as_pillow_does(
    tmp_path: Path, channels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JPEGs already at the training size take a faster decoder; every pixel must be what Pillow gives, for colour
    and grey files read as colour or grey, progressive ones, and the larger file beside them that is scaled."""
    Image.fromarray(_smooth(32, 3)).save(tmp_path / "colour.jpg", quality=85)
    Image.fromarray(_smooth(32, 1)).save(tmp_path / "grey.jpg", quality=85)
    Image.fromarray(_smooth(32, 3)[::-1]).save(tmp_path / "progressive.jpg", quality=70, progressive=True)
    Image.fromarray(_smooth(96, 3)).save(tmp_path / "larger.jpg", quality=85)
    import dcgan.data.folder

    fast_path = dcgan.data.folder._decode_jpeg
    taken: list[int] = []
    monkeypatch.setattr(dcgan.data.folder, "_decode_jpeg", lambda *a: taken.append(1) or fast_path(*a))
    fast = load_images(str(tmp_path), image_size=32, channels=channels, use_cache=False)
    assert len(taken) == 3, "the three 32x32 files take the fast decoder, the larger one Pillow's scaling"
    monkeypatch.setattr(dcgan.data.folder, "_jpeg_decoder", lambda: None)  # as with a torchvision without it
    pillow = load_images(str(tmp_path), image_size=32, channels=channels, use_cache=False)
    assert fast.files == pillow.files and len(fast) == 4
    assert fast.images.shape == (4, channels, 32, 32)
    assert np.array_equal(fast.images.numpy(), pillow.images.numpy())
    assert fast.images.float().std() > 20, "not a blank decode"


def test_a_truncated_jpeg_at_the_training_size_is_skipped(tmp_path: Path) -> None:
    Image.fromarray(_smooth(32, 3)).save(tmp_path / "whole.jpg", quality=90)
    whole = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) - 40])
    data = load_images(str(tmp_path), image_size=32, use_cache=False)
    assert len(data) == 1 and [Path(s).name for s in data.skipped] == ["cut.jpg"]


def test_folder_centre_crops_to_square(tmp_path: Path) -> None:
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, 20:40] = 255  # a white band in the centre third
    _save_png(tmp_path / "wide.png", wide)
    data = load_images(str(tmp_path), image_size=16, use_cache=False)
    assert data.images.float().mean() > 200, "centre crop keeps the middle of a wide image"


def test_a_resized_image_is_an_array_torch_may_write() -> None:
    """`pil_to_array` copies out of Pillow's read-only buffer: torch.from_numpy on it (as the dry run does) would
    otherwise print torch's warning about non-writable arrays to the user."""
    from dcgan.data.transform import pil_to_array

    for channels in (1, 3):
        array = pil_to_array(Image.new("RGB", (32, 24), (10, 200, 30)), 16, channels)
        assert array.shape == (channels, 16, 16) and array.flags.writeable


def test_text_file_lists_images(tmp_path: Path) -> None:
    for i in range(3):
        _save_png(tmp_path / f"{i}.png", np.full((16, 16, 3), i * 50, dtype=np.uint8))
    (tmp_path / "list.txt").write_text("0.png\n2.png\n")
    assert len(load_images(str(tmp_path / "list.txt"), image_size=16, use_cache=False)) == 2


def test_cache_returns_the_same_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "images"
    _save_png(folder / "x.png", rng.integers(0, 255, (30, 30, 3), dtype=np.uint8))
    _save_png(folder / "y.png", rng.integers(0, 255, (20, 40, 3), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"not a png")
    first = load_images(str(folder), image_size=16)
    assert list((tmp_path / "cache").glob("*.npy")), "the first load wrote a cache entry"

    opened: list[object] = []

    def no_decoding(path: object, *args: object, **kwargs: object) -> None:
        opened.append(path)
        raise AssertionError(f"{path} was decoded again instead of read from the cache")

    monkeypatch.setattr(Image, "open", no_decoding)
    second = load_images(str(folder), image_size=16)
    assert not opened
    assert np.array_equal(first.images.numpy(), second.images.numpy())
    assert second.files == first.files and second.skipped == first.skipped == [str(folder / "broken.png")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("does-not-exist", "neither a data set name"),
        ("mnist", "looked for"),
        ("svhn", "--download"),
        ("lsun:", "needs a category"),
    ],
)
def test_missing_data_says_where_it_looked(tmp_path: Path, data: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_images(data, root=tmp_path / "empty", image_size=32, use_cache=False)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no image files") as info:
        load_images(str(tmp_path), image_size=32, use_cache=False)
    assert str(tmp_path) in str(info.value), "the message names the folder it looked in"


def test_folder_of_only_broken_images(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="could be decoded"):
        load_images(str(tmp_path), image_size=32, use_cache=False)


def test_embedded_default_is_5000_digits() -> None:
    data = load_images("mnist5k", image_size=32)
    assert data.images.shape == (5000, 1, 32, 32) and data.labels is not None
    assert sorted(set(data.labels.tolist())) == list(range(10))


@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="../shared/data/mnist is not here")
def test_shared_mnist_and_cifar_load() -> None:
    mnist = load_images("mnist", root=SHARED_DATA / "mnist", image_size=32)
    assert mnist.images.shape == (10000, 1, 32, 32)
    test = load_images("mnist", root=SHARED_DATA / "mnist", image_size=32, split="test")
    assert len(test) == 10000
    cifar = load_images("cifar10", root=SHARED_DATA / "cifar10", image_size=32)
    assert cifar.images.shape == (50000, 3, 32, 32)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").exists(), reason="dataset-fashion-mnist missing")
def test_debian_fashion_mnist_found_without_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./data here: only Debian's location can satisfy it
    data = load_images("fashion-mnist", image_size=32)
    assert data.images.shape == (60000, 1, 32, 32)


def test_relative_paths_at_two_sizes_get_their_own_cache_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `../folder` name once made every cache entry the same file, so a 32px copy was served for 64px."""
    folder = tmp_path / "faces"
    _save_png(folder / "a.png", rng.integers(0, 255, (80, 80, 3), dtype=np.uint8))
    monkeypatch.chdir(tmp_path / "faces")
    assert load_images("../faces", image_size=32).images.shape[-1] == 32
    assert load_images("../faces", image_size=64).images.shape[-1] == 64
