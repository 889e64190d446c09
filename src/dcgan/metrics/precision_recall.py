"""Improved precision and recall (Kynkäänniemi et al., 2019), k = 3.

Each set's manifold is the union of balls around its feature vectors, each ball reaching the point's k-th
nearest neighbour within its own set. Precision is the fraction of generated samples inside the real manifold
(are samples realistic?); recall is the fraction of real images inside the generated manifold (is the variety
covered?). The paper uses VGG-16 features; here they are the chosen extractor's. Both sets should be the same
size, since the ball radii shrink as a set grows.
"""

from __future__ import annotations

import torch

from dcgan.errors import ConfigError
from dcgan.metrics.registry import Metric, MetricInputs, register

K = 3


def knn_radii(features: torch.Tensor, k: int = K, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the row itself, at distance 0, is not counted)."""
    if features.shape[0] <= k:
        raise ConfigError(f"precision/recall with k={k} needs more than {k} samples per set.")
    x = features.double()
    radii = [torch.cdist(part, x).kthvalue(k + 1, dim=1).values for part in x.split(chunk)]
    return torch.cat(radii)


def coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> float:
    """Fraction of `points` within distance radii[j] of some centres[j]."""
    c = centres.double()
    inside = [(torch.cdist(part, c) <= radii[None]).any(dim=1) for part in points.double().split(chunk)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = K) -> tuple[float, float]:
    """(precision, recall) of generated features `fake` against real features `real`, both (N, D)."""
    precision = coverage(fake, real, knn_radii(real, k))
    recall = coverage(real, fake, knn_radii(fake, k))
    return precision, recall


def _compute(inputs: MetricInputs) -> dict[str, float]:
    n = inputs.fake_features.shape[0]
    real = inputs.reference.subset(n, seed=inputs.seed)
    precision, recall = precision_recall(real, inputs.fake_features)
    return {"precision": precision, "recall": recall}


register(
    Metric(
        "pr",
        _compute,
        lower_is_better=False,
        primary=None,
        description="improved precision and recall, k=3, against as many reference images as samples",
    )
)
