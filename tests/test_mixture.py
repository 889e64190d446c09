"""Sampling from a mixture of G's recent snapshots: which member draws a z, that a mixture draws the modes its
members draw between them, the snapshots a run writes and keeps, and the commands that sample from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dcgan.cli import main
from dcgan.errors import CheckpointError
from dcgan.metrics.extractors import LeNet, save_extractor
from dcgan.mixture import SnapshotMixture, member_of
from dcgan.models import Generator
from dcgan.run import Run, RunFolder
from dcgan.sample import generate, latents, to_uint8
from tests.conftest import train_tiny


def test_a_z_always_goes_to_the_same_member_and_the_members_share_the_samples_evenly() -> None:
    z = latents(20_000, 100, "uniform", 0)
    which = member_of(z, 4)
    assert torch.equal(member_of(z[7_000:7_100], 4), which[7_000:7_100])  # not by position in the batch
    counts = torch.bincount(which, minlength=4)
    assert counts.min() > 4_700 and counts.max() < 5_300, counts  # 5,000 each, +-3 standard deviations
    normal = torch.bincount(member_of(latents(20_000, 100, "normal", 0), 4), minlength=4)
    assert normal.min() > 4_700 and normal.max() < 5_300, normal
    assert torch.equal(member_of(z, 1), torch.zeros(len(z), dtype=torch.long))


class _OneMode(nn.Module):
    """A stand-in generator that draws one flat image of `value` (a mode), with a generator's attributes."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))
        self.image_size, self.channels, self.nz, self.ngf, self.prior = 4, 1, 3, 1, "uniform"
        self.num_classes, self.classes, self.conditioning = 0, (), "none"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.value.expand(z.shape[0], 1, 4, 4).clone()


def test_a_mixture_draws_every_mode_its_members_draw_between_them() -> None:
    """Two snapshots that have each dropped the other's mode (a G caught mid-swing): alone, each draws one mode;
    the mixture draws both, each about as often."""
    light, dark = _OneMode(0.8), _OneMode(-0.8)
    mixture = SnapshotMixture([light, dark], [200, 100])  # type: ignore[list-item]
    z = latents(2_000, 3, "uniform", 1)
    for alone in (light, dark):
        assert len(torch.unique(generate(alone, z))) == 1  # type: ignore[arg-type]
    images = generate(mixture, z)  # type: ignore[arg-type]
    share_light = float((images[:, 0, 0, 0] > 0).double().mean())
    assert 0.45 < share_light < 0.55
    which = member_of(z, 2)
    assert torch.equal(images[which == 0], light(z[which == 0]).detach())  # each row drawn by its member, unchanged
    assert (mixture.image_size, mixture.nz, mixture.prior, mixture.steps) == (4, 3, "uniform", (200, 100))


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 steps with a snapshot every 2, three kept: snapshots at 12, 14, 16 remain; the final G is step 16."""
    return train_tiny(tmp_path_factory.mktemp("snapshots") / "run", steps=16, snapshot_every=2, snapshots=3)


def test_a_run_keeps_its_newest_snapshots_and_its_checkpoint_draws_from_them(snapshot_run: Path) -> None:
    folder = RunFolder(snapshot_run)
    assert [step for step, _ in folder.list_snapshots()] == [12, 14, 16]  # pruned to the newest 3
    run = Run.open(snapshot_run)
    mixture = run.sampler()
    # its own G and the two newest snapshots before it (the one at 16 is its own G again)
    assert isinstance(mixture, SnapshotMixture) and mixture.steps == (16, 14, 12)
    # each member is the G its snapshot holds: the rows it draws are that G's images
    z = latents(256, mixture.nz, mixture.prior, 0)
    which = member_of(z, 3)
    snapshot = Generator(16, 1, nz=8, ngf=8)
    snapshot.load_state_dict(torch.load(folder.snapshots / "step-00000014.pt", weights_only=True)["generator"])
    assert torch.equal(generate(mixture, z)[which == 1], generate(snapshot.eval(), z[which == 1]))
    assert torch.equal(generate(mixture, z)[which == 0], generate(run.generator(), z[which == 0]))
    # an older checkpoint mixes only snapshots taken before it (those from 9 to 11 were pruned)
    assert Run.open(folder.checkpoint(12)).snapshot_steps() == []
    assert not isinstance(run.sampler(snapshots=1), SnapshotMixture)
    assert not isinstance(run.sampler(ema=False), SnapshotMixture)  # raw weights: the checkpoint's G


def test_only_snapshots_from_the_last_quarter_of_the_steps_join(snapshot_run: Path, tmp_path: Path) -> None:
    """Early snapshots are worse generators, not other modes: step 16's mixture takes them from step 12 on."""
    copy = tmp_path / "run"
    shutil.copytree(snapshot_run, copy)
    for step in (2, 6, 10):  # older snapshots, as a run keeping more of them would have
        shutil.copy(copy / "snapshots" / "step-00000012.pt", copy / "snapshots" / f"step-{step:08d}.pt")
    run = Run.open(copy)
    assert [s for s, _ in run.snapshot_steps(snapshots=8)] == [14, 12]
    assert [s for s, _ in run.snapshot_steps(snapshots=2)] == [14]


def test_commands_draw_from_the_mixture_and_a_numbered_sheet_from_the_checkpoints_g(
    snapshot_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Run.open(snapshot_run)
    mixture, alone = run.sampler(), run.generator()
    z = latents(16, alone.nz, alone.prior, 0)
    assert main(["sample", str(snapshot_run), "--n", "16", "--out", str(tmp_path / "mix")]) == 0
    assert "a mixture of G's snapshots at steps 16, 14, 12" in capsys.readouterr().out
    assert torch.equal(_png(tmp_path / "mix/000005.png"), to_uint8(generate(mixture, z, plan="auto"))[5, 0])
    assert main(["sample", str(snapshot_run), "--n", "16", "--sheet", "--out", str(tmp_path / "sheet")]) == 0
    assert "mixture" not in capsys.readouterr().out
    # sheet number 5 is the image the section-6 tools draw for it
    assert torch.equal(_png(tmp_path / "sheet/000005.png"), to_uint8(generate(alone, z, plan="auto"))[5, 0])
    torch.manual_seed(0)
    features = save_extractor(LeNet(), tmp_path / "lenet-test.safetensors")  # untrained: a fixed map of the images
    out = tmp_path / "scores.json"
    argv = ["evaluate", str(snapshot_run), "--data", "mnist5k", "--features", str(features), "--metrics", "fid"]
    for snapshots, steps in ((None, [16, 14, 12]), (1, [16])):
        extra = [] if snapshots is None else ["--snapshots", str(snapshots)]
        assert main([*argv, "--n", "64", "--quiet", "--json", str(out), *extra]) == 0
        assert json.loads(out.read_text())["snapshot_steps"] == steps


def _png(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path)))


def test_a_damaged_snapshot_is_one_sentence_and_exit_2(
    snapshot_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(snapshot_run, copy)
    damaged = copy / "snapshots" / "step-00000014.pt"
    damaged.write_bytes(damaged.read_bytes()[:500])  # cut short, as by a full disk or a kill mid-copy
    with pytest.raises(CheckpointError, match=r"step-00000014\.pt is truncated or corrupt"):
        Run.open(copy).sampler()
    assert main(["sample", str(copy), "--n", "4", "--out", str(tmp_path / "s")]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert main(["sample", str(copy), "--n", "4", "--snapshots", "1", "--out", str(tmp_path / "s1")]) == 0
