"""`probe()`: a trained D's features, a random D's and raw pixels, each through the same L2-SVM protocols.

This is the paper's section 5.1 ("Classifying CIFAR-10 using GANs as a feature extractor") and 5.2 (SVHN
with 1,000 labels) as one call, with the two baselines a reader needs to judge the number: the same pipeline
on a randomly initialised D of the same shape (what the architecture alone gives), and on raw pixels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcgan.data import load_images, registry
from dcgan.errors import ConfigError, DataError
from dcgan.models import Discriminator
from dcgan.probe import features as feat
from dcgan.probe.protocols import DEFAULT_C, ProtocolResult, few_labels, full_labels
from dcgan.run import Run

FEATURE_SETS = ("trained", "random", "pixels")


@dataclass
class ProbeSettings:
    """Everything that decides a probe's numbers; written into its JSON."""

    data: str | None = None  # None: the data set the run was trained on
    data_root: str | None = None
    features: tuple[str, ...] = FEATURE_SETS
    layers: tuple[int, ...] | None = None  # None: every conv block of D
    grid: int = 4
    full: bool = True
    labels_per_class: int | None = None
    draws: int = 10
    val_size: int = 10_000
    C_grid: tuple[float, ...] = DEFAULT_C
    precision: str = "auto"  # fp32 or bf16 features; auto: the faster on the device, measured (dcgan.plan)
    batch_size: int = 500
    seed: int = 0
    max_iter: int = 300
    use_cache: bool = True
    device: str = "cpu"

    def validate(self) -> None:
        unknown = [f for f in self.features if f not in FEATURE_SETS]
        if unknown or not self.features:
            raise ConfigError(f"--features must list some of {', '.join(FEATURE_SETS)}, got {','.join(self.features)}.")
        if not self.full and self.labels_per_class is None:
            raise ConfigError("Nothing to run: --no-full needs --labels-per-class N for the few-label protocol.")
        if self.labels_per_class is not None and self.labels_per_class < 1:
            raise ConfigError(f"--labels-per-class must be at least 1, got {self.labels_per_class}.")
        if self.draws < 1:
            raise ConfigError(f"--draws must be at least 1, got {self.draws}.")
        if not self.C_grid or any(not c > 0 for c in self.C_grid):
            raise ConfigError(f"--C needs positive values, got {list(self.C_grid)}.")
        if self.precision not in feat.PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(feat.PRECISIONS)}, got {self.precision!r}.")
        if self.batch_size < 1 or self.max_iter < 1 or self.val_size < 1:
            raise ConfigError("--batch-size, --max-iter and --val-size must be positive.")


@dataclass
class LabelledSplit:
    images: torch.Tensor  # uint8 (N, C, S, S)
    labels: np.ndarray  # int64 (N,)
    source: str


@dataclass
class ProbeReport:
    """What `dcgan probe` prints and writes: the settings, feature sizes, timings and one result per pairing."""

    checkpoint: str
    step: int
    data: str
    data_root: str | None
    settings: ProbeSettings
    dims: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "step": self.step,
            "data": self.data,
            "data_root": self.data_root,
            "settings": asdict(self.settings),
            "torch_threads": torch.get_num_threads(),
            "feature_dims": self.dims,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "results": self.results,
        }

    def rows(self) -> list[list[str]]:
        header = ["features", "dims", "protocol", "accuracy", "± 95%", "error", "C", "paper"]
        body = []
        for r in self.results:
            protocol = (
                "full labels" if r["protocol"] == "full" else f"{r['labels_per_class']} labels/class x {r['draws']}"
            )
            paper = r.get("paper_accuracy")
            body.append([
                r["features"], f"{r['dims']:,}", protocol, f"{r['accuracy']:.2%}", f"{r['ci95']:.2%}",
                f"{1 - r['accuracy']:.2%}", "/".join(sorted({f"{c:g}" for c in r["chosen_C"]})),
                "" if paper is None else f"{paper:.2%}",
            ])  # fmt: skip
        return [header, *body]

    def table(self) -> str:
        """A fixed-width table for the console."""
        rows = self.rows()
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def markdown(self) -> str:
        """The same table in Markdown."""
        rows = self.rows()
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "|".join("---" for _ in rows[0]) + "|")
        return "\n".join(lines)


def load_labelled(data: str, root: str | None, image_size: int, channels: int, split: str) -> LabelledSplit:
    """A labelled split of a named set, or of FOLDER/train or FOLDER/test with one sub-folder per class."""
    folder = Path(data).expanduser()
    if folder.is_dir():
        sub = folder / split
        if not sub.is_dir():
            raise DataError(
                f"--data {folder} needs train/ and test/ sub-folders, each with one sub-folder of images per class."
            )
        found = load_images(str(sub), image_size=image_size, channels=channels)
        names = [Path(f).resolve().relative_to(sub.resolve()).parts[0] for f in found.files or []]
        if len(set(names)) < 2 or len(names) != len(found):
            raise DataError(f"{sub} needs one sub-folder of images per class (at least two classes).")
        classes = {c: i for i, c in enumerate(sorted(set(names)))}
        return LabelledSplit(found.images, np.array([classes[c] for c in names], dtype=np.int64), found.source)
    found = load_images(data, root=root, image_size=image_size, channels=channels, split=split)
    if found.labels is None:
        raise DataError(f"--data {data} has no class labels, which the probe needs.")
    return LabelledSplit(found.images, found.labels.numpy().astype(np.int64), found.source)


def random_discriminator(like: Discriminator, seed: int) -> Discriminator:
    """A freshly initialised D of the same shape (the paper's init), seeded, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Discriminator(like.image_size, like.channels, like.ndf).eval()


def discriminator_features(
    d: Discriminator,
    train: LabelledSplit,
    test: LabelledSplit,
    settings: ProbeSettings,
    log: Callable[[str], None],
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(train, test) features with batchnorm recomputed on `train`, from the cache when there; and whether cached."""
    layers = feat.check_layers(d, settings.layers, settings.grid)
    precision = feat.resolve_precision(settings.precision, d, settings.device)
    recipe = (feat.weights_digest(d), layers, settings.grid, precision, train.source, len(train.labels))
    keys = [feat.cache_key(*recipe, split.source, split_name, len(split.labels))
            for split, split_name in ((train, "train"), (test, "test"))]  # fmt: skip
    if settings.use_cache:
        found = [feat.load_cached(k) for k in keys]
        if found[0] is not None and found[1] is not None:
            return found[0], found[1], True
    kwargs: dict[str, Any] = dict(batch_size=settings.batch_size, precision=precision, device=settings.device)
    log(f"  recomputing batchnorm statistics on {len(train.labels):,} images, then extracting ({precision})")
    d = d.to(settings.device)
    feat.recompute_batchnorm(d, train.images, **kwargs)
    out = [
        feat.extract_features(d, split.images, layers=layers, grid=settings.grid, **kwargs) for split in (train, test)
    ]
    if settings.use_cache:
        for key, array in zip(keys, out):
            feat.store_cached(key, array)
    return out[0], out[1], False


def probe(
    checkpoint: str | Path, settings: ProbeSettings | None = None, log: Callable[[str], None] | None = None
) -> ProbeReport:
    """Run the probe's protocols on a checkpoint's D, a random D of its shape and raw pixels.

    Args:
        checkpoint: a run folder (its newest checkpoint) or a checkpoint file.
        settings: data, feature sets, layers, grid, protocols, C grid... (defaults: `ProbeSettings()`).
        log: called with a line of progress now and then (e.g. `print`).

    Returns:
        A `ProbeReport` with one result per feature set x protocol.

    Raises:
        DcganError: a bad checkpoint, data set or setting, with the reason in one sentence.
    """
    settings = settings or ProbeSettings()
    settings.validate()
    say = log or (lambda _: None)
    run = Run.open(checkpoint)
    trained = run.discriminator()
    feat.check_layers(trained, settings.layers, settings.grid)  # before the data: a bad flag should fail fast
    # The report names the precision the features were computed in, never "auto".
    settings = replace(settings, precision=feat.resolve_precision(settings.precision, trained, settings.device))
    config = run.config
    data = settings.data or config.data or ""
    root = settings.data_root if settings.data else settings.data_root or config.data_root
    if not data:
        raise ConfigError("The checkpoint does not say what data it was trained on; pass --data.")
    size, channels = trained.image_size, trained.channels
    train = load_labelled(data, root, size, channels, "train")
    test = load_labelled(data, root, size, channels, "test")
    say(f"{data}: {len(train.labels):,} training and {len(test.labels):,} test images at {size}x{size}x{channels}")
    if settings.val_size >= len(train.labels):
        raise ConfigError(f"--val-size {settings.val_size} leaves no training images out of {len(train.labels)}.")

    report = ProbeReport(str(run.path), run.step, data, root, settings)
    begin = time.perf_counter()
    for name in settings.features:
        start = time.perf_counter()
        if name == "pixels":
            train_x, test_x, cached = feat.pixel_features(train.images), feat.pixel_features(test.images), False
        else:
            d = trained if name == "trained" else random_discriminator(trained, settings.seed)
            train_x, test_x, cached = discriminator_features(d, train, test, settings, say)
        report.timings[f"{name}_features"] = time.perf_counter() - start
        report.dims[name] = int(train_x.shape[1])
        say(f"{name}: {train_x.shape[1]:,} features {'from the cache' if cached else 'extracted'} "
            f"in {report.timings[f'{name}_features']:.0f} s")  # fmt: skip
        for result in _protocols(train_x, train.labels, test_x, test.labels, settings, say):
            report.timings[f"{name}_{result.protocol}_svm"] = result.seconds
            report.results.append(_entry(name, result, int(train_x.shape[1]), data))
            say(
                f"{name} / {result.protocol}: accuracy {result.accuracy:.2%} ± {result.ci95:.2%} ({result.seconds:.0f} s)"
            )
        del train_x, test_x
    report.timings["total"] = time.perf_counter() - begin
    return report


def _protocols(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    settings: ProbeSettings,
    say: Callable[[str], None],
) -> list[ProtocolResult]:
    common: dict[str, Any] = dict(
        val_size=settings.val_size, grid=settings.C_grid, seed=settings.seed, max_iter=settings.max_iter, log=say
    )
    results = []
    if settings.full:
        results.append(full_labels(train_x, train_y, test_x, test_y, **common))
    if settings.labels_per_class is not None:
        results.append(
            few_labels(
                train_x, train_y, test_x, test_y, per_class=settings.labels_per_class, draws=settings.draws, **common
            )
        )
    return results


def paper_accuracy(data: str, protocol: str, labels_per_class: int | None) -> float | None:
    """The paper's figure for a probe of `data` (its registry entry's `paper_probe`), where it gives one.

    The paper's D was trained on ImageNet-1k, not on the probed data set, and was wider (28,672 features from
    three layers), so its figure is a reference point, not a target.
    """
    entry = registry.find(data)
    return entry.paper_probe.get((protocol, labels_per_class)) if entry is not None else None


def _entry(name: str, result: ProtocolResult, dims: int, data: str) -> dict[str, Any]:
    paper = paper_accuracy(data, result.protocol, result.labels_per_class) if name == "trained" else None
    return {
        "features": name,
        "protocol": result.protocol,
        "labels_per_class": result.labels_per_class,
        "draws": len(result.accuracies),
        "accuracy": result.accuracy,
        "ci95": result.ci95,
        "error": 1 - result.accuracy,
        "accuracies": result.accuracies,
        "chosen_C": result.chosen_C,
        "validation_accuracy": result.validation,
        "dims": dims,
        "seconds": round(result.seconds, 2),
        "paper_accuracy": paper,
    }
