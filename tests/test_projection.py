"""Projection of images into z, and the encoder that gives it a first guess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dcgan.checkpoint import load_generator
from dcgan.cli import main
from dcgan.errors import ConfigError, DataError
from dcgan.latent import load_z
from dcgan.models import Discriminator, Generator
from dcgan.projection import Encoder, fit_encoder, load_image_files, project
from dcgan.sample import generate, grid_image, latents


@pytest.fixture(scope="module")
def tiny_g() -> Generator:
    """A tiny G whose images depend clearly on z (the paper's N(0, 0.02) start gives nearly flat grey)."""
    torch.manual_seed(0)
    g = Generator(16, 1, nz=8, ngf=8)
    for m in g.modules():
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight)
    return g.eval()


def test_projection_reduces_error_against_the_starting_z(tiny_g: Generator) -> None:
    target = generate(tiny_g, latents(3, 8, "uniform", seed=11))
    result = project(tiny_g, target, steps=40, restarts=3, lr=0.05, seed=0)
    assert result.z.shape == (3, 8) and result.reconstructions.shape == target.shape
    assert (result.error < 0.1 * result.start_error).all(), (result.start_error, result.error)
    assert result.z.abs().max() <= 1  # a uniform prior's z stays in its cube
    again = generate(tiny_g, result.z)
    torch.testing.assert_close(again.sub(target).pow(2).flatten(1).mean(1), result.error, atol=1e-5, rtol=1e-4)


def test_random_starts_are_not_the_sheet_latents_of_the_same_seed(tiny_g: Generator) -> None:
    """Projecting sample i of `dcgan sample --seed S` with `--seed S` must not start at that sample's own z."""
    for seed in (0, 5):
        target = generate(tiny_g, latents(3, 8, "uniform", seed=seed))
        result = project(tiny_g, target, steps=1, restarts=1, seed=seed)
        assert (result.start_error > 1e-3).all(), (seed, result.start_error)


def test_projection_leaves_the_generator_as_it_found_it(tiny_g: Generator) -> None:
    tiny_g.train()
    tiny_g.blocks[0].requires_grad_(False)
    project(tiny_g, generate(tiny_g, latents(1, 8, "uniform", seed=0)), steps=2, restarts=1)
    assert tiny_g.training and [p.requires_grad for p in tiny_g.parameters()][:3] == [False] * 3
    assert all(p.requires_grad for p in tiny_g.blocks[1:].parameters()) and all(
        p.grad is None for p in tiny_g.parameters()
    )
    tiny_g.requires_grad_(True).eval()


def test_feature_loss_also_reduces_pixel_error(tiny_g: Generator) -> None:
    torch.manual_seed(1)
    d = Discriminator(16, 1, ndf=8).eval()
    target = generate(tiny_g, latents(2, 8, "uniform", seed=12))
    result = project(tiny_g, target, steps=40, restarts=2, discriminator=d, feature_weight=1.0, seed=0)
    assert (result.error < result.start_error).all()


def test_encoder_learns_to_invert_g(tiny_g: Generator) -> None:
    z = latents(64, 8, "uniform", seed=99)
    x = generate(tiny_g, z)
    torch.manual_seed(0)
    untrained = Encoder(16, 1, 8).eval()
    trained = fit_encoder(tiny_g, steps=40, batch_size=32, seed=0)
    with torch.no_grad():
        before, after = F.mse_loss(untrained(x), z), F.mse_loss(trained(x), z)
    assert after < 0.5 * before, (before, after)
    result = project(tiny_g, x[:2], steps=1, restarts=1, encoder=trained)
    assert result.start_error.shape == (2,)


def test_projection_refuses_mismatched_images(tiny_g: Generator) -> None:
    with pytest.raises(ConfigError, match="do not match"):
        project(tiny_g, torch.zeros(1, 3, 16, 16))
    with pytest.raises(ConfigError, match="discriminator"):
        project(tiny_g, torch.zeros(1, 1, 16, 16), feature_weight=1.0)


def test_load_image_files_resizes_and_refuses_non_images(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "red.png")
    images = load_image_files([tmp_path / "red.png"], 16, 3)
    assert images.shape == (1, 3, 16, 16)
    torch.testing.assert_close(images[0, :, 8, 8], torch.tensor([1.0, -1.0, -1.0]))
    (tmp_path / "bad.jpg").write_text("no")
    with pytest.raises(DataError, match="not an image"):
        load_image_files([tmp_path / "bad.jpg"], 16, 3)
    with pytest.raises(DataError, match="No such image"):
        load_image_files([tmp_path / "gone.png"], 16, 3)


def test_project_command_writes_z_that_reproduces_the_reconstruction(tiny_run: Path, tmp_path: Path) -> None:
    run = tiny_run
    assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / "s")]) == 0
    images = [str(tmp_path / "s" / f"00000{i}.png") for i in range(2)]
    out = tmp_path / "p"
    assert main(["project", str(run), *images, "--project-steps", "30", "--restarts", "2", "--out", str(out)]) == 0
    record = json.loads((out / "record.json").read_text())
    g = load_generator(run)
    z = load_z(out / "z.npy", g.nz)
    again = generate(g, z)
    # The figure's bottom panel is the reconstruction G(z): the z file must redraw it, to the grey level.
    grid = np.asarray(grid_image(again, nrow=2).convert("RGB"), dtype=int)
    figure = np.asarray(Image.open(out / "projection.png").convert("RGB"), dtype=int)
    assert np.abs(figure[-grid.shape[0] :, : grid.shape[1]] - grid).max() <= 1
    targets = load_image_files(images, g.image_size, g.channels)
    for row, mse in zip(record["images"], again.sub(targets).pow(2).flatten(1).mean(1).tolist()):
        assert row["mse"] == pytest.approx(mse, rel=2e-3), "the recorded error is that of the written z"
        assert row["mse"] < 0.5 * row["mse_start"], "30 steps improve on the best start"
    # the z file is an IDS item: arithmetic accepts it
    assert main(["arithmetic", str(tiny_run), "--a", str(out / "z.npy"), "--b", "1", "--c", "2", "--out", str(tmp_path / "a")]) == 0  # fmt: skip
