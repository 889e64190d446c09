"""Class labels for a folder of images: one subfolder per class, or a field of each file's name.

- **Subfolders**: a folder whose images all sit one level down, in two or more subfolders, is labelled by them
  (torchvision's `ImageFolder` convention; ImageNet's `train/<wnid>/`): the classes are the subfolder names,
  sorted.
- **Names** (`--labels-from-name FIELD`): UTKFace names its files `AGE_GENDER_RACE_DATE.jpg.chip.jpg`; the
  fields below read one part of such a name into a class. A few files whose names do not parse (UTKFace itself
  has three without a race) are left out with a warning; more than `MAX_UNPARSED` of them is an error, since
  then the names are probably in another form.

`load_images(..., labels_from_name="gender")` applies these, so training, the extractor fit and the metrics all
get the same `ImageData.labels` and `ImageData.classes`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcgan.errors import DataError

#: The largest share of files whose names may fail to parse before `--labels-from-name` refuses the folder.
MAX_UNPARSED = 0.01
#: UTKFace's name pattern, for messages.
UTKFACE_PATTERN = "AGE_GENDER_RACE_DATE.jpg.chip.jpg"


@dataclass(frozen=True)
class NameField:
    """One field of an image's file name read as a class.

    Attributes:
        name: what `--labels-from-name` calls it.
        classes: the class names, label i being classes[i].
        parse: the file's name (no folders) -> its label, or None when the name does not carry one.
        describe: what a parsable name looks like, for the error message.
    """

    name: str
    classes: tuple[str, ...]
    parse: Callable[[str], int | None]
    describe: str


def _utkface_part(name: str, index: int) -> int | None:
    """The index-th underscore-separated part of a UTKFace name as an integer, or None."""
    parts = name.split("_")
    if len(parts) < 4:  # AGE_GENDER_RACE_DATE...: a name with fewer parts has lost a field
        return None
    part = parts[index]
    return int(part) if part.isascii() and part.isdigit() else None


def _category(index: int, count: int) -> Callable[[str], int | None]:
    def parse(name: str) -> int | None:
        value = _utkface_part(name, index)
        return value if value is not None and value < count else None

    return parse


#: Age groups (years) as (first, last) ages; the last group is open-ended.
AGE_GROUPS = ((0, 19), (20, 39), (40, 59), (60, 200))


def _age(name: str) -> int | None:
    age = _utkface_part(name, 0)
    if age is None:
        return None
    return next((i for i, (low, high) in enumerate(AGE_GROUPS) if low <= age <= high), None)


_RACES = ("white", "black", "asian", "indian", "others")
FIELDS: dict[str, NameField] = {
    "gender": NameField("gender", ("male", "female"), _category(1, 2), f"{UTKFACE_PATTERN} with GENDER 0 or 1"),
    "race": NameField("race", _RACES, _category(2, 5), f"{UTKFACE_PATTERN} with RACE 0-4"),
    "age": NameField("age", ("0-19", "20-39", "40-59", "60+"), _age, f"{UTKFACE_PATTERN} with AGE 0-200"),
}


def name_field(field: str) -> NameField:
    """The field `--labels-from-name` names; an unknown one is a `DataError` listing the others."""
    if field not in FIELDS:
        raise DataError(f"--labels-from-name must be one of {', '.join(FIELDS)}, got {field!r}.")
    return FIELDS[field]


def parse_names(files: Sequence[str], field: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each file's label from its name, -1 where the name does not parse, and the field's class names.

    Lenient: the metrics use it to label a reference folder, where a name that does not parse only leaves
    that image out of the group shares.
    """
    spec = name_field(field)
    labels = [spec.parse(Path(f).name) for f in files]
    return np.array([-1 if x is None else x for x in labels], dtype=np.int64), spec.classes


def labels_from_names(files: Sequence[str], field: str, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Like `parse_names`, but strict: more than `MAX_UNPARSED` of names that do not parse is a `DataError`.

    Args:
        files: the images' files, in order.
        field: `gender`, `race` or `age` (see `FIELDS`).
        where: the folder, for the message.

    Returns:
        (labels, -1 for the few names that do not parse; the class names).
    """
    labels, classes = parse_names(files, field)
    bad = [f for f, label in zip(files, labels) if label < 0]
    if len(bad) > MAX_UNPARSED * len(files):
        raise DataError(
            f"--labels-from-name {field}: {len(bad):,} of the {len(files):,} file names in {where} do not have "
            f"the form {name_field(field).describe} (e.g. {Path(bad[0]).name!r}), more than the "
            f"{MAX_UNPARSED:.0%} that would be left out with a warning; rename those files or move them out."
        )
    return labels, classes


def labels_from_subfolders(files: Sequence[str], root: str | Path) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """Labels from one subfolder per class: each file's first folder below `root`, classes sorted by name.

    None unless every file sits exactly one level down and there are at least two subfolders.
    """
    parents = []
    for f in files:
        try:
            parts = Path(f).relative_to(root).parts
        except ValueError:
            return None
        if len(parts) != 2:
            return None
        parents.append(parts[0])
    classes = tuple(sorted(set(parents)))
    if len(classes) < 2:
        return None
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[p] for p in parents], dtype=np.int64), classes
