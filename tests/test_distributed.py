"""torchrun / DDP on CPU (gloo): ranks end with identical weights, and the checkpoint resumes in one process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from dcgan import checkpoint as ckpt
from dcgan.train import train
from tests.conftest import shapes_data, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, out: str, sync_bn: bool) -> None:
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
         "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    )  # fmt: skip
    torch.set_num_threads(1)
    from dcgan.train import Trainer

    first_real = _record_first_real_batch()
    config = tiny_config(steps=6, sync_batchnorm=sync_bn)
    trainer = Trainer(config, out, data=shapes_data(), progress=False)
    trainer.fit()
    state = {"G": trainer.G.state_dict(), "D": trainer.D.state_dict(), "first_real_batch": first_real[0]}
    torch.save(state, Path(out) / f"rank{rank}.pt")


def _record_first_real_batch(monkeypatch: pytest.MonkeyPatch | None = None) -> list[torch.Tensor]:
    """Spy on D: the first batch it sees in a run is the first real batch; it is kept (as uint8) in the list."""
    from dcgan.models import Discriminator

    seen: list[torch.Tensor] = []
    forward = Discriminator.forward

    def spy(self: Discriminator, x: torch.Tensor) -> torch.Tensor:
        if not seen:
            seen.append(((x.detach().float() + 1) * 127.5).round().to(torch.uint8).contiguous())
        return forward(self, x)

    if monkeypatch is not None:
        monkeypatch.setattr(Discriminator, "forward", spy)
    else:  # a spawned rank, which ends with the test
        Discriminator.forward = spy  # type: ignore[method-assign]
    return seen


def _images(batch: torch.Tensor) -> list[bytes]:
    """A batch as a sorted list of its images' bytes: equal for the same images in any order."""
    return sorted(image.numpy().tobytes() for image in batch)


def test_two_ranks_hold_identical_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    mp.start_processes(_rank_main, args=(2, _free_port(), str(out), False), nprocs=2, start_method="spawn")
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    # Each rank trained on its own half of the global batch: together, the batch one process would have seen.
    single = _record_first_real_batch(monkeypatch)
    train(tiny_config(steps=1), tmp_path / "single", data=shapes_data(), progress=False)
    assert r0["first_real_batch"].shape[0] == r1["first_real_batch"].shape[0] == 16, "32 split over 2 ranks"
    same = _images(r0["first_real_batch"]) == _images(r1["first_real_batch"])
    assert not same, "the ranks saw the same images"
    together = _images(torch.cat([r0["first_real_batch"], r1["first_real_batch"]])) == _images(single[0])
    assert together, "the ranks' halves make up the batch one process trains on"
    for part in ("G", "D"):
        for key in r0[part]:
            assert torch.equal(r0[part][key], r1[part][key]), f"{part}.{key} differs between ranks"
    saved = ckpt.load(out)
    assert saved["step"] == 6
    assert all(torch.equal(saved["generator"][k], r0["G"][k]) for k in r0["G"]), "rank 0 wrote the checkpoint"


def test_sync_batchnorm_on_cpu_is_a_clear_error(tmp_path: Path) -> None:
    from dcgan.errors import ConfigError
    from dcgan.train import Trainer

    with pytest.raises(ConfigError, match="needs GPUs"):
        Trainer(tiny_config(sync_batchnorm=True), tmp_path / "run", data=shapes_data(), progress=False, device="cpu")


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_torchrun_cli_then_resume_in_one_process(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "images"
    data.mkdir()
    for i in range(64):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "run"
    common = ["--data", str(data), "--out", str(out), "--image-size", "16", "--nz", "8", "--ngf", "8", "--ndf", "8",
              "--batch-size", "16", "--precision", "fp32", "--no-progress", "--checkpoint-every", "2"]  # fmt: skip
    env = {**os.environ, "DCGAN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "dcgan", "train", *common, "--steps", "4"],
        check=True, env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    assert ckpt.load(out)["step"] == 4
    subprocess.run(
        [sys.executable, "-m", "dcgan", "train", *common, "--steps", "8", "--resume"],
        check=True, env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    assert ckpt.load(out)["step"] == 8
