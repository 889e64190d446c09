"""Inception Score (Salimans et al., 2016): exp(E_x KL(p(y|x) || p(y))) over the extractor's class predictions.

High when each sample is confidently one class and the classes are evenly covered; at most the number of
classes (1,008 for the FID Inception, 10 for the domain classifiers). As in the original code the Inception
logits omit the final bias. torchmetrics' `InceptionScore` does the arithmetic (10 splits, seeded shuffle).
"""

from __future__ import annotations

import torch

from dcgan.errors import ConfigError
from dcgan.metrics.registry import Metric, MetricInputs, Precomputed, quiet_torchmetrics, register

SPLITS = 10


def inception_score(logits: torch.Tensor, *, splits: int = SPLITS, seed: int = 0) -> tuple[float, float]:
    """IS of (N, classes) logits: (mean, standard deviation) over `splits` splits (fewer if N is small)."""
    from torchmetrics.image.inception import InceptionScore

    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ConfigError(f"Inception Score needs (N, classes) logits, got shape {tuple(logits.shape)}.")
    with quiet_torchmetrics(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        metric = InceptionScore(feature=Precomputed(logits.shape[1]), splits=min(splits, logits.shape[0]))
        metric.update(logits.detach().cpu().double())
        mean, std = metric.compute()
    return float(mean), float(std) if std == std else 0.0  # one split: std is NaN


def _compute(inputs: MetricInputs) -> dict[str, float]:
    if inputs.fake_logits is None:
        raise ConfigError("the Inception Score needs an extractor with a classifier head.")
    mean, std = inception_score(inputs.fake_logits, seed=inputs.seed)
    return {"is": mean, "is_std": std}


register(
    Metric(
        "is",
        _compute,
        lower_is_better=False,
        primary="is",
        needs_logits=True,
        description="exp of the mean KL between each sample's class posterior and the marginal (10 splits)",
    )
)
