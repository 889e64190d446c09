"""Sampling from a run: N separate PNGs plus a grid, the same images for the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dcgan.checkpoint import load_generator
from dcgan.cli import main
from dcgan.sample import write_samples


def test_sample_writes_n_pngs_and_a_grid(tiny_run: Path, tmp_path: Path) -> None:
    assert main(["sample", str(tiny_run), "--n", "10", "--out", str(tmp_path / "a"), "--seed", "3"]) == 0
    files = sorted((tmp_path / "a").glob("0*.png"))
    assert len(files) == 10
    assert Image.open(files[0]).size == (16, 16)
    assert (tmp_path / "a" / "grid.png").exists()
    assert np.load(tmp_path / "a" / "z.npy").shape == (10, 8)


def test_same_seed_same_images_other_seed_other_images(tiny_run: Path, tmp_path: Path) -> None:
    g = load_generator(tiny_run)
    write_samples(g, 5, tmp_path / "a", seed=1)
    write_samples(g, 8, tmp_path / "b", seed=1)  # a longer sheet starts with the same images
    write_samples(g, 5, tmp_path / "c", seed=2)
    a, b, c = (np.asarray(Image.open(tmp_path / d / "000004.png")) for d in "abc")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_load_generator_is_in_eval_mode(tiny_run: Path) -> None:
    g = load_generator(tiny_run)
    assert not g.training and g.image_size == 16 and g.nz == 8


def test_saved_generator_has_batchnorm_statistics_that_fit_its_weights(tiny_run: Path) -> None:
    """Eval-mode samples from the saved copy match what the weights draw with live batch statistics; the raw
    training copy's running averages trail the weights."""
    import torch

    from dcgan.sample import latents

    z = latents(512, 8, "uniform", seed=5)
    gaps = {}
    for ema in (True, False):
        g = load_generator(tiny_run, ema=ema)
        with torch.no_grad():
            eval_mode = g(z)
            live = g.train()(z)
        gaps[ema] = (eval_mode - live).abs().mean().item()
    assert gaps[True] < 0.5 * gaps[False], gaps


def test_write_samples_draws_z_from_the_generators_prior(tmp_path: Path) -> None:
    """A G trained on z ~ N(0, I) gets normal z by default, not the uniform cube [-1, 1]."""
    import json

    from dcgan.models import Generator

    write_samples(Generator(16, 1, 8, 8, prior="normal").eval(), 64, tmp_path / "n")
    z = np.load(tmp_path / "n" / "z.npy")
    assert np.abs(z).max() > 1 and json.loads((tmp_path / "n" / "samples.json").read_text())["prior"] == "normal"
    write_samples(Generator(16, 1, 8, 8).eval(), 64, tmp_path / "u")
    assert np.abs(np.load(tmp_path / "u" / "z.npy")).max() <= 1
