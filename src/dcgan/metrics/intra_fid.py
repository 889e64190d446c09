"""Per-class FID of a class-conditional generator ("intra-FID", Miyato & Koyama 2018).

The samples drawn with class y are compared with the real images labelled y, one Fréchet distance per class;
`intrafid` is their mean, and the per-class values are kept beside it. FID over all samples can look fine for a
generator that draws sandals when asked for sneakers, as long as both appear equally often; per-class FID cannot.
Each class has fewer samples than the whole set, so its FID carries more small-sample bias: compare per-class
values with each other and with runs at the same sample count, not with an all-class FID.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from dcgan.errors import ConfigError
from dcgan.metrics.fid import FrechetDistance
from dcgan.metrics.reference import Reference, class_index
from dcgan.metrics.registry import Metric, MetricInputs, register


def per_class_fid(
    features: torch.Tensor, labels: torch.Tensor, requested: tuple[str, ...], reference: Reference
) -> dict[str, Any]:
    """FID of each requested class's samples against the reference images of that class.

    Args:
        features: (N, D) features of the samples.
        labels: (N,) the class each sample was drawn with, an index into `requested`.
        requested: the generator's class names, matched to the reference's by name.
        reference: real features with their labels (`Reference.labels`, `Reference.classes`).

    Returns:
        {"mean": mean of the per-class FIDs, "classes": [{"name", "fid", "samples", "reference"}, ...] in the
        generator's class order, "reference": the reference split's description}.

    Raises:
        ConfigError: the reference has no labels, lacks one of the classes, or a class has fewer than 2 samples.
    """
    real_labels = reference.labels
    if real_labels is None or reference.classes is None:
        raise ConfigError(
            f"intrafid needs reference images with class labels, and {reference.data} ({reference.split}) has none."
        )
    found = class_index(requested, reference.classes)
    missing = [name for name, i in zip(requested, found) if i is None]
    if missing:
        raise ConfigError(
            f"intrafid needs the generator's classes among the reference's, and {reference.data} has "
            f"{', '.join(reference.classes)} but not {', '.join(missing)}."
        )
    rows: list[dict[str, Any]] = []
    for k, (name, r) in enumerate(zip(requested, found)):
        fake = features[labels == k]
        real = reference.features[real_labels == r]
        if len(fake) < 2 or len(real) < 2:
            raise ConfigError(
                f"intrafid needs at least 2 samples and 2 reference images of each class; class {name} has "
                f"{len(fake)} and {len(real)} (raise --n)."
            )
        fid = reference.memo.get(f"fid-class-{r}", partial(FrechetDistance, real))
        assert isinstance(fid, FrechetDistance)
        rows.append({"name": name, "fid": fid(fake), "samples": len(fake), "reference": len(real)})
    return {
        "mean": sum(row["fid"] for row in rows) / len(rows),
        "classes": rows,
        "reference": f"{reference.data} {reference.split} split",
    }


def _compute(inputs: MetricInputs) -> dict[str, float]:
    labels, classes = inputs.drawn_classes("intrafid")
    result = per_class_fid(inputs.fake_features, labels, classes, inputs.reference)
    inputs.details["intrafid"] = result
    return {"intrafid": result["mean"]}


register(
    Metric(
        "intrafid",
        _compute,
        lower_is_better=True,
        primary=None,  # not an --eval-metric: a run keeps its best by fid, kid or is
        needs_classes=True,
        description="a conditional generator's FID per class against the real images of that class, averaged",
    )
)
