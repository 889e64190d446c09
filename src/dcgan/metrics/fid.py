"""Fréchet Inception Distance (Heusel et al., 2017): the Fréchet distance between Gaussians fitted to features.

FID = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)). The computation is torchmetrics'
`FrechetInceptionDistance` (float64 sums, eigenvalue square root), fed with features that dcgan's extractors
have already computed, so the same pass serves every metric and the reference side comes from the cache.
"""

from __future__ import annotations

import torch

from dcgan.errors import ConfigError
from dcgan.metrics.registry import Metric, MetricInputs, Precomputed, register


class FrechetDistance:
    """FID against one fixed reference set: its mean and covariance are accumulated once, then reused.

    Args:
        reference: (N, D) features of the real images.
    """

    def __init__(self, reference: torch.Tensor) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        if reference.ndim != 2 or reference.shape[0] < 2:
            raise ConfigError(f"FID needs at least 2 reference feature vectors, got shape {tuple(reference.shape)}.")
        self.dim = int(reference.shape[1])
        self._metric = FrechetInceptionDistance(feature=Precomputed(self.dim), reset_real_features=False)
        self._metric.update(reference.detach().cpu().double(), real=True)

    def __call__(self, features: torch.Tensor) -> float:
        """FID of (M, D) features against the reference; M must be at least 2."""
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ConfigError(f"expected features of shape (M, {self.dim}), got {tuple(features.shape)}.")
        if features.shape[0] < 2:
            raise ConfigError("FID needs at least 2 samples.")
        self._metric.update(features.detach().cpu().double(), real=False)
        try:
            return float(self._metric.compute())
        finally:
            self._metric.reset()  # drops the generated side only


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two (N, D) feature sets."""
    return FrechetDistance(real)(fake)


def _compute(inputs: MetricInputs) -> dict[str, float]:
    fid = inputs.reference.memo.get("fid", lambda: FrechetDistance(inputs.reference.features))
    assert isinstance(fid, FrechetDistance)
    return {"fid": fid(inputs.fake_features)}


register(
    Metric(
        "fid",
        _compute,
        lower_is_better=True,
        primary="fid",
        description="Fréchet distance between Gaussians fitted to real and generated features (all reference images)",
    )
)
