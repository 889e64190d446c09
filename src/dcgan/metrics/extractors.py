"""Feature extractors: networks that map images to the feature vectors every metric compares.

Two kinds, chosen by `--features`:
- `inception`: the FID Inception network with the standard `pt_inception-2015-12-05` weights (see
  `dcgan.metrics.inception`), for figures comparable with published ones;
- domain classifiers the project trains itself (`dcgan extractor fit`): a LeNet-style net for the digit sets
  and a small CNN for CIFAR-10, stored as `<arch>-<data>.safetensors` in the cache folder, so
  `--features lenet-fashion-mnist` finds them. They work offline and suit small images; the FID authors
  advise a domain classifier for MNIST.

Every extractor takes uint8 images (N, C, S, S) of any size and channel count, converts them to what it was
trained on (channels, size, value range) and returns (features, class logits).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dcgan.data.cache import cache_dir
from dcgan.errors import CheckpointError, ConfigError

FORMAT = "dcgan-extractor"
#: The extractor each standard data set uses when `--features` is not given.
DEFAULT_FOR_DATA = {
    "mnist": "lenet-mnist",
    "mnist5k": "lenet-mnist",
    "fashion-mnist": "lenet-fashion-mnist",
    "cifar10": "cnn-cifar10",
}


class Features(NamedTuple):
    features: torch.Tensor
    logits: torch.Tensor | None


class FeatureExtractor(nn.Module):
    """Base class: uint8 images -> (features, logits). Subclasses define `embed(x)` on prepared float input.

    Attributes:
        name: how `--features` and the reference cache call it (e.g. `lenet-fashion-mnist`).
        input_size, in_channels: what the network expects; `prepare` converts to this.
        feature_dim, num_classes: the sizes of its two outputs.
        fingerprint: identifies the weights (a hash of the file), so cached reference features follow them.
        meta: what was saved with it (test accuracy, training data, ...), as strings.
    """

    arch: str = "base"
    #: Largest batch one forward pass takes, whatever the caller asks (Inception's 299px activations are large).
    max_batch: int = 1024
    input_size: int
    in_channels: int
    feature_dim: int
    num_classes: int

    def __init__(self) -> None:
        super().__init__()
        self.name = type(self).__name__.lower()
        self.fingerprint = "untrained"
        self.meta: dict[str, str] = {}

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, S, S) -> float in [-1, 1] with the extractor's channels; resized by `resize`."""
        x = images.to(self.device).float() / 127.5 - 1
        if x.shape[1] != self.in_channels:
            if self.in_channels == 3:
                x = x.expand(-1, 3, -1, -1)
            else:  # ITU-R 601 luma, as PIL's convert("L")
                weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
                x = (x * weights).sum(dim=1, keepdim=True)
        return self.resize(x)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.input_size and x.shape[-2] == self.input_size:
            return x
        return F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images -> (features (N, feature_dim), logits (N, num_classes))."""
        return self.embed(self.prepare(images))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def extract(self, images: torch.Tensor, *, batch_size: int = 256, logits: bool = False) -> Features:
        """Features (and optionally logits) of uint8 images, in batches, in eval mode; returned on the CPU."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            got = f"{images.dtype} {tuple(images.shape)}"
            raise ConfigError(f"{self.name} expects uint8 images (N, 1 or 3, H, W), got {got}.")
        was_training = self.training
        self.eval()
        feats, outs = [], []
        for part in images.split(min(batch_size, self.max_batch)):
            f, y = self(part)
            feats.append(f.float().cpu())
            if logits:
                outs.append(y.float().cpu())
        self.train(was_training)
        empty = torch.empty(0, self.feature_dim)
        return Features(torch.cat(feats) if feats else empty, torch.cat(outs) if logits and outs else None)


class LeNet(FeatureExtractor):
    """LeNet-5's layout (32x32 grey input, two 5x5 conv + pool stages, 16 and 32 maps): the digit sets' classifier.

    Features: the 128 activations before the classifier layer.
    """

    arch = "lenet"
    input_size, in_channels, feature_dim, num_classes = 32, 1, 128, 10

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),  # 10 -> 5
            nn.Flatten(), nn.Linear(32 * 5 * 5, self.feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.feature_dim, self.num_classes))

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, self.classifier(features)


class SmallCNN(FeatureExtractor):
    """Three conv-batchnorm-ReLU-pool stages on 32x32 colour images: the CIFAR-10 classifier.

    Features: the 256 activations before the classifier layer.
    """

    arch = "cnn"
    input_size, in_channels, feature_dim, num_classes = 32, 3, 256, 10

    def __init__(self) -> None:
        super().__init__()
        stage = lambda cin, cout: [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)
        ]  # fmt: skip
        self.body = nn.Sequential(
            *stage(3, 32), *stage(32, 64), *stage(64, 64),  # 32 -> 16 -> 8 -> 4
            nn.Flatten(), nn.Linear(64 * 4 * 4, self.feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.feature_dim, self.num_classes))

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, self.classifier(features)


ARCHES: dict[str, type[FeatureExtractor]] = {"lenet": LeNet, "cnn": SmallCNN}


def extractor_dir() -> Path:
    """Where `dcgan extractor fit` stores extractors by default: `<cache>/extractors`."""
    return cache_dir() / "extractors"


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_extractor(model: FeatureExtractor, path: str | Path, meta: dict[str, str] | None = None) -> Path:
    """Write the weights and metadata (arch, test accuracy, ...) as one safetensors file; no pickle involved."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {**model.meta, **(meta or {}), "format": FORMAT, "arch": model.arch, "name": model.name}  # type: ignore[attr-defined]
    tmp = path.with_name(f".{path.name}.tmp")
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp), metadata={k: str(v) for k, v in header.items()})
    tmp.replace(path)
    return path


def load_extractor_file(path: str | Path, device: str | torch.device = "cpu") -> FeatureExtractor:
    """A domain extractor saved by `save_extractor`, in eval mode."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"No such extractor file: {path}.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}).") from exc
    if meta.get("format") != FORMAT or meta.get("arch") not in ARCHES:
        raise CheckpointError(f"{path} is not a dcgan feature extractor (no '{FORMAT}' metadata).")
    model = ARCHES[meta["arch"]]()
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"The weights in {path} do not fit the {meta['arch']} network.") from exc
    model.name = meta.get("name") or path.stem
    model.meta = meta
    model.fingerprint = file_fingerprint(path)[:16]
    return model.to(device).eval()


def available() -> list[Path]:
    """The extractors in the default folder."""
    folder = extractor_dir()
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


def default_features(data: str) -> str:
    """The `--features` a data set uses by default: its domain classifier, else Inception."""
    return DEFAULT_FOR_DATA.get(data, "inception")


def load_features(
    spec: str | Path | None, data: str | None = None, *, device: str | torch.device = "cpu", download: bool = False
) -> FeatureExtractor:
    """Resolve `--features`: `inception`, a name in the extractor folder, or a file (.safetensors or .pth).

    Args:
        spec: `inception`, an extractor name such as `lenet-fashion-mnist`, or a path; None picks the data
            set's default (`DEFAULT_FOR_DATA`, else `inception`).
        data: the data set name, for the default.
        device: where the network runs.
        download: fetch the FID Inception weights if they are missing (needs internet).

    Raises:
        ConfigError: the name is unknown; the message says how to make it.
        CheckpointError: the file is unreadable or not an extractor.
    """
    from dcgan.metrics.inception import load_inception

    name = str(spec) if spec is not None else default_features(data or "")
    if name == "inception":
        return load_inception(None, device=device, download=download)
    path = Path(name).expanduser()
    if path.suffix in (".pth", ".pt"):
        return load_inception(path, device=device)
    if path.suffix == ".safetensors" or path.is_file():
        return load_extractor_file(path, device)
    stored = extractor_dir() / f"{name}.safetensors"
    if stored.is_file():
        return load_extractor_file(stored, device)
    have = ", ".join(p.stem for p in available()) or "none yet"
    arch, _, trained_on = name.partition("-")
    if arch in ARCHES and trained_on in ("mnist", "fashion-mnist", "cifar10"):
        hint = f"`dcgan extractor fit --data {trained_on}` makes it"
    else:
        hint = "`dcgan extractor fit --data mnist|fashion-mnist|cifar10` makes one"
    raise ConfigError(
        f"No feature extractor {name!r} in {extractor_dir()} (have: {have}); {hint}, "
        "or pass --features inception or a file."
    )
