"""`coverage`: each labelled group's share among the samples against its share among the training images."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from dcgan.data import load_images
from dcgan.errors import ConfigError
from dcgan.metrics import SmallCNN, evaluate_images, group_coverage, reference_features
from dcgan.metrics.evaluate import coverage_table
from dcgan.metrics.feature_extractor import FeatureExtractor
from dcgan.metrics.reference import Groups
from tests.data.faces import write_faces

GENDER = ("male", "female")


def _logits(groups: list[int], count: int = 2) -> torch.Tensor:
    """Logits whose top class is each entry of `groups`."""
    return torch.nn.functional.one_hot(torch.tensor(groups), count).float() * 5


def _reference(male: int, female: int) -> Groups:
    return Groups(GENDER, torch.tensor([0] * male + [1] * female), "the test's labels")


def test_a_generator_that_draws_one_group_gives_the_other_ratio_zero() -> None:
    result = group_coverage(_logits([1] * 200), _reference(45, 55))
    male, female = result["groups"]
    assert male == {"name": "male", "samples": 0.0, "reference": 0.45, "ratio": 0.0}
    assert female["samples"] == 1.0 and female["ratio"] == pytest.approx(1 / 0.55)
    assert (result["min"], result["min_group"]) == (0.0, "male")
    assert result["max"] == pytest.approx(1 / 0.55) and result["max_group"] == "female"
    assert result["reference_images"] == 100


def test_samples_in_the_training_shares_give_ratio_one_and_a_skew_shows_as_its_factor() -> None:
    even = group_coverage(_logits([0] * 45 + [1] * 55), _reference(45, 55))
    assert [row["ratio"] for row in even["groups"]] == pytest.approx([1.0, 1.0]) and even["min"] == pytest.approx(1)
    skewed = group_coverage(_logits([0] * 9 + [1] * 91), _reference(45, 55))  # men at a fifth of their share
    assert skewed["groups"][0]["ratio"] == pytest.approx(0.2) and skewed["min_group"] == "male"


def test_a_group_the_reference_lacks_has_no_ratio_and_unknown_images_are_not_counted() -> None:
    groups = Groups(("a", "b", "c"), torch.tensor([0, 0, 1, 1, -1, -1]), "labels")
    result = group_coverage(_logits([0, 1, 2, 2], 3), groups)
    assert [row["ratio"] for row in result["groups"]] == [0.5, 0.5, None]
    assert result["reference_images"] == 4 and (result["min"], result["max"]) == (0.5, 0.5)
    with pytest.raises(ConfigError, match=r"needs \(N, 3\) logits"):
        group_coverage(_logits([0, 1]), groups)


def test_the_table_names_each_group_with_its_shares_and_ratio() -> None:
    reference = _reference(45, 55)
    reference.predicted = torch.tensor([0] * 40 + [1] * 60)  # the classifier reads 40% of the reference as men
    lines = coverage_table("coverage200", group_coverage(_logits([0] * 8 + [1] * 192), reference))
    text = "\n".join(lines)
    assert re.search(r"male\s+4\.0%\s+45\.0%\s+0\.09x\s+40\.0%", text), text
    assert re.search(r"female\s+96\.0%\s+55\.0%\s+1\.75x\s+60\.0%", text), text
    assert "lowest 0.09x (male), highest 1.75x (female)" in text and "the test's labels" in text
    assert "held-out" not in text, "an uncalibrated classifier has no held-out ratio to show"
    calibrated = {"name": "cnn-faces-gender", "heldout_read": "[0.97, 1.02]"}
    text = "\n".join(coverage_table("coverage200", group_coverage(_logits([0] * 8 + [1] * 192), reference), calibrated))
    assert "held-out real images' ratio" in text
    assert re.search(r"male\s+4\.0%\s+45\.0%\s+0\.09x\s+40\.0%\s+0\.97x", text), text
    assert re.search(r"female\s+96\.0%\s+55\.0%\s+1\.75x\s+60\.0%\s+1\.02x", text), text


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("coverage") / "faces"
    write_faces(folder, 20, size=8, female_share=0.75)
    return folder


def _gender_cnn(labels_from_name: str | None = "gender") -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN(num_classes=2)
    model.name = "cnn-faces-gender"
    model.meta = {"classes": '["male", "female"]'}
    if labels_from_name is not None:
        model.meta["labels_from_name"] = labels_from_name
    return model.eval()


def test_reference_groups_are_the_labels_else_the_names_else_the_predictions(faces: Path) -> None:
    labelled = load_images(str(faces), image_size=8, labels_from_name="gender")
    by_labels = reference_features(_gender_cnn(), labelled, groups=True).groups
    assert by_labels is not None and by_labels.source == f"the {faces} labels"
    assert by_labels.labels.tolist().count(1) == 15 and by_labels.classes == GENDER
    unlabelled = load_images(str(faces), image_size=8)
    by_names = reference_features(_gender_cnn(), unlabelled, groups=True).groups
    assert by_names is not None and by_names.source == "the gender in the file names"
    assert sorted(by_names.labels.tolist()) == sorted(by_labels.labels.tolist())
    model = _gender_cnn(labels_from_name=None)
    predicted = reference_features(model, unlabelled, groups=True).groups
    assert predicted is not None and predicted.source == "cnn-faces-gender's predictions"
    logits = model.extract(unlabelled.images, logits=True).logits
    assert logits is not None and torch.equal(predicted.labels, logits.argmax(1))
    for groups in (by_labels, by_names, predicted):  # the classifier's reading of the reference, always there
        assert groups.predicted is not None and torch.equal(groups.predicted, logits.argmax(1))


class Embedder(FeatureExtractor):
    """Features without classes of its own, as the FID Inception's ImageNet ones are for coverage."""

    input_size, in_channels, feature_dim, num_classes = 8, 3, 4, 1008

    def __init__(self) -> None:
        super().__init__()
        self.name = "inception"
        self.net = nn.Linear(3 * 8 * 8, 4)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net(x.flatten(1))
        return f, torch.zeros(len(x), 1008)


def test_coverage_needs_a_classifier_fitted_on_groups(faces: Path) -> None:
    data = load_images(str(faces), image_size=8)
    with pytest.raises(ConfigError) as caught:
        evaluate_images(data.images, data=data, metrics="coverage", features=Embedder())
    message = str(caught.value)
    assert message.startswith("coverage needs a classifier fitted on labelled groups, and inception is not one")
    assert "dcgan extractor fit --data FOLDER --labels-from-name gender" in message and "\n" not in message


def test_evaluate_reports_coverage_with_its_table(faces: Path) -> None:
    data = load_images(str(faces), image_size=8, labels_from_name="gender")
    only_women = data.images[data.labels == 1] if data.labels is not None else data.images
    model = _gender_cnn()
    predicted = model.extract(only_women, logits=True).logits
    assert predicted is not None
    result = evaluate_images(only_women, data=data, metrics="coverage", features=model)
    share = predicted.argmax(1).bincount(minlength=2).double() / len(only_women)
    assert result.values["coverage15_min"] == pytest.approx(float(min(share[0] / 0.25, share[1] / 0.75)))
    assert result.lower_is_better == {"coverage15_min": False, "coverage15_max": True}
    detail = result.to_dict()["coverage15"]
    assert [row["name"] for row in detail["groups"]] == ["male", "female"]
    assert "coverage15: each group's share among the samples" in result.table()
