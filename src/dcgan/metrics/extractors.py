"""Feature extractors: networks that map images to the feature vectors every metric compares.

Two kinds, chosen by `--features`:
- `inception`: the FID Inception network with the standard `pt_inception-2015-12-05` weights (see
  `dcgan.metrics.inception`), for figures comparable with published ones;
- domain classifiers the project trains itself (`dcgan extractor fit`): a LeNet-style net for the digit sets
  and a small CNN for CIFAR-10, stored as `<arch>-<data>.safetensors` in the cache folder, so
  `--features lenet-fashion-mnist` finds them. They work offline and suit small images; the FID authors
  advise a domain classifier for MNIST. `--members N` fits N of them with different seeds as one extractor
  (`Ensemble`): its reading of a class is their mean probability, less tied to one seed's quirks on new images.

Every extractor takes uint8 images (N, C, S, S) of any size and channel count, converts them to what it was
trained on (channels, size, value range) and returns (features, class logits); the base class is in
`dcgan.metrics.feature_extractor`. Which extractor a data set uses by default, and which sets one is fitted on,
is in the data set registry (`dcgan.data.registry`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import cast

import torch
from torch import nn

from dcgan.data import registry
from dcgan.data.cache import cache_dir
from dcgan.data.labels import FIELDS
from dcgan.errors import CheckpointError, ConfigError
from dcgan.metrics.feature_extractor import FeatureExtractor, file_fingerprint
from dcgan.metrics.inception import load_inception

FORMAT = "dcgan-extractor"


class LeNet(FeatureExtractor):
    """LeNet-5's layout (32x32 grey input, two 5x5 conv + pool stages, 16 and 32 maps): the digit sets' classifier.

    Features: the 128 activations before the classifier layer; `num_classes` logits (10 for the digits).
    """

    arch = "lenet"
    input_size, in_channels, feature_dim, num_classes = 32, 1, 128, 10

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
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
    """Three conv-batchnorm-ReLU-pool stages on 32x32 colour images: the CIFAR-10 and faces classifier.

    Larger images (the 64x64 faces) are resized to 32x32 first. Features: the 256 activations before the
    classifier layer; `num_classes` logits (10 for CIFAR-10, 2 for the faces' gender, ...).
    """

    arch = "cnn"
    input_size, in_channels, feature_dim, num_classes = 32, 3, 256, 10

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
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


ARCHES: dict[str, type[LeNet] | type[SmallCNN]] = {"lenet": LeNet, "cnn": SmallCNN}


class Ensemble(FeatureExtractor):
    """N classifiers of one architecture, fitted with different seeds (`dcgan extractor fit --members N`), read as one.

    Why: two race classifiers on UTKFace, the same network fitted with seeds 1 and 2, read held-out real faces
    alike (every group within 0.93-1.12x of its labelled share) and a generator's samples of the faces no group
    owns apart: "others" at 1.34x by one, 1.03x by the other, on the same 10,000 samples. Each member files
    ambiguous images by its own quirks; their mean probability files them by what they share, so a coverage
    figure (or `--balance-groups`' steering) depends less on which seed fitted the classifier.

    Logits: the log of the members' mean class probability, plus one offset per class (`offsets`, set by the
    calibration of `dcgan.metrics.fit.calibrate`; zero before). Features: the members' features side by side.
    Each member's own reading (`member_logits`) has its own offsets (`member_offsets`, one row per member, set by
    the same calibration since 2026-12-02; zero in older files), for `--balance-by lowest-member`.
    """

    arch = "ensemble"
    offsets: torch.Tensor
    member_offsets: torch.Tensor

    def __init__(self, members: list[FeatureExtractor]) -> None:
        super().__init__()
        if len(members) < 2 or len({(m.arch, m.num_classes) for m in members}) != 1:
            raise ConfigError("an ensemble needs two or more classifiers of one architecture and class count.")
        self.members = nn.ModuleList(members)
        first = members[0]
        self.input_size, self.in_channels, self.num_classes = first.input_size, first.in_channels, first.num_classes
        self.feature_dim = sum(m.feature_dim for m in members)
        self.member_arch = first.arch
        self.register_buffer("offsets", torch.zeros(self.num_classes))
        self.register_buffer("member_offsets", torch.zeros(len(members), self.num_classes))

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = [cast(FeatureExtractor, member).embed(x) for member in self.members]
        log_probs = torch.stack([torch.log_softmax(logits.float(), dim=1) for _, logits in outputs])
        mean = torch.logsumexp(log_probs, dim=0) - math.log(len(outputs))
        return torch.cat([features for features, _ in outputs], dim=1), mean + self.offsets

    @torch.no_grad()
    def member_logits(self, images: torch.Tensor, batch_size: int = 500, *, with_mean: bool = False) -> torch.Tensor:
        """(members, N, classes): each member's logits of `images` (as `extract` takes them) plus its own
        calibration offsets, so each member's top classes read held-out images in their labelled shares.

        `with_mean`: one row more, the ensemble's own logits (what `extract` gives), from the same members' pass.
        """
        read = [
            cast(FeatureExtractor, m).extract(images, batch_size=batch_size, logits=True).logits for m in self.members
        ]
        raw = torch.stack([cast(torch.Tensor, r).float() for r in read])
        logits = raw + self.member_offsets.to(raw)[:, None]
        if not with_mean:
            return logits
        mean = torch.logsumexp(torch.log_softmax(raw, dim=2), dim=0) - math.log(len(raw)) + self.offsets.to(raw)
        return torch.cat([logits, mean[None]])


def class_names(extractor: FeatureExtractor) -> tuple[str, ...] | None:
    """The names of a fitted classifier's classes, logit i being names[i] (e.g. `("male", "female")`).

    From the `classes` saved with it by `dcgan extractor fit`; an older file without them gets its class
    numbers ("0", "1", ...). None for an extractor that is not a domain classifier (the FID Inception).
    """
    if extractor.meta.get("format") != FORMAT and not isinstance(extractor, (LeNet, SmallCNN, Ensemble)):
        return None
    saved = extractor.meta.get("classes")
    if saved:
        names = json.loads(saved)
        if isinstance(names, list) and len(names) == extractor.num_classes:
            return tuple(str(n) for n in names)
    return tuple(str(i) for i in range(extractor.num_classes))


def extractor_dir() -> Path:
    """Where `dcgan extractor fit` stores extractors by default: `<cache>/extractors`."""
    return cache_dir() / "extractors"


def save_extractor(model: FeatureExtractor, path: str | Path, meta: dict[str, str] | None = None) -> Path:
    """Write the weights and metadata (arch, test accuracy, ...) as one safetensors file; no pickle involved."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {**model.meta, **(meta or {}), "format": FORMAT, "arch": model.arch, "name": model.name}  # type: ignore[attr-defined]
    if isinstance(model, Ensemble):
        header.update(member_arch=model.member_arch, members=str(len(model.members)))
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
    arch = meta.get("member_arch") if meta.get("arch") == Ensemble.arch else meta.get("arch")
    if meta.get("format") != FORMAT or arch not in ARCHES:
        raise CheckpointError(f"{path} is not a dcgan feature extractor (no '{FORMAT}' metadata).")
    prefix = "members.0." if meta["arch"] == Ensemble.arch else ""
    # the class count is the last layer's, whatever the metadata says
    head = weights.get(f"{prefix}classifier.1.weight")
    network = lambda: ARCHES[arch](num_classes=int(head.shape[0]) if head is not None and head.ndim == 2 else 10)
    try:
        if meta["arch"] == Ensemble.arch:
            count = len({key.split(".")[1] for key in weights if key.startswith("members.")})
            model: FeatureExtractor = Ensemble([network() for _ in range(count)])
            weights.setdefault("member_offsets", torch.zeros(count, model.num_classes))  # older files: uncalibrated
        else:
            model = network()
        model.load_state_dict(weights)
    except (RuntimeError, ConfigError) as exc:
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
    """The `--features` a data set uses by default: its registry entry's (a domain classifier), else Inception."""
    entry = registry.find(data)
    return entry.features if entry is not None else "inception"


def load_features(
    spec: str | Path | None, data: str | None = None, *, device: str | torch.device = "cpu", download: bool = False
) -> FeatureExtractor:
    """Resolve `--features`: `inception`, a name in the extractor folder, or a file (.safetensors or .pth).

    Args:
        spec: `inception`, an extractor name such as `lenet-fashion-mnist`, or a path; None picks the data
            set's default (`default_features`).
        data: the data set name, for the default.
        device: where the network runs.
        download: fetch the FID Inception weights if they are missing (needs internet).

    Raises:
        ConfigError: the name is unknown; the message says how to make it.
        CheckpointError: the file is unreadable or not an extractor.
    """
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
    fittable = [d.name for d in registry.entries() if d.fittable]
    arch, _, trained_on = name.partition("-")
    folder, _, field = trained_on.rpartition("-")
    if arch in ARCHES and trained_on in fittable:
        hint = f"`dcgan extractor fit --data {trained_on}` makes it"
    elif arch in ARCHES and folder and field in FIELDS:
        hint = f"`dcgan extractor fit --data FOLDER --labels-from-name {field}` on a folder named {folder} makes it"
    else:
        hint = f"`dcgan extractor fit --data {'|'.join(fittable)}` makes one"
    raise ConfigError(
        f"No feature extractor {name!r} in {extractor_dir()} (have: {have}); {hint}, "
        "or pass --features inception or a file."
    )
