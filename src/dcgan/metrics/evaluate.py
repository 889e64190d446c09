"""`dcgan evaluate`: sample a generator, extract features, and compute the chosen metrics against real images.

One pass of the extractor over the generated images feeds every metric; the real side comes from
`reference_features` (cached). Values are named with the sample count (`fid10k`) and reported together with
the reference split and the extractor, so a figure always says what it was measured against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dcgan.data import ImageData
from dcgan.errors import ConfigError
from dcgan.metrics.extractors import load_features
from dcgan.metrics.feature_extractor import FeatureExtractor, Features
from dcgan.metrics.reference import Reference, reference_features
from dcgan.metrics.registry import Metric, MetricInputs, parse_metrics, value_name
from dcgan.models import Generator
from dcgan.sample import generate, latents, to_uint8

DEFAULT_METRICS = "fid,kid,is,pr"


@dataclass
class Evaluation:
    """The result of `evaluate`: metric values by name (e.g. `fid10k`) and what they were measured against."""

    values: dict[str, float]
    n: int
    reference: dict[str, Any]
    features: dict[str, Any]
    lower_is_better: dict[str, bool]
    info: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # structured results by value name (coverage's groups)

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready object: the values first, then `n`, `reference`, `features`, any extra info, and the
        metrics' details (e.g. `coverage10k`: each group's shares and ratio)."""
        return {
            **self.values, "n": self.n, "reference": self.reference, "features": self.features, **self.info,
            **self.details,
        }  # fmt: skip

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def table(self) -> str:
        """A plain-text table: one row per value, its spread where it has one, and which way is better."""
        ref = self.reference
        accuracy = self.features.get("test_accuracy")
        measured_on = self.features.get("measured_on", "test split")
        kind = "test" if measured_on == "test split" else "held-out"
        lines = [
            f"reference: {ref['data']} {ref['split']} split, {ref['images']:,} images at "
            f"{ref['image_size']}x{ref['image_size']}x{ref['channels']}",
            f"features:  {self.features['name']}" + (f" ({kind} accuracy {float(accuracy):.2%})" if accuracy else ""),
            "",
            f"{'metric':<16}{'value':>12}{'±':>10}  better",
        ]
        for name, value in self.values.items():
            if name.endswith("_std"):
                continue
            std = self.values.get(f"{name}_std")
            spread = f"{std:.4f}" if std is not None else ""
            better = "lower" if self.lower_is_better[name] else "higher"
            lines.append(f"{name:<16}{value:>12.4f}{spread:>10}  {better}")
        for name, detail in self.details.items():
            if name.startswith("coverage"):
                lines += ["", *coverage_table(name, detail)]
        return "\n".join(lines)


def coverage_table(name: str, detail: dict[str, Any]) -> list[str]:
    """Coverage's per-group table: each group's share among the samples and the reference, and their ratio."""
    width = max(len("group"), *(len(row["name"]) for row in detail["groups"]))
    lines = [
        f"{name}: each group's share among the samples / its share among the {detail['reference_images']:,} "
        f"reference images (groups from {detail['reference_source']}; 1.00x = drawn as often as in the data)",
        f"  {'group':<{width}}  {'samples':>8}  {'reference':>9}  {'ratio':>7}  reference as classified",
    ]
    for row in detail["groups"]:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        classified = f"{row['reference_classified']:>8.1%}" if "reference_classified" in row else ""
        line = f"  {row['name']:<{width}}  {row['samples']:>8.1%}  {row['reference']:>9.1%}  {ratio:>7}  {classified}"
        lines.append(line.rstrip())
    lines.append(
        f"  lowest {detail['min']:.2f}x ({detail['min_group']}), highest {detail['max']:.2f}x ({detail['max_group']})"
    )
    return lines


def generated_features(
    generator: Generator,
    extractor: FeatureExtractor,
    n: int,
    *,
    prior: str | None = None,
    seed: int = 0,
    batch_size: int = 250,
    logits: bool = False,
    keep_images: bool = False,
) -> tuple[Features, torch.Tensor | None]:
    """Features of n samples G(z), z the first n latents of `seed` (from `prior`, by default `generator.prior`),
    quantised to uint8 as saved images are.

    Returns (features, the uint8 images if `keep_images` else None).
    """
    z = latents(n, generator.nz, prior or generator.prior, seed)
    feats, outs, kept = [], [], []
    for part in z.split(batch_size):
        images = to_uint8(generate(generator, part, batch_size))
        f = extractor.extract(images, batch_size=batch_size, logits=logits)
        feats.append(f.features)
        if f.logits is not None:
            outs.append(f.logits)
        if keep_images:
            kept.append(images)
    return Features(torch.cat(feats), torch.cat(outs) if outs else None), torch.cat(kept) if kept else None


def score(
    features: Features,
    reference: Reference,
    metrics: list[Metric],
    *,
    seed: int = 0,
    details: dict[str, Any] | None = None,
) -> tuple[dict[str, float], dict[str, bool]]:
    """The metrics' values for precomputed features, named with the sample count (`fid10k`, ...).

    Args:
        details: if given, filled with the metrics' structured results by value name (`coverage10k`: the
            per-group table).

    Returns (values, lower_is_better), both keyed by value name.
    """
    n = int(features.features.shape[0])
    inputs = MetricInputs(features.features, features.logits, reference, seed)
    values: dict[str, float] = {}
    lower: dict[str, bool] = {}
    for metric in metrics:
        for key, value in metric.compute(inputs).items():
            values[value_name(key, n)] = value
            lower[value_name(key, n)] = metric.lower_is_better_for(key)
    if details is not None:
        details.update({value_name(key, n): detail for key, detail in inputs.details.items()})
    return values, lower


def describe_extractor(extractor: FeatureExtractor) -> dict[str, Any]:
    meta = extractor.meta
    out: dict[str, Any] = {"name": extractor.name, "fingerprint": extractor.fingerprint}
    for key in ("test_accuracy", "measured_on", "data", "standard_weights", "file"):
        if key in meta:
            out[key] = meta[key]
    return out


def evaluate(
    generator: Generator,
    *,
    data: str | ImageData,
    root: str | Path | None = None,
    metrics: str | list[str] = DEFAULT_METRICS,
    n: int = 10_000,
    features: str | Path | FeatureExtractor | None = None,
    split: str = "train",
    prior: str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 250,
    download: bool = False,
    progress: bool = False,
) -> Evaluation:
    """Measure a generator's samples against a real data set.

    Args:
        generator: the generator (its `image_size` and `channels` set how the real images are loaded).
        data: the real data set's name or folder, as for training, or loaded `ImageData`.
        root: where the standard data sets live.
        metrics: names (`fid`, `kid`, `is`, `pr`, `classes`, `coverage`), as a list or comma-separated.
        n: generated samples; FID and KID use every reference image, precision/recall as many as `n`.
        features: `inception`, an extractor name or file, a loaded extractor, or None for the data's default.
        split: the reference split ("train" or "test").
        prior: the latent prior; by default the one G was trained with (`generator.prior`).
        seed: picks the latents (sample i is the i-th latent of the seed) and the metrics' random subsets.
        device: where the generator and extractor run.
        batch_size: images per forward pass.
        download: fetch missing data or Inception weights (needs internet).
        progress: show progress bars.

    Raises:
        DcganError: a bad argument, missing data or a missing extractor; the message says what to do.
    """
    if n < 4:
        raise ConfigError(f"--n must be at least 4, got {n}.")
    chosen, extractor, reference = prepare(
        metrics, features, data, root=root, split=split, image_size=generator.image_size,
        channels=generator.channels, device=device, download=download, batch_size=batch_size, progress=progress,
    )  # fmt: skip
    generator.to(device)
    prior = prior or generator.prior
    fake, _ = generated_features(
        generator, extractor, n, prior=prior, seed=seed, batch_size=batch_size,
        logits=any(m.needs_logits for m in chosen),
    )  # fmt: skip
    details: dict[str, Any] = {}
    values, lower = score(fake, reference, chosen, seed=seed, details=details)
    return Evaluation(
        values, n, reference.describe(), describe_extractor(extractor), lower, {"seed": seed, "prior": prior}, details
    )


def evaluate_images(
    images: torch.Tensor,
    *,
    data: str | ImageData,
    root: str | Path | None = None,
    metrics: str | list[str] = DEFAULT_METRICS,
    features: str | Path | FeatureExtractor | None = None,
    split: str = "train",
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 250,
    download: bool = False,
    progress: bool = False,
) -> Evaluation:
    """Like `evaluate`, for a given set of uint8 images (N, C, S, S), e.g. a real test split as a baseline.

    The reference images are loaded at the images' size and channel count.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ConfigError(f"expected uint8 images (N, C, S, S), got {images.dtype} {tuple(images.shape)}.")
    if len(images) < 4:
        raise ConfigError(f"need at least 4 images, got {len(images)}.")
    chosen, extractor, reference = prepare(
        metrics, features, data, root=root, split=split, image_size=int(images.shape[-1]),
        channels=int(images.shape[1]), device=device, download=download, batch_size=batch_size, progress=progress,
    )  # fmt: skip
    fake = extractor.extract(images, batch_size=batch_size, logits=any(m.needs_logits for m in chosen))
    details: dict[str, Any] = {}
    values, lower = score(fake, reference, chosen, seed=seed, details=details)
    return Evaluation(
        values, len(images), reference.describe(), describe_extractor(extractor), lower, {"seed": seed}, details
    )


def prepare(
    metrics: str | list[str],
    features: str | Path | FeatureExtractor | None,
    data: str | ImageData,
    *,
    root: str | Path | None,
    split: str,
    image_size: int,
    channels: int,
    device: str | torch.device,
    download: bool,
    batch_size: int,
    progress: bool,
) -> tuple[list[Metric], FeatureExtractor, Reference]:
    """The parsed metrics, the extractor (on `device`) and the reference features for an evaluation."""
    chosen = parse_metrics(metrics)
    if isinstance(features, FeatureExtractor):
        extractor = features.to(device)
    else:
        name = data.name if isinstance(data, ImageData) else data
        extractor = load_features(features, name, device=device, download=download)
    reference = reference_features(
        extractor, data, root=root, split=split, image_size=image_size, channels=channels,
        download=download, batch_size=batch_size, progress=progress, groups=any(m.needs_groups for m in chosen),
    )  # fmt: skip
    return chosen, extractor, reference
