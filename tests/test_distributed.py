"""torchrun / DDP on CPU (gloo): ranks end with identical weights, two nodes end as one process would, a killed
worker's group restarts and resumes bit for bit, a stalled rank is timed out, SIGTERM saves and says how to resume,
a full disk on rank 0 stops every rank with one sentence."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from dcgan import checkpoint as ckpt
from dcgan.cli import main
from dcgan.distributed import teardown
from dcgan.run import RunFolder
from dcgan.train import train
from tests.conftest import class_shapes_data, shapes_data, tiny_config


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
    config = tiny_config(steps=6, sync_batchnorm=sync_bn, snapshot_every=2)  # G's snapshots at 2, 4 and 6
    trainer = Trainer(config, out, data=shapes_data(), progress=False)
    trainer.fit()
    state = {"G": trainer.G.state_dict(), "D": trainer.D.state_dict(), "first_real_batch": first_real[0]}
    torch.save(state, Path(out) / f"rank{rank}.pt")
    teardown(trainer.dist, finished=True)  # as `train()` does: without the barrier, gloo can abort at exit


def _rank_with_own_data(rank: int, world: int, port: int, out: str) -> None:
    """A rank whose data differs from rank 0's when it is rank 1 (another node's other files)."""
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
         "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    )  # fmt: skip
    from dcgan.errors import DataError
    from dcgan.train import Trainer

    data = shapes_data()
    if rank == 1:
        data.images[5] = 255 - data.images[5]  # one image of 256 changed
    try:
        Trainer(tiny_config(steps=2), out, data=data, progress=False)
    except DataError as exc:
        (Path(out).parent / f"error{rank}.txt").write_text(str(exc))


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


def test_ranks_that_decoded_different_data_stop_with_one_sentence(tmp_path: Path) -> None:
    """One image of 256 differs on rank 1: both ranks stop before training, with the same sentence, and no run
    folder is written."""
    out = tmp_path / "run"
    mp.start_processes(_rank_with_own_data, args=(2, _free_port(), str(out)), nprocs=2, start_method="spawn")
    errors = [(tmp_path / f"error{rank}.txt").read_text() for rank in (0, 1)]
    assert errors[0] == errors[1]
    assert errors[0].startswith("The processes decoded different data (rank 0: 256, rank 1: 256 images; 1 of 2")
    assert "the same files in the same state on every node" in errors[0]
    assert not out.exists()


def test_data_fingerprint_tells_apart_order_labels_and_pixels() -> None:
    from dcgan.distributed import data_fingerprint

    data = shapes_data(n=16)
    data.labels = torch.arange(16) % 3
    base = data_fingerprint(data.images, data.labels)
    assert torch.equal(base, data_fingerprint(data.images.clone(), data.labels.clone()))
    swapped = data.images[[1, 0, *range(2, 16)]]
    changed = data.images.clone()
    changed[3, 0, 0, 0] ^= 1
    moved = data.images.clone()  # two pixels of one image swapped: the same pixel sum
    moved[2, 0, 0, 0], moved[2, 0, 5, 5] = data.images[2, 0, 5, 5], data.images[2, 0, 0, 0]
    assert moved[2, 0, 0, 0] != moved[2, 0, 5, 5]
    for images, labels in ((swapped, data.labels), (changed, data.labels), (moved, data.labels),
                           (data.images, data.labels.flip(0)),
                           (data.images[:15], data.labels[:15]), (data.images, None)):  # fmt: skip
        assert not torch.equal(base, data_fingerprint(images, labels))


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
    assert [step for step, _ in RunFolder(out).list_snapshots()] == [2, 4, 6], "rank 0 wrote G's snapshots"


def _conditional_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
         "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    )  # fmt: skip
    torch.set_num_threads(1)
    from dcgan.models import Discriminator
    from dcgan.train import Trainer

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    forward = Discriminator.forward

    def spy(self: Discriminator, x: torch.Tensor, labels: torch.Tensor, parts: int = 1) -> torch.Tensor:
        if not seen:
            seen.append((x.detach().clone(), labels.clone()))
        return forward(self, x, labels, parts)

    Discriminator.forward = spy  # type: ignore[method-assign]
    config = tiny_config(steps=2, conditional=True, conditioning="cbn")  # per-class batchnorm: the state DDP must sync
    trainer = Trainer(config, out, data=class_shapes_data(), progress=False)
    trainer.fit()
    x, labels = seen[0]
    torch.save({"G": trainer.G.state_dict(), "x": x, "labels": labels}, Path(out) / f"rank{rank}.pt")
    teardown(trainer.dist, finished=True)


def test_conditional_ranks_get_their_images_labels_and_end_identical(tmp_path: Path) -> None:
    """Under DDP each rank's share of the batch comes with its own images' labels, and the ranks' class-conditional
    G (its per-class batchnorm included) ends the same on both."""
    out = tmp_path / "run"
    mp.start_processes(_conditional_rank, args=(2, _free_port(), str(out)), nprocs=2, start_method="spawn")
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for r in ranks:
        assert r["labels"].shape == (16,)
        assert torch.equal((r["x"].flatten(1).mean(1) > 0).long(), r["labels"]), "each image with its own label"
    assert not torch.equal(ranks[0]["x"], ranks[1]["x"]), "each rank has its own share"
    assert any("embed" in key for key in ranks[0]["G"]), "a cbn G holds per-class batchnorm embeddings"
    for key in ranks[0]["G"]:
        assert torch.equal(ranks[0]["G"][key], ranks[1]["G"][key]), f"G.{key} differs between ranks"
    assert ckpt.load(out)["classes"] == ["light", "dark"]


def _sync_bn_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.set_num_threads(1)
    from dcgan import distributed

    distributed.setup(torch.device("cpu"))
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    upstream = torch.randn_like(x, generator=torch.Generator().manual_seed(1))
    norm = distributed.sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)), torch.device("cpu")).double()
    with torch.no_grad():
        norm[0].weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(2))
    share = x[rank::world].clone().requires_grad_(True)
    y = norm(share)
    (y * upstream[rank::world]).sum().backward()
    saved = {"y": y.detach(), "grad": share.grad, "weight_grad": norm[0].weight.grad, "state": norm.state_dict()}
    torch.save(saved, Path(out) / f"rank{rank}.pt")
    distributed.teardown(distributed.Dist(rank, world), finished=True)


def test_sync_batchnorm_runs_on_cpu_as_one_batchnorm_over_the_global_batch(tmp_path: Path) -> None:
    """--sync-batchnorm under gloo: each rank's output, input gradient and running statistics are those of one
    batchnorm over all ranks' images; the weight gradients add up (DDP's all-reduce) to the full batch's."""
    mp.start_processes(_sync_bn_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    upstream = torch.randn_like(x, generator=torch.Generator().manual_seed(1))
    norm = torch.nn.BatchNorm2d(3).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(2))
    whole = x.clone().requires_grad_(True)
    y = norm(whole)
    (y * upstream).sum().backward()
    assert whole.grad is not None and norm.weight.grad is not None
    for r, got in enumerate(ranks):
        torch.testing.assert_close(got["y"], y.detach()[r::2])
        torch.testing.assert_close(got["grad"], whole.grad[r::2])
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(got["state"][f"0.{key}"], norm.state_dict()[key])
    torch.testing.assert_close(ranks[0]["weight_grad"] + ranks[1]["weight_grad"], norm.weight.grad)


TORCHRUN = Path(sys.executable).parent / "torchrun"
needs_torchrun = pytest.mark.skipif(not TORCHRUN.exists(), reason="no torchrun beside this Python")
#: torchrun on this machine, 2 processes; --max-restarts lets a killed worker's group start again.
STANDALONE = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2"]


def _image_folder(path: Path, n: int = 64) -> Path:
    rng = np.random.default_rng(0)
    path.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path / f"{i}.png")
    return path


def _train_flags(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    """`dcgan train`'s arguments for a tiny run; the plan is pinned so that every run takes the same steps."""
    return [
        "train", "--data", str(data), "--out", str(out), "--image-size", "16", "--nz", "8", "--ngf", "8",
        "--ndf", "8", "--batch-size", "16", "--steps", str(steps), "--precision", "fp32", "--no-gemm-conv",
        "--no-channels-last", "--checkpoint-every", "2", "--log-every", "1", "--sample-every", "1000",
        "--no-progress", *extra,
    ]  # fmt: skip


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "DCGAN_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


def _weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """G's and D's tensors and both optimisers' moments, by name."""
    out = {f"G.{k}": v for k, v in state["generator"].items()}
    out.update({f"D.{k}": v for k, v in state["discriminator"].items()})
    for name in ("opt_g", "opt_d"):
        for pid, s in state.get(name, {"state": {}})["state"].items():
            out.update({f"{name}.{pid}.{k}": v for k, v in s.items()})
    return out


@needs_torchrun
def test_torchrun_cli_then_resume_in_one_process(tmp_path: Path) -> None:
    data = _image_folder(tmp_path / "images")
    out = tmp_path / "run"
    env = _env(tmp_path / "cache")
    ran = subprocess.run(
        [*STANDALONE, "-m", "dcgan", *_train_flags(data, out, 4)], env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, f"torchrun exited {ran.returncode}:\n{ran.stderr[-4000:]}"  # what failed, if it does
    assert ckpt.load(out)["step"] == 4
    ran = subprocess.run(
        [sys.executable, "-m", "dcgan", *_train_flags(data, out, 8, "--resume")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, f"dcgan exited {ran.returncode}:\n{ran.stderr[-4000:]}"
    assert ckpt.load(out)["step"] == 8


#: `dcgan train`, and each rank's final G and D kept in $DCGAN_TEST_WEIGHTS/rank<N>.pt for the test to compare.
_KEEP_WEIGHTS = """
import os, sys, torch
from dcgan.cli import main
from dcgan.train import Trainer
fit = Trainer.fit
def fit_and_keep(self, *args, **kwargs):
    result = fit(self, *args, **kwargs)
    kept = {"generator": self.G.state_dict(), "discriminator": self.D.state_dict()}
    torch.save(kept, os.path.join(os.environ["DCGAN_TEST_WEIGHTS"], f"rank{self.dist.rank}.pt"))
    return result
Trainer.fit = fit_and_keep
sys.exit(main(sys.argv[1:]))
"""


@needs_torchrun
def test_two_nodes_under_torchrun_end_as_one_process_would(tmp_path: Path) -> None:
    """Two torchrun launchers on loopback, each a node with its own working folder (its own disk): both ranks end
    with the same weights, those of one process trained on the same global batch to float tolerance (with
    --sync-batchnorm; each rank's sums run in another order), and only rank 0's node has a run folder."""
    data = _image_folder(tmp_path / "images")  # the data is shared, like a network file system
    script, weights = tmp_path / "keep_weights.py", tmp_path / "weights"
    script.write_text(_KEEP_WEIGHTS)
    weights.mkdir()
    port = _free_port()
    nodes = {}
    for name in ("node-a", "node-b"):
        (tmp_path / name).mkdir()
        launcher = [str(TORCHRUN), "--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d",
                    "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes"]  # fmt: skip
        nodes[name] = subprocess.Popen(
            [*launcher, str(script), *_train_flags(data, Path("run"), 4, "--sync-batchnorm")],
            cwd=tmp_path / name, env={**_env(tmp_path / name / "cache"), "DCGAN_TEST_WEIGHTS": str(weights)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    for name, node in nodes.items():
        _, err = node.communicate(timeout=1200)
        assert node.returncode == 0, f"{name}: {err.decode()[-3000:]}"
    written = [name for name in nodes if (tmp_path / name / "run").exists()]
    assert len(written) == 1, "one node, rank 0's, has the run folder"
    (other,) = set(nodes) - set(written)
    assert [p.name for p in (tmp_path / other).iterdir()] == ["cache"], "rank 1 wrote nothing but its data cache"
    run = tmp_path / written[0] / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss_d" in r] == [1, 2, 3, 4], "each step logged once"

    ranks = [_weights(torch.load(weights / f"rank{r}.pt", weights_only=True)) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0]), "the two nodes hold the same weights"
    assert all(torch.equal(v, _weights(ckpt.load(run))[k]) for k, v in ranks[0].items()), "the checkpoint's"
    single = tmp_path / "single"
    cmd = [sys.executable, "-m", "dcgan", *_train_flags(data, single, 4)]
    subprocess.run(cmd, check=True, env=_env(tmp_path / "cache"), capture_output=True)
    alone = _weights(ckpt.load(single))
    # An Adam step moves a weight by up to lr = 2e-4; the runs differ by float rounding, far less than that.
    for key, value in ranks[0].items():
        torch.testing.assert_close(value, alone[key], rtol=0, atol=2e-6, msg=lambda m, k=key: f"{k}: {m}")


def _workers(launcher: int) -> list[int]:
    """The pids of the `dcgan` processes torchrun `launcher` started."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == launcher and b"dcgan" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _newest_step(out: Path) -> int:
    found = ckpt.list_checkpoints(out)
    return int(found[-1].name[5:13]) if found else -1


def _logged_step(out: Path) -> int:
    """The newest step rank 0 has logged (a line being written is not counted)."""
    steps = [0]
    for line in (out / "metrics.jsonl").read_text().splitlines():
        with contextlib.suppress(ValueError):
            steps.append(int(json.loads(line).get("step", 0)))
    return max(steps)


def _wait_for_step(out: Path, proc: subprocess.Popen[bytes], after: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _newest_step(out) > after:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


@needs_torchrun
def test_a_killed_worker_restarts_the_group_which_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """`kill -9` of one worker at a random moment: torchrun --max-restarts starts the group again with the same
    command line, which resumes from the newest checkpoint by itself (`--resume` also starts a fresh run), loses
    at most one checkpoint interval (2 steps) and ends bit for bit where a run never killed ends."""
    data = _image_folder(tmp_path / "images")
    # A restarted group must not share the launcher's store with the dead one (see docs/training.md).
    env = {**_env(tmp_path / "cache"), "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    launch = [*STANDALONE, "--max-restarts", "2", "-m", "dcgan"]
    straight = subprocess.run(
        [*launch, *_train_flags(data, tmp_path / "straight", 40, "--resume")], env=env, capture_output=True
    )
    assert straight.returncode == 0, straight.stderr.decode()[-3000:]
    assert "No checkpoint in" in straight.stdout.decode(), "--resume on an empty folder starts a new run"
    out = tmp_path / "killed"
    proc = subprocess.Popen([*launch, *_train_flags(data, out, 40, "--resume")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    _wait_for_step(out, proc, after=0)
    rng = np.random.default_rng()
    time.sleep(float(rng.uniform(0, 0.2)))
    workers = _workers(proc.pid)
    assert len(workers) == 2, "both workers still run"
    reached, newest = _logged_step(out), _newest_step(out)
    os.kill(int(rng.choice(workers)), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=1200)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    resumed = [
        int(line.split(" from step ")[1].split()[0]) for line in stdout.decode().splitlines() if "Resuming" in line
    ]
    # A rank can still abort in gloo's C++ teardown once the run has finished (an open defect seen in CI: "terminate
    # called without an active exception", exit 134 after the rank's last line); the launcher then restarts the
    # finished run, which resumes at its last step and stops at once. Tolerated, and only at the end.
    if len(resumed) == 2 and resumed[1] == 40:
        resumed.pop()
    assert len(resumed) == 1, "the launcher restarted the group once, and it resumed"
    assert resumed[0] >= newest and reached - resumed[0] <= 2, f"killed at step {reached}, resumed at {resumed[0]}"
    assert ckpt.load(out)["step"] == 40
    killed, never = _weights(ckpt.load(out)), _weights(ckpt.load(tmp_path / "straight"))
    assert killed.keys() == never.keys()
    assert [k for k in killed if not torch.equal(killed[k], never[k])] == [], "bit for bit the run never killed"


@needs_torchrun
def test_sigterm_to_torchrun_saves_and_prints_the_resume_command(tmp_path: Path) -> None:
    data = _image_folder(tmp_path / "images")
    out = tmp_path / "run"
    proc = subprocess.Popen([*STANDALONE, "-m", "dcgan", *_train_flags(data, out, 100_000)], env=_env(tmp_path / "cache"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for_step(out, proc, after=0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    message = err.decode()
    assert "Stopped by SIGTERM at step " in message, message[-3000:]
    assert f"Resume with: dcgan train --out {out} --resume (under torchrun: the same torchrun command" in message
    stopped_at = int(message.split("Stopped by SIGTERM at step ")[1].split()[0])
    assert ckpt.load(out)["step"] == stopped_at, "the checkpoint holds the step the message names"


#: `dcgan train` in which rank 1 hangs (alive, never answering) before its fourth step.
_STALL = """
import signal, sys, time
from dcgan.cli import main
from dcgan.train import Trainer
step = Trainer.train_step
def stalled(self, real, z):
    if self.dist.rank == 1 and self.step == 3:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # so that the launcher can end it when the group stops
        time.sleep(3600)
    return step(self, real, z)
Trainer.train_step = stalled
sys.exit(main(sys.argv[1:]))
"""


@needs_torchrun
def test_a_stalled_rank_is_detected_by_the_timeout(tmp_path: Path) -> None:
    """A rank that hangs without dying: after --ddp-timeout seconds rank 0 stops with one sentence and the
    launcher ends the group, instead of both waiting for ever; the last checkpoint stands."""
    data = _image_folder(tmp_path / "images")
    out = tmp_path / "run"
    script = tmp_path / "stall.py"
    script.write_text(_STALL)
    cmd = [*STANDALONE, str(script), *_train_flags(data, out, 40, "--ddp-timeout", "10")]
    done = subprocess.run(cmd, env=_env(tmp_path / "cache"), capture_output=True, timeout=300)
    message = done.stderr.decode()
    assert done.returncode != 0, message[-3000:]
    assert "Rank 0 of 2 stopped: another process did not answer within --ddp-timeout 10 s" in message, message[-3000:]
    assert ckpt.load(out)["step"] == 2


def _full_disk_rank(rank: int, world: int, port: int, argv: list[str], cache: str, report: str) -> None:
    """`dcgan train` as one rank of two; on rank 0 the disk fills while the step-4 checkpoint is written. Each rank
    leaves its exit code and what it printed in `report`/rank<N>.json."""
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
         "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "DCGAN_CACHE": cache}
    )  # fmt: skip
    torch.set_num_threads(1)
    save = torch.save

    def full_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(obj, dict) and obj.get("step") == 4:
            f.write(b"\0" * 65536)  # part of the file reaches the disk, then it is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(obj, f, *args, **kwargs)

    if rank == 0:
        torch.save = full_disk
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        code = main(argv)
    (Path(report) / f"rank{rank}.json").write_text(json.dumps({"code": code, "said": said.getvalue()}))


def test_a_full_disk_during_a_ddp_checkpoint_stops_every_rank_with_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row "a full disk during a DDP checkpoint": rank 0's disk fills while it writes a checkpoint; its temporary
    file goes, the checkpoints before it stay whole, both ranks stop at once with the same sentence naming the
    disk, its free space and what a checkpoint needs (exit 2, no rank left waiting), and --resume then goes on
    from the last good checkpoint."""
    data, out, report = _image_folder(tmp_path / "images"), tmp_path / "run", tmp_path / "report"
    report.mkdir()
    argv = _train_flags(data, out, 6, "--ddp-timeout", "60")
    args = (2, _free_port(), argv, str(tmp_path / "cache"), str(report))
    ranks = mp.start_processes(_full_disk_rank, args=args, nprocs=2, start_method="spawn", join=False)
    deadline = time.monotonic() + 600  # a backstop: a rank left waiting would stop after --ddp-timeout 60
    # Each rank is waited for on its own (ProcessContext.join would terminate the other as soon as one exits
    # non-zero, before it has written its report).
    while any(process.is_alive() for process in ranks.processes):
        if time.monotonic() > deadline:
            for pid in ranks.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError("the ranks were still running after 600 s")
        time.sleep(0.2)
    # What a user sees is what main() returned and printed, checked below from each rank's report. A rank's process
    # has once (in some hundred runs on 2 cores) aborted after that, at interpreter exit, in gloo's C++ teardown
    # ("terminate called without an active exception"): tolerated here as SIGABRT after the report, nothing else.
    exits = [process.exitcode for process in ranks.processes]
    assert all(code in (0, -signal.SIGABRT) for code in exits), exits
    mount = out.resolve()
    while not os.path.ismount(mount):
        mount = mount.parent
    for rank in (0, 1):
        result = json.loads((report / f"rank{rank}.json").read_text())
        errors = [line for line in result["said"].splitlines() if line.startswith("error:")]
        assert result["code"] == 2 and len(errors) == 1, result["said"][-3000:]
        assert errors[0].startswith(
            f"error: Could not write the checkpoint {out / 'checkpoints' / 'step-00000004.pt'} (No space left on "
            f"device: the disk mounted at {mount} has "
        ), errors[0]
        assert "MB free and a checkpoint needs about " in errors[0], errors[0]
        assert "; the previous checkpoints are intact; " in errors[0], errors[0]
        assert errors[0].endswith(f"dcgan train --out {out} --resume continues from the newest checkpoint."), errors[0]
    on_disk = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert on_disk == ["step-00000000.pt", "step-00000002.pt"], "the two good checkpoints and no temporary file"
    assert ckpt.load(out)["step"] == 2

    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    assert main(_train_flags(data, out, 6, "--resume")) == 0
    assert f"Resuming {out} from step 2" in capsys.readouterr().out
    assert ckpt.load(out)["step"] == 6
