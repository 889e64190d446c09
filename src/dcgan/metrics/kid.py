"""Kernel Inception Distance (Bińkowski et al., 2018): an unbiased estimate of the squared MMD between real and
generated features under the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3.

Unlike FID it has no bias from the sample count: two samples of one distribution score 0 on average. It is the
mean over `subsets` random subsets of `subset_size` from each side (torchmetrics' `KernelInceptionDistance`,
fed with precomputed features, in float64, with a seeded generator so a figure can be reproduced).
"""

from __future__ import annotations

import torch

from dcgan.errors import ConfigError
from dcgan.metrics.registry import Metric, MetricInputs, Precomputed, quiet_torchmetrics, register

SUBSETS = 100
SUBSET_SIZE = 1000


def kernel_inception_distance(
    real: torch.Tensor, fake: torch.Tensor, *, subsets: int = SUBSETS, subset_size: int = SUBSET_SIZE, seed: int = 0
) -> tuple[float, float]:
    """KID between two (N, D) feature sets: (mean, standard deviation) over the subsets.

    `subset_size` is capped at the smaller set's size, so small evaluations still work (with more variance).
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ConfigError("KID needs at least 2 samples on each side.")
    with quiet_torchmetrics(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        metric = KernelInceptionDistance(feature=Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
        metric.update(real.detach().cpu().double(), real=True)
        metric.update(fake.detach().cpu().double(), real=False)
        mean, std = metric.compute()
    return float(mean), float(std)


def _compute(inputs: MetricInputs) -> dict[str, float]:
    mean, std = kernel_inception_distance(inputs.reference.features, inputs.fake_features, seed=inputs.seed)
    return {"kid": mean, "kid_std": std}


register(
    Metric(
        "kid",
        _compute,
        lower_is_better=True,
        primary="kid",
        description="unbiased squared MMD, cubic polynomial kernel, mean of 100 subsets of up to 1,000",
    )
)
