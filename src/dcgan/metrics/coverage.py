"""Coverage of labelled groups: does the generator draw each group as often as the training images hold it?

A classifier fitted on labelled groups (`dcgan extractor fit`, e.g. `cnn-utkface64-gender`) reads each sample's
group (its top class). Each group's share among the samples is divided by its share among the reference images
(their own labels where they have the classifier's classes, else the classifier's predictions on them): 1.00x
is a group drawn exactly as often as in the training images, 0.08x one the generator has nearly dropped (a
missing mode), above 1 one it over-draws. Reported as `coverage_min` (the smallest ratio; at most 1, higher is
better) and `coverage_max` (the largest; at least 1, lower is better), with the per-group table beside them.

The samples' groups are the classifier's readings and the reference's are labels, so a classifier's errors can
move a ratio from 1 even for a perfect generator. Samples are new images, and a classifier reads new images as it
reads held-out ones, not as it reads those it was fitted on: before calibration `cnn-utkface64-race` read 3.8% of
its training faces as black, 2.4% of held-out ones, against 3.9% labelled, so a perfect generator would have scored
0.60x. `dcgan extractor fit` therefore calibrates a classifier on its held-out images (`dcgan.metrics.fit.calibrate`)
and saves the ratio it then reads for them (cross-fitted: 0.95x for black faces); the table shows it beside each
group, the yardstick for how far from 1 a perfect generator would land. It also shows each group's share among the
reference images as the classifier reads them.

Precision/recall (`pr`) says whether the variety of the features is covered; this says which groups people
care about are missing, in their own names ("male: 0.08x of its share in the training images").
"""

from __future__ import annotations

from typing import Any

import torch

from dcgan.errors import ConfigError
from dcgan.metrics.reference import Groups
from dcgan.metrics.registry import Metric, MetricInputs, register


def group_coverage(logits: torch.Tensor, groups: Groups) -> dict[str, Any]:
    """Each group's share among the samples, its share among the reference images, and their ratio.

    Args:
        logits: (N, classes) class logits of the generated samples.
        groups: the reference images' groups under the same classes (`Reference.groups`).

    Returns:
        {"groups": [{"name", "samples", "reference", "ratio", "reference_classified"}, ...] in class order (ratio
        None for a group the reference does not hold; `reference_classified` the group's share among the
        reference images as the classifier reads them, where `groups.predicted` is known), "min", "max" (ratios
        over the groups the reference holds), "min_group", "max_group", "reference_source", "reference_images"}.
    """
    count = len(groups.classes)
    if logits.ndim != 2 or logits.shape[1] != count or logits.shape[0] < 1:
        raise ConfigError(f"coverage needs (N, {count}) logits for the {count} groups, got {tuple(logits.shape)}.")
    known = groups.labels[groups.labels >= 0]
    if len(known) == 0:
        raise ConfigError("coverage needs reference images with a group, and none has one.")
    samples = torch.bincount(logits.argmax(1), minlength=count).double() / logits.shape[0]
    reference = torch.bincount(known, minlength=count)[:count].double() / len(known)
    ratios = {name: float(samples[i] / reference[i]) for i, name in enumerate(groups.classes) if reference[i] > 0}
    rows = [
        {"name": name, "samples": float(samples[i]), "reference": float(reference[i]), "ratio": ratios.get(name)}
        for i, name in enumerate(groups.classes)
    ]
    if groups.predicted is not None:  # the classifier's own reading of the reference images, beside their labels
        classified = torch.bincount(groups.predicted, minlength=count)[:count].double() / len(groups.predicted)
        for row, share in zip(rows, classified.tolist()):
            row["reference_classified"] = share
    lowest, highest = min(ratios, key=ratios.__getitem__), max(ratios, key=ratios.__getitem__)
    return {
        "groups": rows, "min": ratios[lowest], "max": ratios[highest], "min_group": lowest, "max_group": highest,
        "reference_source": groups.source, "reference_images": len(known),
    }  # fmt: skip


def _compute(inputs: MetricInputs) -> dict[str, float]:
    if inputs.fake_logits is None:
        raise ConfigError("coverage needs an extractor with a classifier head.")
    if inputs.reference.groups is None:
        raise ConfigError("coverage needs the reference images' groups (reference_features(..., groups=True)).")
    result = group_coverage(inputs.fake_logits, inputs.reference.groups)
    inputs.details["coverage"] = result
    return {"coverage_min": result["min"], "coverage_max": result["max"]}


register(
    Metric(
        "coverage",
        _compute,
        lower_is_better=False,
        primary=None,  # a per-group check; a run keeps its best by fid, kid or is
        needs_logits=True,
        needs_groups=True,
        directions={"coverage_max": True},
        description="each labelled group's share among the samples over its share among the training images",
    )
)
