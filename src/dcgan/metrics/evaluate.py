"""`dcgan evaluate`: sample a generator, extract features, and compute the chosen metrics against real images.

One pass of the extractor over the generated images feeds every metric; the real side comes from
`reference_features` (cached). Values are named with the sample count (`fid10k`) and reported together with
the reference split and the extractor, so a figure always says what it was measured against.

A class-conditional generator is sampled evenly over its classes (sample i is drawn with class i mod K), and two
metrics read the classes: `intrafid` (FID per class against the real images of that class) and `recognised`
(how often a classifier reads the class that was asked for, its accuracy on real test images the ceiling).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dcgan.conditional import ClassGenerator
from dcgan.data import ImageData
from dcgan.errors import ConfigError
from dcgan.metrics.extractors import class_names, load_features
from dcgan.metrics.feature_extractor import FeatureExtractor, Features
from dcgan.metrics.reference import Reference, class_index, reference_features
from dcgan.metrics.registry import Metric, MetricInputs, parse_metrics, value_name
from dcgan.models import Generator
from dcgan.plan.inference import applied, generator_plan
from dcgan.sample import generate, latents, to_uint8

DEFAULT_METRICS = "fid,kid,is,pr"
#: What a class-conditional generator adds to the defaults, where the reference and the extractor allow them.
CONDITIONAL_METRICS = ("intrafid", "recognised")


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
                lines += ["", *coverage_table(name, detail, self.features)]
            elif name.startswith("intrafid"):
                lines += ["", *intrafid_table(name, detail)]
            elif name.startswith("recognised"):
                lines += ["", *recognised_table(name, detail, self.features)]
        for note in self.info.get("skipped", []):
            lines.append(f"not measured: {note}")
        return "\n".join(lines)


def coverage_table(name: str, detail: dict[str, Any], features: dict[str, Any] | None = None) -> list[str]:
    """Coverage's per-group table: each group's share among the samples and the reference, and their ratio.

    Beside them, where the classifier was calibrated (`dcgan extractor fit`), the ratio it reads for real images it
    did not train on: about what a generator that draws each group exactly as often as the data would score."""
    width = max(len("group"), *(len(row["name"]) for row in detail["groups"]))
    heldout = json.loads(features["heldout_read"]) if features and "heldout_read" in features else None
    if heldout is not None and len(heldout) != len(detail["groups"]):
        heldout = None
    lines = [
        f"{name}: each group's share among the samples / its share among the {detail['reference_images']:,} "
        f"reference images (groups from {detail['reference_source']}; 1.00x = drawn as often as in the data)",
        f"  {'group':<{width}}  {'samples':>8}  {'reference':>9}  {'ratio':>7}  {'reference as classified':>23}"
        + ("  held-out real images' ratio" if heldout is not None else ""),
    ]
    for i, row in enumerate(detail["groups"]):
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        classified = f"{row['reference_classified']:.1%}" if "reference_classified" in row else ""
        line = (
            f"  {row['name']:<{width}}  {row['samples']:>8.1%}  {row['reference']:>9.1%}  {ratio:>7}  {classified:>23}"
        )
        if heldout is not None:
            line += f"  {heldout[i]:>27.2f}x" if heldout[i] is not None else f"  {'-':>28}"
        lines.append(line.rstrip())
    lines.append(
        f"  lowest {detail['min']:.2f}x ({detail['min_group']}), highest {detail['max']:.2f}x ({detail['max_group']})"
    )
    return lines


def intrafid_table(name: str, detail: dict[str, Any]) -> list[str]:
    """Per-class FID: each class's samples against the real images of that class."""
    width = max(len("class"), *(len(row["name"]) for row in detail["classes"]))
    lines = [
        f"{name}: FID of each class's samples against the {detail['reference']} images of that class (mean above)",
        f"  {'class':<{width}}  {'fid':>10}  {'samples':>8}  {'real':>7}",
    ]
    for row in detail["classes"]:
        lines.append(f"  {row['name']:<{width}}  {row['fid']:>10.4f}  {row['samples']:>8,}  {row['reference']:>7,}")
    return lines


def recognised_table(name: str, detail: dict[str, Any], features: dict[str, Any]) -> list[str]:
    """Per-class recognition: how often each requested class is read as itself, against the real images'."""
    accuracy = features.get("test_accuracy")
    measured_on = features.get("measured_on", "test split")
    ceiling = f"{float(accuracy):.2%} of real images ({measured_on})" if accuracy else "not recorded"
    width = max(len("class"), *(len(row["name"]) for row in detail["classes"]))
    real = detail.get("real") is not None
    lines = [
        f"{name}: share of samples {features['name']} reads as the class they were drawn with; "
        f"ceiling: it reads {ceiling} right",
        f"  {'class':<{width}}  {'samples':>8}  {'recognised':>10}"
        + (f"  {'real':>7}" if real else "") + "  most often mistaken for",
    ]  # fmt: skip
    for row in detail["classes"]:
        share = f"{row['recognised']:>10.1%}" if row["recognised"] is not None else f"{'-':>10}"
        line = f"  {row['name']:<{width}}  {row['samples']:>8,}  {share}"
        if real:
            line += f"  {row['real']:>7.1%}" if row.get("real") is not None else f"  {'-':>7}"
        if "mistaken_for" in row:
            line += f"  {row['mistaken_for']} ({row['mistaken_share']:.1%})"
        lines.append(line.rstrip())
    if real:
        lines.append(
            f"  real: the classifier's accuracy on the {detail['reference']} images ({detail['real']:.2%} overall)"
        )
    return lines


#: The golden ratio's fractional part: the points frac((i + 0.5) * GOLDEN), i = 0 ... n - 1, fill [0, 1) about
#: evenly for every n (a Kronecker sequence; any interval holds its length times n of them, to within a few).
GOLDEN = (5**0.5 - 1) / 2


def requested_classes(n: int, num_classes: int, shares: Sequence[float] | None = None) -> torch.Tensor:
    """The class each of n samples of a conditional generator is drawn with; sample i keeps its class whatever n is.

    Evenly (`shares` None): i mod num_classes, so every class gets n / num_classes samples (to within one). In a
    given mix (`shares`, e.g. each class's share of the training images, `Generator.class_shares`): [0, 1) is cut
    into one slice per class as long as its share, and sample i gets the class whose slice holds
    frac((i + 0.5) * GOLDEN), so each class gets its share of the n samples to within a few.
    """
    if shares is None:
        return torch.arange(n) % num_classes
    points = torch.remainder((torch.arange(n, dtype=torch.float64) + 0.5) * GOLDEN, 1.0)
    ends = torch.tensor(list(shares), dtype=torch.float64).cumsum(0)[:-1].contiguous()
    return torch.searchsorted(ends, points, right=True)


def class_labels(
    generator: Generator, n: int, *, evenly: bool = False
) -> tuple[torch.Tensor | None, tuple[str, ...] | None]:
    """(requested classes of n samples, the generator's class names) for a conditional G; (None, None) otherwise.

    The classes come in the mix of G's training images (`Generator.class_shares`), so the samples stand for the
    data set as a whole; evenly where that mix is unknown, or with `evenly` (for the per-class metrics).
    """
    if not getattr(generator, "num_classes", 0):
        return None, None
    shares = None if evenly else getattr(generator, "class_shares", None)
    return requested_classes(n, generator.num_classes, shares), tuple(generator.classes)


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
    evenly: bool = False,
) -> tuple[Features, torch.Tensor | None]:
    """Features of n samples G(z), z the first n latents of `seed` (from `prior`, by default `generator.prior`),
    quantised to uint8 as saved images are. A class-conditional G draws sample i in the class `class_labels`
    gives it: in its training images' mix of classes, or with `evenly` in class i mod K, every class measured
    equally.

    Returns (features, the uint8 images if `keep_images` else None).
    """
    z = latents(n, generator.nz, prior or generator.prior, seed)
    labels, _ = class_labels(generator, n, evenly=evenly)
    # a conditional G draws each class with that class fixed, in full batches; results go back to sample order
    parts: list[tuple[Generator, torch.Tensor]] = [(generator, torch.arange(n))]
    if labels is not None:
        classes = range(generator.num_classes)
        parts = [(ClassGenerator(generator, k), torch.nonzero(labels == k).flatten()) for k in classes]
    feats: torch.Tensor | None = None
    outs: torch.Tensor | None = None
    kept: torch.Tensor | None = None
    for drawing, indices in parts:
        for index in indices.split(batch_size):
            images = to_uint8(generate(drawing, z[index], batch_size))
            f = extractor.extract(images, batch_size=batch_size, logits=logits)
            if feats is None:
                feats = torch.empty(n, f.features.shape[1])
                outs = torch.empty(n, f.logits.shape[1]) if f.logits is not None else None
                kept = torch.empty(n, *images.shape[1:], dtype=torch.uint8) if keep_images else None
            feats[index] = f.features
            if outs is not None and f.logits is not None:
                outs[index] = f.logits
            if kept is not None:
                kept[index] = images
    assert feats is not None
    return Features(feats, outs), kept


def score(
    features: Features,
    reference: Reference,
    metrics: list[Metric],
    *,
    seed: int = 0,
    details: dict[str, Any] | None = None,
    labels: torch.Tensor | None = None,
    classes: tuple[str, ...] | None = None,
) -> tuple[dict[str, float], dict[str, bool]]:
    """The metrics' values for precomputed features, named with the sample count (`fid10k`, ...).

    Args:
        details: if given, filled with the metrics' structured results by value name (`coverage10k`: the
            per-group table).
        labels, classes: for samples of a class-conditional generator, the class each was drawn with and the
            generator's class names (`intrafid` and `recognised` need them).

    Returns (values, lower_is_better), both keyed by value name.
    """
    n = int(features.features.shape[0])
    inputs = MetricInputs(features.features, features.logits, reference, seed, fake_labels=labels, fake_classes=classes)
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
    for key in ("test_accuracy", "measured_on", "data", "standard_weights", "file", "calibrated", "heldout_read"):
        if key in meta:
            out[key] = meta[key]
    return out


def evaluate(
    generator: Generator,
    *,
    data: str | ImageData,
    root: str | Path | None = None,
    metrics: str | list[str] | None = None,
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
        metrics: names (`fid`, `kid`, `is`, `pr`, `classes`, `coverage`, and for a class-conditional generator
            `intrafid` and `recognised`), as a list or comma-separated. None: `DEFAULT_METRICS`, and for a
            conditional generator also `intrafid` where the reference images have its classes as labels and
            `recognised` where the extractor is a classifier of its classes (`info["skipped"]` says why not).
        n: generated samples; FID and KID use every reference image, precision/recall as many as `n`. A
            conditional generator draws its classes in its training images' mix (`Generator.class_shares`)
            for the metrics of the whole data set, and n / K samples of each of its K classes for the
            per-class ones (`intrafid`, `recognised`; one set of samples serves both where the mix is unknown).
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
    labels, classes = class_labels(generator, n)
    if classes is None and metrics is not None and (needing := [m.name for m in parse_metrics(metrics) if m.needs_classes]):  # fmt: skip
        raise ConfigError(  # before any data is loaded
            f"{', '.join(needing)} needs a class-conditional generator (trained with --conditional), and this one "
            "is unconditional."
        )
    defaulted = metrics is None and classes is not None
    skipped: list[str] = []
    if defaulted and classes is not None:
        if not isinstance(features, FeatureExtractor):
            name = data.name if isinstance(data, ImageData) else data
            features = load_features(features, name, device=device, download=download)
        metrics, skipped = conditional_defaults(features, classes)
    chosen, extractor, reference = prepare(
        metrics or DEFAULT_METRICS, features, data, root=root, split=split, image_size=generator.image_size,
        channels=generator.channels, device=device, download=download, batch_size=batch_size, progress=progress,
    )  # fmt: skip
    if defaulted and classes is not None and None in class_index(classes, reference.classes or ()):
        # the defaults ask for per-class FID only where the reference can give it
        chosen = [m for m in chosen if m.name != "intrafid"]
        skipped.append(f"intrafid (the {reference.data} {reference.split} images are not labelled with the "
                       "generator's classes)")  # fmt: skip
    generator.to(device)
    prior = prior or generator.prior
    # A conditional G with a known mix of classes draws the whole data set's metrics in that mix and the per-class
    # ones evenly: two sets of samples, each with the metrics it serves.
    mixed = classes is not None and getattr(generator, "class_shares", None) is not None
    passes = [(chosen, False)]
    if mixed:
        passes = [([m for m in chosen if m.needs_classes == evenly], evenly) for evenly in (False, True)]
        passes = [(group, evenly) for group, evenly in passes if group]
    values: dict[str, float] = {}
    lower: dict[str, bool] = {}
    details: dict[str, Any] = {}
    for group, evenly in passes:
        # G in the layout and convolution path measured fastest here, in fp32 as the extractor
        # (`FeatureExtractor.plan` says why): the samples are then the same images to float rounding on every machine.
        with applied(generator, generator_plan(generator, forced={"precision": "fp32"}).plan):
            fake, _ = generated_features(
                generator, extractor, n, prior=prior, seed=seed, batch_size=batch_size,
                logits=any(m.needs_logits for m in group), evenly=evenly,
            )  # fmt: skip
        drawn, _ = class_labels(generator, n, evenly=evenly)
        got, directions = score(fake, reference, group, seed=seed, details=details, labels=drawn, classes=classes)
        values |= got
        lower |= directions
    info: dict[str, Any] = {"seed": seed, "prior": prior}
    if classes is not None and labels is not None:
        info |= {"classes": list(classes), "samples_per_class": n // len(classes)}
        if mixed:  # the whole data set's metrics: each class's samples, in the training images' mix
            info["samples_in_mix"] = torch.bincount(labels, minlength=len(classes)).tolist()
    if skipped:
        info["skipped"] = skipped
    return Evaluation(values, n, reference.describe(), describe_extractor(extractor), lower, info, details)


def conditional_defaults(extractor: FeatureExtractor, classes: tuple[str, ...]) -> tuple[str, list[str]]:
    """The default metrics of a conditional generator and notes on those left out: `DEFAULT_METRICS`,
    `intrafid` (left out later if the reference images turn out not to carry these classes), and `recognised`
    if the extractor is a classifier that knows every one of the generator's classes."""
    known = class_names(extractor)
    if known is not None and None not in class_index(classes, known):
        return ",".join([DEFAULT_METRICS, *CONDITIONAL_METRICS]), []
    note = (
        f"recognised ({extractor.name} is not a classifier of the generator's classes; pass --features with one "
        "fitted on the run's data)"
    )
    return f"{DEFAULT_METRICS},intrafid", [note]


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
    labels: torch.Tensor | None = None,
    classes: tuple[str, ...] | None = None,
) -> Evaluation:
    """Like `evaluate`, for a given set of uint8 images (N, C, S, S), e.g. a real test split as a baseline.

    The reference images are loaded at the images' size and channel count. With `labels` (N,) and their class
    names `classes`, the images count as drawn with those classes (`intrafid`, `recognised`): real test images
    with their own labels give `recognised` equal to the classifier's test accuracy.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ConfigError(f"expected uint8 images (N, C, S, S), got {images.dtype} {tuple(images.shape)}.")
    if len(images) < 4:
        raise ConfigError(f"need at least 4 images, got {len(images)}.")
    if (labels is None) != (classes is None) or (labels is not None and labels.shape != (len(images),)):
        raise ConfigError(f"labels need their class names and one label per image ({len(images)}).")
    chosen, extractor, reference = prepare(
        metrics, features, data, root=root, split=split, image_size=int(images.shape[-1]),
        channels=int(images.shape[1]), device=device, download=download, batch_size=batch_size, progress=progress,
    )  # fmt: skip
    fake = extractor.extract(images, batch_size=batch_size, logits=any(m.needs_logits for m in chosen))
    details: dict[str, Any] = {}
    values, lower = score(fake, reference, chosen, seed=seed, details=details, labels=labels, classes=classes)
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
    needing = [m.name for m in chosen if m.needs_classifier]
    if needing and class_names(extractor) is None:
        raise ConfigError(
            f"{', '.join(needing)} needs a classifier fitted on the data's classes, and {extractor.name} is not one; "
            "fit one with `dcgan extractor fit --data DATA` and pass --features with its name."
        )
    reference = reference_features(
        extractor, data, root=root, split=split, image_size=image_size, channels=channels,
        download=download, batch_size=batch_size, progress=progress, groups=any(m.needs_groups for m in chosen),
    )  # fmt: skip
    return chosen, extractor, reference
