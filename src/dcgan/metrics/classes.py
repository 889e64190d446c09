"""How a held-out classifier reads the samples: its confidence and how evenly the classes are covered.

Two numbers a user understands without a reference set: `confidence`, the mean top-class probability (real
MNIST test digits under the LeNet extractor: about 0.99; a blurred, half-formed digit drags it down), and
`entropy`, the entropy in nats of the mean predicted class distribution (ln 10 = 2.30 for ten evenly covered
classes; a generator that drops a class scores lower). Both come from the extractor's class head, so they need a
domain classifier (`dcgan extractor fit`); with the FID Inception they describe ImageNet classes instead.
"""

from __future__ import annotations

import torch

from dcgan.errors import ConfigError
from dcgan.metrics.registry import Metric, MetricInputs, register


def class_statistics(logits: torch.Tensor) -> tuple[float, float]:
    """(mean top-class probability, entropy in nats of the mean class distribution) of (N, classes) logits."""
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ConfigError(f"class statistics need (N, classes) logits, got shape {tuple(logits.shape)}.")
    probs = torch.softmax(logits.double(), dim=1)
    confidence = float(probs.max(dim=1).values.mean())
    marginal = probs.mean(dim=0)
    entropy = -float((marginal * marginal.clamp_min(1e-300).log()).sum())
    return confidence, max(entropy, 0.0)  # -0.0 when one class takes everything


def _compute(inputs: MetricInputs) -> dict[str, float]:
    if inputs.fake_logits is None:
        raise ConfigError("the class statistics need an extractor with a classifier head.")
    confidence, entropy = class_statistics(inputs.fake_logits)
    return {"confidence": confidence, "entropy": entropy}


register(
    Metric(
        "classes",
        _compute,
        lower_is_better=False,
        primary=None,  # two numbers, neither alone is the quality; a run keeps its best by fid, kid or is
        needs_logits=True,
        description="a classifier's mean top-class probability and the entropy of its mean class distribution",
    )
)
