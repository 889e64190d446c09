"""`--class-weights`: the named classes are drawn as often as their weights say, the draws are the same on a
resumed run, the default still shows every image once per epoch, and a bad value is one sentence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.cli import main
from dcgan.config import build_config
from dcgan.data.balance import draw_weights, parse_class_weights
from dcgan.errors import ConfigError, DataError
from dcgan.gemm_conv import use_gemm_conv
from dcgan.train import Trainer, train
from tests.conftest import checkpoint_weights, class_shapes_data, shapes_data, tiny_config


@pytest.mark.parametrize(
    ("text", "stored"),
    [("", ""), ("black=3", "black=3"), (" black = 3 , asian=1.50 ", "black=3,asian=1.5"), ("0=2,7=0.5", "0=2,7=0.5")],
)
def test_a_valid_value_is_stored_in_one_spelling(text: str, stored: str) -> None:
    assert build_config(class_weights=text).class_weights == stored


@pytest.mark.parametrize("text", ["black", "black=", "=3", "black=0", "black=-1", "black=inf", "black=x", "a=1,a=2"])
def test_a_bad_value_is_one_sentence(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--class-weights takes CLASS=WEIGHT pairs separated by commas"):
        parse_class_weights(text)


def test_each_image_weighs_what_its_class_is_given() -> None:
    data = class_shapes_data(n=8)  # light, dark, light, dark, ...
    weights = draw_weights("dark=4", data)
    assert weights is not None and weights.tolist() == [1.0, 4.0] * 4
    assert draw_weights("", data) is None


def test_a_name_that_is_not_a_class_or_unlabelled_images_are_refused() -> None:
    with pytest.raises(
        DataError, match=r"--class-weights names 'grey', not a class of .*; its classes are light, dark"
    ):
        draw_weights("grey=2", class_shapes_data(n=8))
    unlabelled = shapes_data(n=8)
    unlabelled.labels = None
    with pytest.raises(DataError, match=r"--class-weights needs labelled images"):
        draw_weights("0=2", unlabelled)


def _drawn_share(trainer: Trainer, epochs: int, label: int) -> float:
    assert trainer.data.labels is not None
    index = torch.cat([trainer._batch_index(step) for step in range(epochs * trainer.steps_per_epoch)])
    return (trainer.data.labels[index] == label).double().mean().item()


def test_a_weighted_class_is_drawn_as_often_as_its_weight_says(tmp_path: Path) -> None:
    """Two even classes, "dark" weighted 3: dark should make 3/4 of the draws (each image 3x as likely)."""
    plain = Trainer(tiny_config(), tmp_path / "plain", data=class_shapes_data(), progress=False)
    weighted = Trainer(
        tiny_config(class_weights="dark=3"), tmp_path / "weighted", data=class_shapes_data(), progress=False
    )
    try:
        assert _drawn_share(plain, 20, 1) == 0.5
        first = plain._batch_index(0).tolist()
        assert len(set(first)) == len(first), "without weights an epoch is a permutation: no image twice"
        assert _drawn_share(weighted, 20, 1) == pytest.approx(0.75, abs=0.02)  # 5,120 draws: sd 0.006
    finally:
        use_gemm_conv(weighted._gemm_before)


def test_a_weighted_run_resumes_to_the_same_weights_and_differs_from_a_plain_one(tmp_path: Path) -> None:
    weights = "dark=3"
    train(tiny_config(steps=12, class_weights=weights), tmp_path / "full", data=class_shapes_data(), progress=False)
    train(tiny_config(steps=5, checkpoint_every=5, class_weights=weights), tmp_path / "part",
          data=class_shapes_data(), progress=False)  # fmt: skip
    train(tiny_config(steps=12, class_weights=weights), tmp_path / "part", resume=True, data=class_shapes_data(),
          progress=False)  # fmt: skip
    full, part = checkpoint_weights(tmp_path / "full"), checkpoint_weights(tmp_path / "part")
    assert full.keys() == part.keys()
    for name in full:
        assert torch.equal(full[name], part[name]), name
    train(tiny_config(steps=12), tmp_path / "plain", data=class_shapes_data(), progress=False)
    plain = checkpoint_weights(tmp_path / "plain")
    assert any(not torch.equal(full[name], plain[name]) for name in full), "the weights change what is drawn"


def _utkface_folder(folder: Path, n: int = 40) -> Path:
    """UTKFace-style names (AGE_GENDER_RACE_DATE.jpg.chip.jpg), races 0-4 in turn."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        pixels = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{20 + i}_{i % 2}_{i % 5}_2017010{i % 10}.jpg.chip.jpg", "JPEG")
    return folder


TINY = ["--image-size", "16", "--nz", "8", "--ngf", "8", "--ndf", "8", "--batch-size", "16", "--precision", "fp32"]


def test_a_run_says_what_the_weights_do_to_the_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _utkface_folder(tmp_path / "faces")
    out = tmp_path / "run"
    flags = ["--labels-from-name", "race", "--class-weights", "black=4", "--steps", "2", "--no-progress"]
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, *flags]) == 0
    said = capsys.readouterr().out
    # 8 of 40 faces are black: weighted 4, they are 32 of 64 units of weight, half the draws
    assert (
        "--class-weights black=4: each class's share of the draws (of the images): white 12.5% (20.0%), black 50.0% "
        in said
    )
    assert build_config(None).class_weights == "", "no preset weighs classes"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--class-weights", "black=3"], "--class-weights needs labelled images and {data} has none"),
        (["--labels-from-name", "race", "--class-weights", "blak=3"],
         "--class-weights names 'blak', not a class of {data}; its classes are white, black, asian, indian, others."),
        (["--class-weights", "black:3"], "--class-weights takes CLASS=WEIGHT pairs separated by commas"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("dry", [True, False])
def test_class_weight_errors_are_one_sentence_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str, dry: bool
) -> None:
    data = _utkface_folder(tmp_path / "faces")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--steps", "2", "--no-progress", *TINY, *flags]
    assert main([*args, "--dry-run"] if dry else args) == 2
    err = capsys.readouterr().err
    assert message.format(data=data) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
