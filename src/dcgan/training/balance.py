"""`--balance-groups`: draw more often the real images of the groups G draws too rarely, measured as it trains.

`--class-weights black=3` needs its weight found by trial (a full run per guess: docs/training.md). This finds it
as the run goes: every `--balance-every` steps a classifier fitted on the groups (`dcgan extractor fit ...
--labels-from-name race`) reads the groups of a fixed set of G's samples, and each group's draw weight moves by
half the log of its coverage error,

    w_g <- w_g * (share of g among the training images / share of g among the samples) ** GAIN,

then the weights are scaled so the draws' mean weight is 1 (a weight of 2: the group is drawn twice as often as
the data holds it) and kept within [1 / MAX_WEIGHT, MAX_WEIGHT]. A group G under-draws is then shown to D more
often, which makes D ask G for it; one G over-draws is shown less. An integral controller: the weights settle
where the samples' shares meet the data's.

Each image's group is its label where the data's classes are the classifier's (a labelled set, or the field of
UTKFace-style names the classifier was fitted on), else the classifier's reading of it, so unlabelled data can be
balanced too. Which images an epoch draws depends only on the weights in force at its first step, and the weights'
history is part of the training state: a resumed run, and every DDP rank, draws the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from dcgan.errors import ConfigError

if TYPE_CHECKING:
    from dcgan.metrics.extractors import FeatureExtractor
    from dcgan.metrics.reference import Groups
    from dcgan.models import Generator

#: How much of a group's log coverage error one update corrects: half, so a noisy reading moves the weights less.
GAIN = 0.5
#: The weights stay within [1 / MAX_WEIGHT, MAX_WEIGHT] of the data's own share.
MAX_WEIGHT = 8.0
#: Samples read at each update: a group of 4% is then ~80 samples, a share known to about +-11%.
SAMPLES = 2000


@dataclass
class BalanceState:
    """The part of the training state `--balance-groups` adds: the weights and from which step each held.

    Attributes:
        history: (step, per-group weights) pairs in step order: the weights in force for an epoch are the last
            ones set at or before its first step (none: every weight 1).
    """

    history: list[tuple[int, list[float]]] = field(default_factory=list)

    def weights_at(self, step: int, groups: int) -> list[float]:
        """The per-group weights in force for an epoch that starts at `step`."""
        current = [1.0] * groups
        for since, weights in self.history:
            if since > step:
                break
            current = weights
        return current

    def to_dict(self) -> dict[str, Any]:
        return {"history": [[step, list(weights)] for step, weights in self.history]}

    @classmethod
    def from_dict(cls, state: dict[str, Any] | None) -> BalanceState:
        if not state:
            return cls()
        return cls([(int(step), [float(w) for w in weights]) for step, weights in state["history"]])


def next_weights(weights: list[float], samples: torch.Tensor, target: torch.Tensor) -> list[float]:
    """The weights after one update: each moved by GAIN of its log coverage error, then scaled to a draw-weighted
    mean of 1 and clipped to [1 / MAX_WEIGHT, MAX_WEIGHT].

    Args:
        weights: the per-group weights now.
        samples: each group's share among G's samples (as the classifier reads them).
        target: each group's share among the training images; a group with none keeps its weight.
    """
    floor = 1.0 / SAMPLES  # a group no sample shows counts as half a sample's worth short, not infinitely
    moved = [
        w * (float(t) / max(float(s), floor)) ** GAIN if t > 0 else w
        for w, s, t in zip(weights, samples.tolist(), target.tolist(), strict=True)
    ]
    for _ in range(3):  # scale, clip, and scale again: a clipped group moves the others' mean a little
        mean = sum(w * float(t) for w, t in zip(moved, target.tolist(), strict=True)) or 1.0
        moved = [min(max(w / mean, 1 / MAX_WEIGHT), MAX_WEIGHT) for w in moved]
    return moved


class GroupBalancer:
    """Reads G's groups every few steps and sets each training image's draw weight from them.

    Args:
        extractor: a classifier fitted on labelled groups (`class_names(extractor)` not None).
        groups: the training images' groups under its classes (`reference_groups`: labels, names or its reading).
        seed: picks the fixed latents read at every update.
        name: the extractor's name as the user gave it, for messages.

    Raises:
        ConfigError: no training image has a group.
    """

    def __init__(self, extractor: FeatureExtractor, groups: Groups, *, seed: int, name: str) -> None:
        self.extractor, self.seed, self.name = extractor, seed, name
        self.classes, self.source = groups.classes, groups.source
        #: (N,) each training image's group, -1 where it has none (drawn with weight 1).
        self.groups = groups.labels.long()
        known = self.groups[self.groups >= 0]
        if len(known) == 0:
            raise ConfigError(f"--balance-groups {name}: none of the training images has a group to balance.")
        #: Each group's share among the training images: what the samples' shares are steered to.
        self.target = torch.bincount(known, minlength=len(self.classes))[: len(self.classes)].double() / len(known)
        self.state = BalanceState()

    def image_weights(self, step: int) -> torch.Tensor:
        """Each training image's draw weight (float64) for an epoch that starts at `step`."""
        per_group = torch.tensor(self.state.weights_at(step, len(self.classes)), dtype=torch.float64)
        return torch.where(self.groups >= 0, per_group[self.groups.clamp(min=0)], torch.ones((), dtype=torch.float64))

    @torch.no_grad()
    def read(self, generator: Generator) -> torch.Tensor:
        """Each group's share among SAMPLES samples of `generator` (fixed latents), as the classifier reads them."""
        from dcgan.metrics.evaluate import generated_features

        self.extractor.to(next(generator.parameters()).device)
        fake, _ = generated_features(generator, self.extractor, SAMPLES, seed=self.seed, logits=True)
        assert fake.logits is not None
        count = len(self.classes)
        return torch.bincount(fake.logits.argmax(1), minlength=count)[:count].double() / SAMPLES

    def update(self, step: int, generator: Generator) -> tuple[list[float], list[float]]:
        """Read `generator`'s shares and set the weights for the epochs from `step` on; returns (shares, weights).

        Only the process that samples calls this; the others take its result with `apply`.
        """
        shares = self.read(generator)
        weights = next_weights(self.state.weights_at(step, len(self.classes)), shares, self.target)
        return shares.tolist(), weights

    def apply(self, step: int, weights: list[float]) -> None:
        """Put `weights` in force for the epochs that start at or after `step` (replacing any set later)."""
        self.state.history = [h for h in self.state.history if h[0] < step] + [(step, list(weights))]

    def describe(self, every: int) -> str:
        """The line a run prints when it starts: what is read, how often, and each group's share of the images."""
        parts = ", ".join(f"{n} {100 * float(t):.1f}%" for n, t in zip(self.classes, self.target, strict=True))
        return (
            f"--balance-groups {self.name}: every {every} steps, {SAMPLES:,} samples' groups set each group's draw "
            f"weight (groups from {self.source}; their shares of the images: {parts})."
        )

    def report(self, shares: list[float], weights: list[float]) -> dict[str, float]:
        """The values logged at an update: each group's coverage (samples' share over the data's) and weight."""
        values: dict[str, float] = {}
        for name, s, t, w in zip(self.classes, shares, self.target.tolist(), weights, strict=True):
            if t > 0:
                values[f"coverage_{name}"] = round(s / t, 4)
            values[f"weight_{name}"] = round(w, 4)
        return values


def format_update(step: int, classes: tuple[str, ...], values: dict[str, float]) -> str:
    """One line for an update: each group's coverage and its new weight."""
    parts = []
    for name in classes:
        coverage = values.get(f"coverage_{name}")
        shown = f"{coverage:.2f}x" if coverage is not None and math.isfinite(coverage) else "-"
        parts.append(f"{name} {shown} (weight {values[f'weight_{name}']:.2f})")
    return f"step {step:,}: groups' coverage (draw weight from here): " + ", ".join(parts)
