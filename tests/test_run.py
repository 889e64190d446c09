"""A trained run, opened once: the folder layout, the checkpoint schema (this release's and the first's), the
prior G was trained with, and the config a resumed run continues with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan import checkpoint as ckpt
from dcgan.cli import main
from dcgan.errors import CheckpointError, ConfigError
from dcgan.models import Discriminator, Generator
from dcgan.run import Run, RunFolder, resume_config
from dcgan.sample import generate, latents
from tests.conftest import tiny_config, train_tiny


@pytest.fixture(scope="module")
def normal_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step run trained with z ~ N(0, I) and an EMA copy of G."""
    return train_tiny(tmp_path_factory.mktemp("normal-run") / "run", prior="normal", ema=0.9, steps=4)


# ----------------------------------------------------------------------------------------------- opening once
COMMANDS = {
    "sample": "sample {run} --n 4 --out {out}",
    "info": "info {run}",
    "export": "export {run} --format safetensors --out {out}/g.safetensors",
    "interpolate": "interpolate {run} --rows 2 --steps 3 --out {out}",
    "interpolate-to-an-image": "interpolate {run} --points 0,{image} --steps 3 --project-steps 2 --restarts 1 "
    "--feature-weight 0.5 --out {out}",
    "ablate": "ablate {run} --filters 0,1 --n 4 --out {out}",
    "guided-backprop": "guided-backprop {run} --features 0,1 --top 2 --candidates 16 --out {out}",
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_reads_and_verifies_the_checkpoint_once(
    command: str, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reads: list[Path] = []
    loads: list[Any] = []
    read_verified, torch_load = ckpt.read_verified, torch.load

    def counted_read(path: Path) -> dict[str, Any]:
        reads.append(path)
        return read_verified(path)

    def counted_load(*args: Any, **kwargs: Any) -> Any:
        loads.append(args[0])
        return torch_load(*args, **kwargs)

    monkeypatch.setattr(ckpt, "read_verified", counted_read)
    monkeypatch.setattr(torch, "load", counted_load)
    image = tmp_path / "image.png"
    Image.new("L", (16, 16), 200).save(image)
    argv = [part.format(run=tiny_run, out=tmp_path / "out", image=image) for part in COMMANDS[command].split()]
    assert main(argv) == 0, capsys.readouterr().err
    assert reads == [tiny_run / "checkpoints" / "step-00000008.pt"]
    assert len(loads) == 1


def test_open_on_a_folder_picks_the_newest_checkpoint(tiny_run: Path) -> None:
    run = Run.open(tiny_run)
    assert run.path == tiny_run / "checkpoints" / "step-00000008.pt"
    assert (run.step, run.channels, run.config.image_size) == (8, 1, 16)
    assert run.folder == RunFolder(tiny_run) and run.name == "run/step-00000008.pt"
    older = Run.open(tiny_run / "checkpoints" / "step-00000004.pt")
    assert older.step == 4 and older.path.name == "step-00000004.pt"


def test_generator_ema_gives_the_saved_evaluation_copy_and_no_ema_the_training_weights(normal_run: Path) -> None:
    run = Run.open(normal_run)
    assert run.has_ema and run.resumable
    saved, raw = run.generator(ema=True).state_dict(), run.generator(ema=False).state_dict()
    for key, value in run.state["generator_eval"].items():
        assert torch.equal(saved[key], value)
    for key, value in run.state["generator"].items():
        assert torch.equal(raw[key], value)
    assert any(not torch.equal(saved[k], raw[k]) for k in raw), "the EMA copy differs from the training weights"
    for g in (run.generator(ema=True), run.generator(ema=False), run.discriminator()):
        assert not g.training


# ----------------------------------------------------------------------------------------------- the prior
def test_the_prior_is_saved_with_the_run_and_carried_by_its_generator(normal_run: Path, tmp_path: Path) -> None:
    run = Run.open(normal_run)
    assert run.prior == "normal" and run.generator().prior == "normal" and run.generator(ema=False).prior == "normal"
    assert main(["sample", str(normal_run), "--n", "64", "--out", str(tmp_path / "s")]) == 0
    z = np.load(tmp_path / "s" / "z.npy")
    assert np.abs(z).max() > 1, "z is drawn from N(0, I), not the uniform cube"
    assert np.array_equal(z, latents(64, run.config.nz, "normal", 0).numpy())


def test_an_exported_generator_keeps_its_prior(normal_run: Path, tmp_path: Path) -> None:
    from dcgan.export import load_safetensors_generator

    out = tmp_path / "g.safetensors"
    assert main(["export", str(normal_run), "--format", "safetensors", "--out", str(out)]) == 0
    generator, prior = load_safetensors_generator(out)
    assert prior == "normal" and generator.prior == "normal"


def test_a_uniform_run_opens_with_the_uniform_prior(tiny_run: Path) -> None:
    assert Run.open(tiny_run).prior == "uniform" and Run.open(tiny_run).generator().prior == "uniform"


# ----------------------------------------------------------------------------------------------- the layout
def test_run_folder_paths(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "r")
    assert folder.config == tmp_path / "r" / "config.json"
    assert folder.metrics == tmp_path / "r" / "metrics.jsonl"
    assert folder.checkpoints == tmp_path / "r" / "checkpoints"
    assert folder.best == tmp_path / "r" / "checkpoints" / "best.pt"
    assert folder.checkpoint(1200) == tmp_path / "r" / "checkpoints" / "step-00001200.pt"
    assert folder.sample_grid(1200) == tmp_path / "r" / "samples" / "step-00001200.png"
    assert (folder.progress_gif.name, folder.losses.name) == ("progress.gif", "losses.png")
    assert not (tmp_path / "r").exists(), "nothing is created until create()"
    folder.create()
    for name in ("step-00000010.pt", "step-00000009.pt", "step-100000000.pt", "best.pt", ".step-00000011.pt.x.tmp"):
        (folder.checkpoints / name).touch()
    assert [p.name for p in folder.list_checkpoints()] == ["step-00000009.pt", "step-00000010.pt", "step-100000000.pt"]
    folder.prune(keep=2)
    assert [p.name for p in folder.list_checkpoints()] == ["step-00000010.pt", "step-100000000.pt"]
    assert folder.best.exists(), "pruning keeps best.pt"


def test_a_trained_run_has_the_layout_run_folder_names(tiny_run: Path) -> None:
    folder = RunFolder(tiny_run)
    assert folder.config.exists() and folder.metrics.exists()
    assert [p.name for p in folder.sample_grids()] == ["step-00000004.png", "step-00000008.png"]
    assert [p.name for p in folder.list_checkpoints()][-2:] == ["step-00000004.pt", "step-00000008.pt"]


# ----------------------------------------------------------------------------------------------- resuming
def test_resume_config_merges_the_saved_config_with_the_flags_given(tiny_run: Path) -> None:
    saved = Run.open(tiny_run).config
    config = resume_config(tiny_run, steps=20, lr=None)
    assert (config.steps, config.epochs, config.lr, config.nz) == (20, None, saved.lr, saved.nz)
    config = resume_config(tiny_run, epochs=3)
    assert (config.steps, config.epochs) == (None, 3)
    with pytest.raises(ConfigError, match="--preset cannot change"):
        resume_config(tiny_run, preset="digits32")
    with pytest.raises(ConfigError, match="no run to resume"):
        resume_config(tiny_run.parent / "missing")


# ----------------------------------------------------------------------------------------------- old checkpoints
def first_release_checkpoint(path: Path, *, version: int = 1, older: bool = False) -> Path:
    """A checkpoint as the first release's `Trainer._snapshot` wrote it (`older`: before it saved the evaluation
    copy of G and the channel count), written with its digest as `atomic_save` did."""
    config = tiny_config()
    torch.manual_seed(0)
    g, d = Generator(16, 1, config.nz, config.ngf), Discriminator(16, 1, config.ndf)
    opt_g = torch.optim.Adam(g.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    state: dict[str, Any] = {
        "format": "dcgan-checkpoint",
        "version": version,
        "config": config.to_dict(),
        "channels": 1,
        "generator": g.state_dict(),
        "generator_ema": None,
        "generator_eval": g.state_dict(),
        "discriminator": d.state_dict(),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        "step": 6,
        "epoch": 0,
        "batch_in_epoch": 6,
        "noise_rng": torch.Generator().manual_seed(2).get_state(),
        "rng": ckpt.rng_state(),
        "nan_retries": 0,
        "best_value": None,
    }
    if older:
        del state["generator_eval"], state["channels"]
    state["digest"] = ckpt.digest(state)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("older", [False, True], ids=["first-release", "without-generator_eval-and-channels"])
def test_a_first_release_checkpoint_still_opens_and_draws(older: bool, tmp_path: Path) -> None:
    run = Run.open(first_release_checkpoint(tmp_path / "old.pt", older=older))
    assert (run.step, run.channels, run.prior, run.resumable, run.has_ema) == (6, 1, "uniform", True, False)
    for ema in (True, False):
        images = generate(run.generator(ema=ema), latents(4, run.config.nz, run.prior, 0))
        assert images.shape == (4, 1, 16, 16) and torch.isfinite(images).all() and images.abs().max() <= 1
    assert run.describe()["step"] == 6 and run.discriminator().ndf == run.config.ndf


def test_a_checkpoint_from_a_newer_dcgan_is_refused_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = first_release_checkpoint(tmp_path / "new.pt", version=2)
    with pytest.raises(CheckpointError, match="written by a newer dcgan"):
        Run.open(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "newer dcgan" in err and "Traceback" not in err
