"""`--class-weights`: draw the real images of some classes more (or less) often than the data holds them.

A GAN learns the data as often as it sees each part of it, and a group a few percent of the images strong can be
drawn far less often than that by G (UTKFace's black faces, 4.1% of the folder: docs/training.md). With labels (a
labelled set, class subfolders, or `--labels-from-name`), `--class-weights black=3` makes every image of that class
three times as likely to be drawn as an image of a class not named (weight 1): an epoch is then as many draws,
with replacement, from those weights instead of a permutation of the images. The draws come from the run's seed and
the epoch, like the permutation they replace, so every DDP rank and a resumed run draw the same images.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from dcgan.errors import ConfigError, DataError

if TYPE_CHECKING:
    from dcgan.data import ImageData

#: What a valid `--class-weights` looks like, for messages.
SYNTAX = "CLASS=WEIGHT pairs separated by commas, e.g. black=3 or 0=2,7=0.5, each weight positive"


def parse_class_weights(text: str | None) -> dict[str, float]:
    """`"black=3,asian=1.5"` -> {"black": 3.0, "asian": 1.5}; "" or None -> {} (off).

    Raises:
        ConfigError: a part without "=", an empty name, a name given twice, or a weight that is not a positive,
            finite number.
    """
    weights: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            weight = float(value) if sep else math.nan
        except ValueError:
            weight = math.nan
        if not name or not math.isfinite(weight) or weight <= 0 or name in weights:
            raise ConfigError(f"--class-weights takes {SYNTAX}; {part.strip()!r} is not one.")
        weights[name] = weight
    return weights


def format_class_weights(weights: dict[str, float]) -> str:
    """The canonical text of `weights` (what a run's config stores): names in the order given, `%g` weights."""
    return ",".join(f"{name}={weight:g}" for name, weight in weights.items())


def draw_weights(text: str | None, data: ImageData) -> torch.Tensor | None:
    """Each image's weight in the draws (float64, one per image) for `--class-weights text`; None when off.

    Raises:
        DataError: the images have no labels, or a name is not one of their classes.
    """
    weights = parse_class_weights(text)
    if not weights:
        return None
    if data.labels is None:
        raise DataError(
            f"--class-weights needs labelled images and {data.source} has none: use a labelled set, a folder with "
            "one subfolder per class, or --labels-from-name gender|race|age for UTKFace-style file names."
        )
    classes = data.class_names
    unknown = [name for name in weights if name not in classes]
    if unknown:
        raise DataError(
            f"--class-weights names {', '.join(map(repr, unknown))}, not a class of {data.source}; its classes are "
            f"{', '.join(classes)}."
        )
    return per_image([weights.get(name, 1.0) for name in classes], data.labels)


def per_image(per_class: list[float], labels: torch.Tensor) -> torch.Tensor:
    """Each image's draw weight (float64) from its class's; an image without a class (label -1) weighs 1."""
    weights, labels = torch.tensor(per_class, dtype=torch.float64), labels.long()
    return torch.where(labels >= 0, weights[labels.clamp(min=0)], torch.ones((), dtype=torch.float64))


def shares(weights: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """Each class's expected share of the draws under `weights` (for the line a run prints when it starts)."""
    mass = torch.zeros(count, dtype=torch.float64).index_add_(0, labels.long().clamp(min=0), weights)
    return mass / weights.sum()
