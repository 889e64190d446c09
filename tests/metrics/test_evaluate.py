"""`dcgan evaluate`, `dcgan nearest` and the training-loop evaluator, end to end on tiny runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from dcgan.cli import main
from dcgan.data import ImageData, load_images
from dcgan.errors import ConfigError
from dcgan.metrics import LeNet, TrainingEvaluator, evaluate, memorisation_check, reference_features, save_extractor
from dcgan.metrics import reference as reference_module
from dcgan.models import Generator
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def lenet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained, seeded) LeNet extractor saved as a file, so the tests need no fitted extractor."""
    torch.manual_seed(0)
    model = LeNet()
    model.name = "lenet-test"
    return save_extractor(model, tmp_path_factory.mktemp("extractor") / "lenet-test.safetensors")


@pytest.fixture(scope="module")
def digits16() -> ImageData:
    return load_images("mnist5k", image_size=16)


class Copier(nn.Module):
    """A generator that memorised its training set: G(z) is a training image picked by z."""

    prior = "uniform"  # like `Generator.prior`: what its z are drawn from

    def __init__(self, images: torch.Tensor, nz: int = 8) -> None:
        super().__init__()
        self.images, self.nz = images, nz
        self.image_size, self.channels = int(images.shape[-1]), int(images.shape[1])
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        index = (z[:, 0].abs() * 1e6).long() % len(self.images)
        return self.images[index].float() / 127.5 - 1


def test_evaluate_names_each_value_with_its_sample_count(lenet_file: Path, digits16: ImageData) -> None:
    g = Generator(16, 1, nz=8, ngf=8)
    result = evaluate(g, data=digits16, features=lenet_file, n=64, metrics="fid,kid,is,pr")
    assert set(result.values) == {"fid64", "kid64", "kid64_std", "is64", "is64_std", "precision64", "recall64"}
    assert result.lower_is_better["fid64"] and not result.lower_is_better["recall64"]
    assert result.reference == {"data": "mnist5k", "split": "train", "images": 5000, "image_size": 16, "channels": 1}
    record = json.loads(json.dumps(result.to_dict()))
    assert record["fid64"] == result.values["fid64"] and record["features"]["name"] == "lenet-test"
    table = result.table()
    assert "fid64" in table and "mnist5k train split, 5,000 images" in table
    again = evaluate(g, data=digits16, features=lenet_file, n=64, metrics="fid,kid,is,pr")
    assert again.values == result.values  # same seed, same latents, same subsets


def test_a_generator_that_outputs_real_images_scores_far_better(lenet_file: Path, digits16: ImageData) -> None:
    untrained = evaluate(Generator(16, 1, nz=8, ngf=8), data=digits16, features=lenet_file, n=200, metrics="fid,pr")
    real = evaluate(Copier(digits16.images), data=digits16, features=lenet_file, n=200, metrics="fid,pr")
    assert real.values["fid200"] < untrained.values["fid200"] / 10
    assert real.values["precision200"] > 0.8 > 0.2 > untrained.values["precision200"], (real.values, untrained.values)
    assert real.values["recall200"] > 0.8 > 0.2 > untrained.values["recall200"]


def test_reference_features_are_computed_once_then_read_from_the_cache(
    lenet_file: Path, digits16: ImageData, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dcgan.metrics import load_features

    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path))
    calls = []
    extract = reference_module._extract
    monkeypatch.setattr(reference_module, "_extract", lambda *a: calls.append(1) or extract(*a))
    extractor = load_features(lenet_file)
    first = reference_features(extractor, digits16)
    second = reference_features(extractor, digits16)
    assert len(calls) == 1 and torch.equal(first.features, second.features)
    assert len(list((tmp_path / "metrics").glob("mnist5k-train-16-1-lenet-test-*.npy"))) == 1
    torch.manual_seed(1)
    other = LeNet()  # other weights, other fingerprint: not served from the first one's cache
    other.fingerprint = "other"
    reference_features(other, digits16)
    assert len(calls) == 2


def test_training_evaluator_is_repeatable_and_knows_which_way_is_better(lenet_file: Path, digits16: ImageData) -> None:
    evaluator = TrainingEvaluator(digits16, image_size=16, channels=1, metric="fid", n=64, features=lenet_file)
    assert evaluator.key == "fid64" and evaluator.lower_is_better and evaluator.features["name"] == "lenet-test"
    g = Generator(16, 1, nz=8, ngf=8).train()
    first, second = evaluator(g), evaluator(g)
    assert first == second and set(first) == {"fid64"} and g.training
    copier = evaluator(Copier(digits16.images))
    assert evaluator.is_better(copier["fid64"], best=first["fid64"]) and evaluator.is_better(1.0, best=None)
    inception_score = TrainingEvaluator(digits16, image_size=16, channels=1, metric="is", n=64, features=lenet_file)
    assert inception_score.key == "is64" and not inception_score.lower_is_better
    assert inception_score.is_better(3.0, best=2.0)
    with pytest.raises(ConfigError, match="cannot pick a best checkpoint"):
        TrainingEvaluator(digits16, image_size=16, channels=1, metric="pr", n=64, features=lenet_file)


def test_cli_evaluate_prints_a_table_and_writes_one_json_object(
    tiny_run: Path, lenet_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    argv = ["evaluate", str(tiny_run), "--data", "mnist5k", "--features", str(lenet_file), "--n", "64"]
    assert main([*argv, "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())
    for key in ("fid64", "kid64", "is64", "precision64", "recall64"):
        assert key in printed and isinstance(record[key], float)
    assert record["reference"]["split"] == "train" and record["step"] == 8 and record["n"] == 64


def test_cli_evaluate_errors_are_one_sentence(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(tiny_run), "--data", "mnist5k", "--metrics", "fid,fdi"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: Unknown metric(s) fdi")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # offline and no Inception weights
    assert main(["evaluate", str(tiny_run), "--data", "mnist5k", "--features", "inception", "--n", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pt_inception-2015-12-05-6726825d.pth" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_memorised_samples_sit_on_their_training_images(lenet_file: Path, digits16: ImageData) -> None:
    result = memorisation_check(Copier(digits16.images), data=digits16, features=lenet_file, show=4, k=3, n=50)
    assert torch.equal(result.neighbours[:, 0], result.samples)  # the nearest training image is the sample itself
    assert float(result.sample_nearest.max()) < 1e-3
    fresh = memorisation_check(Generator(16, 1, nz=8, ngf=8), data=digits16, features=lenet_file, n=50)
    assert float(fresh.sample_nearest.min()) > 0.1


def test_cli_nearest_writes_the_picture_histogram_and_summary(tiny_run: Path, lenet_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "nearest"
    argv = ["nearest", str(tiny_run), "--data", "mnist5k", "--features", str(lenet_file), "--out", str(out)]
    assert main([*argv, "--show", "3", "--k", "4", "--n", "40", "--quiet"]) == 0
    picture = Image.open(out / "nearest.png")
    # 3 rows of: sample, gap, 4 neighbours (16 px + 2 px padding), enlarged 4 times to 64 px images
    assert picture.size == (4 * (2 + 6 * 18), 4 * (2 + 3 * 18))
    assert (out / "nearest_distances.png").stat().st_size > 1000
    assert json.loads((out / "nearest.json").read_text())["samples"] == 40


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="needs ../shared/data/mnist")
def test_memorisation_yardstick_flags_a_copier_and_not_a_fresh_generator(lenet_file: Path) -> None:
    root = SHARED_DATA / "mnist"
    train = load_images("mnist", root=root, image_size=16)
    copier = memorisation_check(Copier(train.images), data="mnist", root=root, features=lenet_file, n=300)
    assert copier.summary()["fraction_samples_below_test_1st_percentile"] == 1.0
    fresh = memorisation_check(Generator(16, 1, nz=8, ngf=8), data="mnist", root=root, features=lenet_file, n=300)
    assert fresh.summary()["fraction_samples_below_test_1st_percentile"] < 0.05
    assert fresh.summary()["test_images"] == 300
