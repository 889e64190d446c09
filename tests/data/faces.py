"""A tiny UTKFace-style folder for the tests: faces named `AGE_GENDER_RACE_DATE.jpg.chip.jpg`, coloured by gender."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: Each gender's colour (RGB): an easy rule a classifier learns in a few steps.
GENDER_COLOUR = {0: (200, 60, 60), 1: (60, 60, 200)}


def utkface_name(age: int, gender: int, race: int, index: int) -> str:
    return f"{age}_{gender}_{race}_201701{index:011d}.jpg.chip.jpg"


def write_faces(
    folder: Path, n: int, *, size: int = 12, seed: int = 0, female_share: float = 0.5
) -> list[tuple[int, int, int]]:
    """Write n noisy images whose colour says their gender; returns each one's (age, gender, race) in name order.

    Ages cycle through 5..84, races through 0-4, and the first round(n * female_share) images are female.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    females = round(n * female_share)
    fields = []
    for i in range(n):
        age, gender, race = 5 + (7 * i) % 80, int(i < females), i % 5
        pixels = np.array(GENDER_COLOUR[gender]) + rng.normal(0, 25, (size, size, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / utkface_name(age, gender, race, i))
        fields.append((age, gender, race))
    return fields


def age_group(age: int) -> int:
    return 0 if age < 20 else 1 if age < 40 else 2 if age < 60 else 3
