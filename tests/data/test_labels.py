"""Labels for folders of images: UTKFace-style file names (`--labels-from-name`) and one subfolder per class."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan.cli import main
from dcgan.data import load_images
from dcgan.data.labels import FIELDS, MAX_UNPARSED, parse_names
from dcgan.errors import DataError
from tests.data.faces import age_group, utkface_name, write_faces


@pytest.fixture
def faces(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, int, int]]]:
    """40 faces, 30 of them female; their (age, gender, race) by file name."""
    folder = tmp_path / "utkface"
    fields = write_faces(folder, 40, female_share=0.75)
    return folder, {utkface_name(*f, i): f for i, f in enumerate(fields)}


@pytest.mark.parametrize(("field", "index"), [("gender", 1), ("race", 2), ("age", 0)])
def test_each_field_labels_every_image_by_its_own_name(
    faces: tuple[Path, dict[str, tuple[int, int, int]]], field: str, index: int
) -> None:
    folder, truth = faces
    data = load_images(str(folder), image_size=8, labels_from_name=field, use_cache=False)
    assert data.labels is not None and data.files is not None and len(data) == 40
    assert data.classes == FIELDS[field].classes and data.num_classes == len(data.classes)
    for file, label in zip(data.files, data.labels.tolist()):
        value = truth[Path(file).name][index]
        assert label == (age_group(value) if field == "age" else value), file
    if field == "gender":
        assert data.labels.tolist().count(1) == 30 and data.classes == ("male", "female")
    else:
        assert len(set(data.labels.tolist())) == len(data.classes)  # every race and every age group occurs


def test_age_groups_and_class_names() -> None:
    names = [utkface_name(age, 0, 0, i) for i, age in enumerate([1, 19, 20, 39, 40, 59, 60, 116])]
    labels, classes = parse_names(names, "age")
    assert classes == ("0-19", "20-39", "40-59", "60+")
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert FIELDS["race"].classes == ("white", "black", "asian", "indian", "others")


def test_names_that_do_not_carry_the_field_do_not_parse() -> None:
    names = [
        "25_0_2_20170116174525125.jpg.chip.jpg",  # good
        "61_1_20170109142408075.jpg.chip.jpg",  # UTKFace's own: a field lost, so which one is unknown
        "25_2_0_20170116174525125.jpg.chip.jpg",  # gender 2
        "25_0_5_20170116174525125.jpg.chip.jpg",  # race 5
        "x_0_1_20170116174525125.jpg.chip.jpg",  # no age
        "IMG_0001.jpg",
        "25_²_0_20170116174525125.jpg",  # a digit, but not an ASCII one
    ]
    assert parse_names(names, "gender")[0].tolist() == [0, -1, -1, 0, 0, -1, -1]
    assert parse_names(names, "race")[0].tolist() == [2, -1, 0, -1, 1, -1, 0]
    assert parse_names(names, "age")[0].tolist() == [1, -1, 1, 1, -1, -1, 1]


def test_a_few_unparsable_names_are_left_out_with_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "utkface"
    write_faces(folder, 100, size=4)
    odd = "61_1_20170109142408075.jpg.chip.jpg"  # as in UTKFace itself: 1 in 101, under MAX_UNPARSED
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / odd)
    with pytest.warns(UserWarning, match=r"^Left out 1 of 101 images whose names carry no race \(e\.g\. 61_1_2017"):
        data = load_images(str(folder), image_size=4, labels_from_name="race", use_cache=False)
    assert len(data) == 100 and data.labels is not None and len(data.labels) == 100
    assert data.files is not None and len(data.files) == 100 and odd not in {Path(f).name for f in data.files}
    assert [Path(f).name for f in data.unlabelled] == [odd]
    # the labels stay with their images: each image's race is in its own name
    assert data.labels.tolist() == [int(Path(f).name.split("_")[2]) for f in data.files]


def test_more_than_a_few_unparsable_names_are_refused_in_one_sentence(
    faces: tuple[Path, dict[str, tuple[int, int, int]]],
) -> None:
    folder, _ = faces
    for i in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"IMG_{i:04d}.jpg")
    with pytest.raises(DataError) as caught:
        load_images(str(folder), image_size=8, labels_from_name="gender", use_cache=False)
    message = str(caught.value)
    assert message.startswith("--labels-from-name gender: 3 of the 43 file names in ")
    assert "e.g. 'IMG_0000.jpg'" in message and "GENDER 0 or 1" in message and f"{MAX_UNPARSED:.0%}" in message
    assert "rename those files or move them out" in message
    assert re.search(r"\. [A-Z]", message) is None and message.endswith(".") and "\n" not in message  # one sentence


def test_an_unknown_field_is_refused_before_decoding(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^--labels-from-name must be one of gender, race, age, got 'sex'\.$"):
        load_images(str(tmp_path / "not-even-there"), labels_from_name="sex")


def test_a_set_without_image_files_has_no_names_to_read(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="mnist5k is not stored as image files"):
        load_images("mnist5k", image_size=8, labels_from_name="gender", use_cache=False)


def test_one_subfolder_per_class_gives_labels_and_class_names(tmp_path: Path) -> None:
    for cls, count in (("sandal", 3), ("boot", 2), ("shirt", 4)):
        for i in range(count):
            (tmp_path / "garments" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "garments" / cls / f"{i}.png")
    data = load_images(str(tmp_path / "garments"), image_size=8, use_cache=False)
    assert data.classes == ("boot", "sandal", "shirt") and data.labels is not None and data.files is not None
    assert [data.classes[label] for label in data.labels.tolist()] == [Path(f).parent.name for f in data.files]
    assert data.labels.bincount().tolist() == [2, 3, 4]
    # Cached or not, the labels are the same.
    again = load_images(str(tmp_path / "garments"), image_size=8)
    assert load_images(str(tmp_path / "garments"), image_size=8).classes == again.classes == data.classes


def test_flat_or_mixed_folders_are_unlabelled(tmp_path: Path) -> None:
    write_faces(tmp_path / "flat", 4)
    assert load_images(str(tmp_path / "flat"), image_size=8, use_cache=False).labels is None
    write_faces(tmp_path / "mixed" / "a", 2)
    write_faces(tmp_path / "mixed", 2)  # images beside the subfolder: not one subfolder per class
    assert load_images(str(tmp_path / "mixed"), image_size=8, use_cache=False).labels is None
    write_faces(tmp_path / "one" / "only", 3)  # a single subfolder is one class: no labels
    assert load_images(str(tmp_path / "one"), image_size=8, use_cache=False).labels is None


def test_cli_unknown_field_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_faces(tmp_path / "faces", 4)
    argv = ["extractor", "fit", "--data", str(tmp_path / "faces"), "--labels-from-name", "sex", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "error: --labels-from-name must be one of gender, race, age, got 'sex'.\n"
