"""Metrics by name: each is a small record saying what it needs, how to compute it and which way is better.

A metric module (`fid.py`, `kid.py`, ...) calls `register(Metric(...))` when imported. Values are named with
the sample count, as StyleGAN does: `fid` on 10,000 samples is reported as `fid10k`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dcgan.errors import ConfigError

if TYPE_CHECKING:
    from dcgan.metrics.reference import Reference


@dataclass
class MetricInputs:
    """What a metric sees: features (and class logits) of the generated images, and the reference set."""

    fake_features: torch.Tensor
    fake_logits: torch.Tensor | None
    reference: Reference
    seed: int = 0
    #: Where a metric may leave a structured result beside its values, under its value names (coverage's
    #: per-group table); `score` passes them on.
    details: dict[str, Any] = field(default_factory=dict)
    #: For a class-conditional generator: the class each sample was drawn with (N,), and the generator's class
    #: names (label i is fake_classes[i]); None for an unconditional one.
    fake_labels: torch.Tensor | None = None
    fake_classes: tuple[str, ...] | None = None

    def drawn_classes(self, metric: str) -> tuple[torch.Tensor, tuple[str, ...]]:
        """`fake_labels` and `fake_classes`, for a metric that needs them (`needs_classes`); an unconditional
        generator's inputs are a `ConfigError` naming `metric`."""
        if self.fake_labels is None or self.fake_classes is None:
            raise ConfigError(
                f"{metric} needs a class-conditional generator (trained with --conditional); this one draws no classes."
            )
        return self.fake_labels, self.fake_classes


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Attributes:
        name: what `--metrics` calls it (`fid`, `kid`, `is`, `pr`).
        compute: inputs -> {value name: value}, e.g. {"kid": 0.01, "kid_std": 0.002}.
        lower_is_better: the direction of every value it reports (std values aside).
        primary: the value a training run tracks to keep its best checkpoint, or None if it has no single one.
        needs_logits: True if it reads the extractor's class logits (Inception Score).
        description: one line for help texts.
        needs_groups: True if it reads the reference images' groups (`Reference.groups`, for coverage).
        directions: values whose direction differs from `lower_is_better`, e.g. {"coverage_max": True}.
        needs_classes: True if it reads the class each sample was drawn with (a class-conditional generator).
        needs_classifier: True if the extractor must be a classifier with named classes (`recognised`).
    """

    name: str
    compute: Callable[[MetricInputs], dict[str, float]]
    lower_is_better: bool
    primary: str | None
    needs_logits: bool = False
    description: str = ""
    needs_groups: bool = False
    directions: Mapping[str, bool] = field(default_factory=dict, hash=False)
    needs_classes: bool = False
    needs_classifier: bool = False

    def lower_is_better_for(self, value: str) -> bool:
        """Which way is better for one of its values (named without the sample count)."""
        return self.directions.get(value, self.lower_is_better)


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    METRICS[metric.name] = metric
    return metric


def parse_metrics(names: str | list[str] | tuple[str, ...]) -> list[Metric]:
    """`"fid,kid"` or `["fid", "kid"]` -> the registered metrics, in that order; unknown names are an error."""
    wanted = [n.strip().lower() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not wanted:
        raise ConfigError(f"--metrics needs at least one of {', '.join(METRICS)}.")
    unknown = [n for n in wanted if n not in METRICS]
    if unknown:
        raise ConfigError(f"Unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}.")
    return [METRICS[n] for n in dict.fromkeys(wanted)]


def count_name(n: int) -> str:
    """The sample count as it appears in a metric's name: 10000 -> '10k', 2500 -> '2500'."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def value_name(value: str, n: int) -> str:
    """'fid', 10000 -> 'fid10k'; 'kid_std', 10000 -> 'kid10k_std'."""
    base, _, suffix = value.partition("_")
    return f"{base}{count_name(n)}" + (f"_{suffix}" if suffix else "")


class Precomputed(nn.Identity):
    """The "feature network" handed to torchmetrics when the features are already computed: passes them through.

    torchmetrics' FID, KID and IS classes run their network on whatever `update` receives; giving them this
    lets one pass of the extractor feed every metric, and reference features come from the on-disk cache.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


@contextmanager
def quiet_torchmetrics() -> Iterator[None]:
    """torchmetrics warns that KID and IS keep features in memory; that is the point here, so hush it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        warnings.filterwarnings("ignore", message=".*degrees of freedom is <= 0.*")  # one split: std is NaN
        yield


@dataclass
class Memo:
    """A per-reference store for expensive objects built from the reference features (e.g. FID's statistics)."""

    items: dict[str, object] = field(default_factory=dict)

    def get(self, key: str, make: Callable[[], object]) -> object:
        if key not in self.items:
            self.items[key] = make()
        return self.items[key]
