"""Calibration of a fitted classifier: after it, the classifier reads images it did not train on in their
labelled proportions, so counting its top classes (coverage, --balance-groups) does not under-count a small group;
an ensemble's members are calibrated each as well."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dcgan.metrics.extractors import Ensemble
from dcgan.metrics.feature_extractor import FeatureExtractor
from dcgan.metrics.fit import calibrate, prior_offsets


def _shares(top: torch.Tensor, count: int) -> list[float]:
    return (torch.bincount(top, minlength=count).double() / len(top)).tolist()


def test_offsets_make_a_classifier_that_under_reads_a_small_class_read_it_at_its_share() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.zeros(900, dtype=torch.long), torch.ones(60, dtype=torch.long), torch.full((40,), 2)])
    logits = torch.randn(1000, 3, generator=g) + 2.0 * torch.nn.functional.one_hot(labels, 3)
    logits[:, 0] += 2.0  # leans to the large class: the small ones are read too rarely
    before = _shares(logits.argmax(1), 3)
    assert before[1] < 0.75 * 0.06 and before[2] < 0.75 * 0.04, before
    after = _shares((logits + prior_offsets(logits, labels)).argmax(1), 3)
    assert after == pytest.approx([0.9, 0.06, 0.04], abs=0.004)


class Brightness(FeatureExtractor):
    """Reads class 1 from an image's brightness, with a classifier layer that leans to class 0."""

    input_size, in_channels, feature_dim, num_classes = 4, 1, 1, 2

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(1, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[-4.0], [4.0]]))
            self.classifier.bias.copy_(torch.tensor([1.5, -1.5]))

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = x.mean((1, 2, 3)).unsqueeze(1)
        return features, self.classifier(features)


def test_calibrate_moves_the_model_and_measures_itself_on_halves_it_did_not_fit() -> None:
    g = torch.Generator().manual_seed(0)
    labels = (torch.arange(2000) % 5 == 0).long()  # 20% of class 1, brighter but overlapping class 0
    level = 110 + 30 * labels + 25 * torch.randn(2000, generator=g)
    images = level.clamp(0, 255).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    model = Brightness().eval()
    meta = calibrate(model, images, labels, seed=0, measured_on="held-out 15%, seed 0")
    before = json.loads(meta["uncalibrated_read"])
    assert before[1] < 0.5, f"class 1 under-read before calibration: {before}"
    heldout = json.loads(meta["heldout_read"])  # offsets fitted on one half, read on the other
    assert heldout == pytest.approx([1.0, 1.0], abs=0.15), heldout
    assert meta["calibrated"] == "class offsets fitted on 2,000 images (held-out 15%, seed 0)"
    assert float(meta["test_accuracy"]) < float(meta["uncalibrated_accuracy"]), (
        "read in proportion, not more often right"
    )
    top = model.extract(images, logits=True).logits.argmax(1)  # type: ignore[union-attr]
    assert _shares(top, 2) == pytest.approx([0.8, 0.2], abs=0.01), "the saved model reads them in proportion"


def test_an_ensemble_calibrates_each_member_alone_as_well_as_their_mean() -> None:
    """Two members that lean to class 0 by different amounts: after calibration each one alone reads the images in
    their labelled proportions (what --balance-by lowest-member counts), and so does their mean."""
    g = torch.Generator().manual_seed(0)
    labels = (torch.arange(2000) % 5 == 0).long()
    level = 110 + 30 * labels + 25 * torch.randn(2000, generator=g)
    images = level.clamp(0, 255).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    lean, leaner = Brightness(), Brightness()
    with torch.no_grad():
        leaner.classifier.bias.copy_(torch.tensor([2.5, -2.5]))
    model = Ensemble([lean, leaner]).eval()
    before = [_shares(logits.argmax(1), 2) for logits in model.member_logits(images)]
    assert before[1][1] < before[0][1] < 0.15, before
    meta = calibrate(model, images, labels, seed=0, measured_on="held-out 15%, seed 0")
    assert meta["members_calibrated"] == "each member's class offsets fitted on 2,000 images (held-out 15%, seed 0)"
    for logits in model.member_logits(images):
        assert _shares(logits.argmax(1), 2) == pytest.approx([0.8, 0.2], abs=0.01)
    top = model.extract(images, logits=True).logits.argmax(1)  # type: ignore[union-attr]
    assert _shares(top, 2) == pytest.approx([0.8, 0.2], abs=0.01), "their mean is calibrated as before"
    assert not torch.equal(model.member_offsets[0], model.member_offsets[1]), "each member has its own offsets"
