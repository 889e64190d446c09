"""Does a class-conditional generator draw the class it is asked for? A classifier trained on real images says.

Each sample of a conditional generator is drawn with a requested class; the extractor's classifier head (a
domain classifier fitted by `dcgan extractor fit`, e.g. `lenet-fashion-mnist`) reads its top class, and
`recognised` is the share of samples read as the class they were drawn with (Shmelkov et al. 2018 call this
"GAN-test"). Its ceiling is the classifier's own accuracy on real test images (saved with the classifier and
shown beside the value): a generator whose every sample looked exactly like a real image of its class would be
recognised that often, not more. The per-class table adds how often real reference images of each class are
read correctly, and which other class a class's samples are most often mistaken for.

A sample nobody can read is not recognised, so a blurry or collapsed generator scores low even if its blur is
"in the right class": the value rewards samples that are both class-faithful and clear.
"""

from __future__ import annotations

from typing import Any

import torch

from dcgan.errors import ConfigError
from dcgan.metrics.reference import Reference, class_index
from dcgan.metrics.registry import Metric, MetricInputs, register


def recognised_classes(
    logits: torch.Tensor,
    labels: torch.Tensor,
    requested: tuple[str, ...],
    classifier: tuple[str, ...],
    reference: Reference | None = None,
) -> dict[str, Any]:
    """How often the classifier reads each sample as the class it was drawn with.

    Args:
        logits: (N, len(classifier)) class logits of the samples.
        labels: (N,) the class each sample was drawn with, an index into `requested`.
        requested: the generator's class names.
        classifier: the classifier's class names, matched to `requested` by name.
        reference: real images with labels and the classifier's predictions of them (`Reference.groups`), for
            each class's accuracy on real images; None to leave that column out.

    Returns:
        {"recognised": share of all samples, "classes": [{"name", "samples", "recognised", "mistaken_for",
        "mistaken_share", "real"}, ...] in the generator's class order ("real": the classifier's accuracy on the
        reference images of that class, where known), "real": the same over all reference images or None,
        "reference": the reference split's description or None}.

    Raises:
        ConfigError: the classifier lacks one of the generator's classes, or the shapes disagree.
    """
    found = class_index(requested, classifier)
    missing = [name for name, i in zip(requested, found) if i is None]
    if missing:
        raise ConfigError(
            f"recognised needs a classifier of the generator's classes, and this one knows {', '.join(classifier)} "
            f"but not {', '.join(missing)}; fit one on the run's data with `dcgan extractor fit --data DATA`."
        )
    if logits.ndim != 2 or logits.shape[1] != len(classifier) or labels.shape != (logits.shape[0],):
        raise ConfigError(
            f"recognised needs (N, {len(classifier)}) logits and (N,) labels, got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}."
        )
    target = torch.tensor(found, dtype=torch.long)[labels.long()]
    read = logits.argmax(1)
    hit = read == target
    real = _real_accuracy(requested, classifier, reference)
    rows = []
    for k, name in enumerate(requested):
        mine = labels == k
        count = int(mine.sum())
        row: dict[str, Any] = {
            "name": name,
            "samples": count,
            "recognised": float(hit[mine].double().mean()) if count else None,
        }
        wrong = read[mine & ~hit]
        if len(wrong):
            other = int(torch.bincount(wrong, minlength=len(classifier)).argmax())
            row["mistaken_for"] = classifier[other]
            row["mistaken_share"] = float((wrong == other).sum()) / count
        if real is not None:
            row["real"] = real["classes"][k]
        rows.append(row)
    return {
        "recognised": float(hit.double().mean()),
        "classes": rows,
        "real": real["all"] if real is not None else None,
        "reference": f"{reference.data} {reference.split} split" if real is not None and reference else None,
    }


def _real_accuracy(
    requested: tuple[str, ...], classifier: tuple[str, ...], reference: Reference | None
) -> dict[str, Any] | None:
    """The classifier's accuracy on the labelled reference images, overall and per requested class, or None
    where the reference has no labels of these classes or no predictions."""
    if reference is None or reference.labels is None or reference.classes is None or reference.groups is None:
        return None
    predicted = reference.groups.predicted
    if predicted is None or len(predicted) != len(reference.labels):
        return None
    to_classifier = class_index(reference.classes, classifier)
    known = torch.tensor([-1 if i is None else i for i in to_classifier], dtype=torch.long)
    truth = known[reference.labels]
    usable = truth >= 0
    if not usable.any():
        return None
    correct = predicted == truth
    by_class: list[float | None] = []
    for name in requested:
        (r,) = class_index((name,), reference.classes)
        mine = reference.labels == r if r is not None else torch.zeros_like(usable)
        by_class.append(float(correct[mine].double().mean()) if mine.any() else None)
    return {"all": float(correct[usable].double().mean()), "classes": by_class}


def _compute(inputs: MetricInputs) -> dict[str, float]:
    labels, classes = inputs.drawn_classes("recognised")
    if inputs.fake_logits is None or inputs.reference.groups is None:
        raise ConfigError("recognised needs an extractor with a classifier head.")
    result = recognised_classes(inputs.fake_logits, labels, classes, inputs.reference.groups.classes, inputs.reference)
    inputs.details["recognised"] = result
    return {"recognised": result["recognised"]}


register(
    Metric(
        "recognised",
        _compute,
        lower_is_better=False,
        primary=None,  # not an --eval-metric: a run keeps its best by fid, kid or is
        needs_logits=True,
        needs_groups=True,  # the classifier's class names, and its reading of the real images
        needs_classes=True,
        needs_classifier=True,
        description="share of a conditional generator's samples a classifier reads as the class they were drawn with",
    )
)
