"""`--augment` (DiffAugment): each transformation does what it says to every image, lets G's gradient through,
draws the same for the same seed and step, and a run with it resumes exactly and steps the same in one pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcgan.config import build_config
from dcgan.errors import ConfigError
from dcgan.gemm_conv import use_gemm_conv
from dcgan.train import Trainer, train
from dcgan.training.augment import augment, parse_policy, step_generator
from tests.conftest import checkpoint_weights, shapes_data, tiny_config, train_tiny


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("", ()),
        ("none", ()),
        ("cutout,translation", ("translation", "cutout")),  # applied in one fixed order whatever the spelling
        (" color , cutout ", ("color", "cutout")),
    ],
)
def test_a_policy_is_read_in_one_order(text: str, policy: tuple[str, ...]) -> None:
    assert parse_policy(text) == policy


@pytest.mark.parametrize("text", ["rotate", "translation,translation", "translation;cutout"])
def test_an_unknown_policy_is_one_sentence(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--augment takes a comma-separated choice of color, translation, cutout"):
        build_config(augment=text)


def _images(n: int = 32, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8  # no exact zeros


def test_translation_shifts_each_image_by_at_most_an_eighth_filling_with_zero() -> None:
    x = _images()
    y = augment(x, ("translation",), step_generator(0, 3))
    shifts = set()
    for a, b in zip(x, y, strict=True):
        # which shift (dy, dx) of the zero-padded image gives b: exactly one
        padded = F.pad(a, (2, 2, 2, 2))
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(padded[:, 2 + dy : 18 + dy, 2 + dx : 18 + dx], b)
        ]
        assert len(found) == 1, "each image is its own shift by up to 2 of 16 pixels, uncovered pixels 0"
        shifts.add(found[0])
    assert len(shifts) > 8, "the shift is drawn per image"


def test_cutout_zeroes_one_square_of_half_the_side_and_keeps_the_rest() -> None:
    x = _images()
    y = augment(x, ("cutout",), step_generator(0, 3))
    for a, b in zip(x, y, strict=True):
        zero = (b == 0).all(0)
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 0 < len(rows) <= 8 and 0 < len(cols) <= 8
        box = zero[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert bool(box.all()) and int(zero.sum()) == box.numel(), "the cut is one rectangle"
        assert torch.equal(b[:, ~zero], a[:, ~zero]), "outside it every pixel is kept"


def test_color_changes_brightness_saturation_and_contrast_per_image() -> None:
    x = _images()
    y = augment(x, ("color",), step_generator(0, 3))
    assert y.shape == x.shape and not torch.allclose(y, x)
    change = (y - x).mean(dim=(1, 2, 3))
    assert change.std() > 0.1, "the brightness shift is drawn per image"


@pytest.mark.parametrize("policy", [("color",), ("translation",), ("cutout",), ("color", "translation", "cutout")])
def test_g_gradient_flows_through_the_augmentation(policy: tuple[str, ...]) -> None:
    x = _images().requires_grad_(True)
    augment(x, policy, step_generator(0, 0)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_the_draws_are_fixed_by_seed_step_and_rank() -> None:
    x, policy = _images(), ("color", "translation", "cutout")
    same = augment(x, policy, step_generator(0, 5))
    assert torch.equal(same, augment(x, policy, step_generator(0, 5)))
    for other in (step_generator(1, 5), step_generator(0, 6), step_generator(0, 5, rank=1)):
        assert not torch.equal(same, augment(x, policy, other))
    assert augment(x, (), step_generator(0, 5)) is x


def test_an_augmented_run_resumes_to_the_same_weights_and_differs_from_a_plain_one(tmp_path: Path) -> None:
    policy = "color,translation,cutout"
    train_tiny(tmp_path / "full", steps=12, augment=policy)
    train_tiny(tmp_path / "part", steps=5, checkpoint_every=5, augment=policy)
    train(tiny_config(steps=12, augment=policy), tmp_path / "part", resume=True, data=shapes_data(), progress=False)
    full, part = checkpoint_weights(tmp_path / "full"), checkpoint_weights(tmp_path / "part")
    assert full.keys() == part.keys()
    for name in full:
        assert torch.equal(full[name], part[name]), name
    train_tiny(tmp_path / "plain", steps=12)
    plain = checkpoint_weights(tmp_path / "plain")
    assert any(not torch.equal(full[name], plain[name]) for name in full), "--augment changes what D learns"


def test_an_augmented_step_in_one_pass_is_the_two_pass_step(tmp_path: Path) -> None:
    trainers = []
    for one_pass in (True, False):
        config = tiny_config(augment="translation,cutout")
        trainer = Trainer(config, tmp_path / str(one_pass), data=shapes_data(), progress=False)
        trainer.one_pass_d = one_pass
        trainers.append(trainer)
    one, two = trainers
    real, z = one.real_batch(0), one.latent_batch()
    try:
        torch.testing.assert_close(one.train_step(real, z), two.train_step(real, z), rtol=1e-5, atol=1e-5)
    finally:
        use_gemm_conv(one._gemm_before)
    for (name, a), b in zip(two.D.named_parameters(), one.D.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-5, msg=lambda m, k=name: f"{k}.grad: {m}")
