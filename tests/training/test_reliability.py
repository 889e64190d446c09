"""The fault table (README, Reliability) row by row: each test breaks when the behaviour its row promises goes.

Faults are injected through public seams only (the model classes, Pillow, `open`, signals), so that the tests
hold whatever shape the training loop's internals take.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.checkpoint import list_checkpoints, load
from dcgan.cli import main
from dcgan.errors import CheckpointError, ConfigError
from dcgan.models import Generator
from dcgan.train import Trainer, train
from tests.conftest import shapes_data, tiny_config, train_tiny

NO_SPACE = os.strerror(errno.ENOSPC)


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _image_folder(path: Path, n: int = 48) -> Path:
    rng = np.random.default_rng(0)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path / f"{i:03d}.png")
    return path


def _train_argv(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "train", "--data", str(data), "--out", str(out), "--image-size", "16", "--nz", "8", "--ngf", "8",
        "--ndf", "8", "--batch-size", "16", "--steps", str(steps), "--precision", "fp32", "--checkpoint-every", "2",
        "--log-every", "2", "--sample-every", "1000", *extra,
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------- mode collapse
def test_collapsing_samples_warn_of_mode_collapse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row "mode collapse": when every sample of a grid is the same image, the run warns and logs diversity 0."""
    with warnings.catch_warnings(record=True) as healthy:
        warnings.simplefilter("always")
        train_tiny(tmp_path / "healthy", steps=8)
    assert not [w for w in healthy if "mode collapse" in str(w.message)], "a run that did not collapse is quiet"

    forward = Generator.forward
    grids: list[int] = []

    def collapsing(self: Generator, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        out = forward(self, z, labels)
        if self.training:
            return out
        grids.append(z.shape[0])  # G runs in eval mode only to draw the sample grids
        return out if len(grids) == 1 else out[:1].expand_as(out).contiguous()  # from the second grid: one image

    monkeypatch.setattr(Generator, "forward", collapsing)
    with pytest.warns(UserWarning, match="Possible mode collapse at step 8"):
        train_tiny(tmp_path / "collapsed", steps=8)
    diversity = {r["step"]: r["diversity"] for r in _rows(tmp_path / "collapsed") if "diversity" in r}
    assert diversity[4] > 0 and diversity[8] == 0, diversity


# ------------------------------------------------------------------------------------------- resuming
def test_resume_falls_back_to_the_previous_checkpoint(tmp_path: Path) -> None:
    """Row "truncated checkpoint": with the newest checkpoint cut short, --resume warns and goes on from the one
    before; the log rows up to that checkpoint are the first run's, those after it are written again."""
    run = train_tiny(tmp_path / "run", steps=8, checkpoint_every=4)
    newest = list_checkpoints(run)[-1]
    assert newest.name == "step-00000008.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    first = {r["step"]: r for r in _rows(run) if "loss_d" in r}
    with pytest.warns(UserWarning, match="Falling back to the previous checkpoint") as record:
        result = train(tiny_config(steps=12, checkpoint_every=4), run, resume=True, data=shapes_data(), progress=False)
    assert any("step-00000008.pt" in str(w.message) for w in record), "the warning names the unreadable file"
    assert result.step == 12 and load(run)["step"] == 12
    again = {r["step"]: r for r in _rows(run) if "loss_d" in r}
    assert sorted(again) == [2, 4, 6, 8, 10, 12]
    assert [again[s]["time"] == first[s]["time"] for s in (2, 4, 6, 8)] == [True, True, False, False], (
        "resumed at step 4: rows up to it kept, steps 5-8 trained and logged again"
    )


class _Stop(Exception):
    pass


def test_resume_drops_log_rows_past_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row "run stopped and restarted": rows logged after the checkpoint being resumed are gone before the first
    replayed step, and the finished run logs each step once."""
    run = train_tiny(tmp_path / "run", steps=8, checkpoint_every=4)
    list_checkpoints(run)[-1].unlink()  # as if killed after logging step 8 but before its checkpoint was written
    assert max(r["step"] for r in _rows(run)) == 8

    def stop(self: Generator, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raise _Stop

    with monkeypatch.context() as patch:  # the resumed run stops at its first step: the log as resuming left it
        patch.setattr(Generator, "forward", stop)
        with pytest.raises(_Stop):
            train(tiny_config(steps=8, checkpoint_every=4), run, resume=True, data=shapes_data(), progress=False)
    assert [r["step"] for r in _rows(run) if "loss_d" in r] == [2, 4]
    assert max(r["step"] for r in _rows(run)) == 4

    train(tiny_config(steps=8, checkpoint_every=4), run, resume=True, data=shapes_data(), progress=False)
    rows = _rows(run)
    assert [r["step"] for r in rows if "loss_d" in r] == [2, 4, 6, 8]
    assert [r["step"] for r in rows if "diversity" in r] == [4, 8]


# ------------------------------------------------------------------------------------------- a full disk
def test_a_full_disk_for_sample_grids_and_log_lines_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row "full disk while saving": no grid and no log line can be written, and the run still finishes."""
    save, open_ = Image.Image.save, builtins.open

    def grid_save(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(fp, (str, Path)) and Path(fp).parent.name == "samples":
            raise OSError(errno.ENOSPC, NO_SPACE)
        return save(self, fp, *args, **kwargs)

    def log_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, Path)) and Path(file).name == "metrics.jsonl" and "a" in mode:
            raise OSError(errno.ENOSPC, NO_SPACE)
        return open_(file, mode, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", grid_save)
    monkeypatch.setattr(builtins, "open", log_open)
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = train(tiny_config(steps=8), out, data=shapes_data(), progress=False)
    assert result.step == 8 and load(out)["step"] == 8
    messages = [str(w.message) for w in record if NO_SPACE in str(w.message)]
    assert any("sample grid" in m for m in messages), messages
    assert any("metrics.jsonl" in m for m in messages), messages
    assert not list((out / "samples").glob("*.png")) and not (out / "metrics.jsonl").exists()


def test_a_full_disk_for_a_snapshot_stops_with_the_resume_hint_and_keeps_the_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row "full disk while saving", for G's snapshots: one sentence that says how to go on, exit 2, and the
    checkpoints written before are whole."""
    from dcgan.run import RunFolder

    real = RunFolder.save_snapshot

    def full(self: RunFolder, step: int, *args: Any, **kwargs: Any) -> Path:
        if step >= 4:
            raise CheckpointError(f"Could not write the snapshot {self.root} ({NO_SPACE}).")
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(RunFolder, "save_snapshot", full)
    out = tmp_path / "run"
    data = tmp_path / "images"
    data.mkdir()
    for i in range(40):
        Image.fromarray(np.full((16, 16), i * 6, dtype=np.uint8)).save(data / f"{i}.png")
    flags = ["train", "--data", str(data), "--image-size", "16", "--ngf", "8", "--ndf", "8", "--nz", "8",
             "--batch-size", "8", "--steps", "8", "--checkpoint-every", "2", "--snapshot-every", "2",
             "--precision", "fp32", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and NO_SPACE in err, err
    assert err.endswith(f"dcgan train --out {out} --resume continues from the newest checkpoint."), err
    assert load(out)["step"] == 2, "the checkpoints before the failed snapshot are intact"


# ------------------------------------------------------------------------------------------- Ctrl-C twice
# `dcgan train` with a D that crawls (2 s a forward pass) once the marker file exists: a step then takes 6 s, so
# a stop that waited for the step to finish could not be quick.
SLOW_TRAIN = """
import sys, time
from pathlib import Path
from dcgan.cli import main
from dcgan.models import Discriminator
marker, forward = Path(sys.argv[1]), Discriminator.forward
def slow(self, x):
    if marker.exists():
        time.sleep(4)
    return forward(self, x)
Discriminator.forward = slow
sys.exit(main(sys.argv[2:]))
"""


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    """Row "Ctrl-C or SIGTERM": the first Ctrl-C waits for the step to end; a second one stops mid-step, and the
    checkpoints on disk are the ones written before."""
    data, out, marker = _image_folder(tmp_path / "images"), tmp_path / "run", tmp_path / "slow"
    env = {**os.environ, "DCGAN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", SLOW_TRAIN, str(marker), *_train_argv(data, out, 100000, "--no-progress")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not [p for p in list_checkpoints(out) if p.name != "step-00000000.pt"]:
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        marker.touch()
        time.sleep(1.0)  # now well inside a slow step (three D passes of 4 s), which has about 11 s to go
        before = {p.name: p.read_bytes() for p in list_checkpoints(out)}
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        second = time.monotonic()
        _, err = proc.communicate(timeout=60)
        waited = time.monotonic() - second
    finally:
        proc.kill()
    message = err.decode()
    assert proc.returncode == 130, message
    # Far less than the ~10 s the step still had to run, with room for a loaded machine's process exit.
    assert waited < 4.0, f"took {waited:.1f} s after the second Ctrl-C"
    assert "Stopped by" not in message and "Traceback" not in message, message
    assert {p.name: p.read_bytes() for p in list_checkpoints(out)} == before, "the last checkpoint stands"
    assert load(out)["step"] == max(int(name[5:13]) for name in before)


# ------------------------------------------------------------------------------------------- used folders
def test_a_used_run_folder_is_refused_and_left_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row "--out already holds a run, without --resume": refused with one sentence; no file changes or appears."""
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    data = _image_folder(tmp_path / "images")
    out = tmp_path / "run"
    assert main(_train_argv(data, out, 4, "--no-progress")) == 0
    capsys.readouterr()

    def snapshot() -> dict[str, tuple[bytes, int]]:
        return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}

    before = snapshot()
    assert main(_train_argv(data, out, 8, "--no-progress", "--seed", "1")) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_config(steps=8, seed=1), out, data=shapes_data(), progress=False)
    assert snapshot() == before


# ------------------------------------------------------------------------------------------- bad images
def test_the_count_of_undecodable_files_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row "corrupt, truncated or non-image files in a data folder": the run says how many it skipped, also when
    the decoded folder comes from the cache and when there is no progress bar."""
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    data = _image_folder(tmp_path / "images", n=32)
    good = (data / "000.png").read_bytes()
    (data / "truncated.png").write_bytes(good[: len(good) // 2])
    (data / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (data / "text.png").write_text("not an image")
    (data / "notes.txt").write_text("not an image file name: not counted")
    out = tmp_path / "run"
    # The second and third runs read the decoded folder from the cache.
    for steps, extra in ((1, ()), (2, ("--resume",)), (3, ("--resume", "--no-progress"))):
        assert main(_train_argv(data, out, steps, *extra)) == 0
        shown = capsys.readouterr()
        text = shown.out + shown.err
        assert "Skipped 3 files that could not be decoded" in text, text[-1500:]


def test_thousands_of_undecodable_files_are_one_line_and_a_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row "thousands of undecodable files": 2,000 broken files among 32 images are skipped with one line (the
    count, three names, where all of them are listed) and the run trains on the 32; a folder of nothing but
    those files stops with one sentence, exit 2, before a run folder is made."""
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    data = _image_folder(tmp_path / "images", n=32)
    junk = data / "junk"
    junk.mkdir()
    for i in range(2000):
        (junk / f"{i:04d}.jpg").write_bytes(b"\xff\xd8\xff not a JPEG %d" % i)
    out = tmp_path / "run"
    assert main(_train_argv(data, out, 2, "--no-progress")) == 0
    shown = capsys.readouterr()
    said = [line for line in (shown.out + shown.err).splitlines() if "could not be decoded" in line]
    listed = out / "skipped-files.txt"
    assert said == [
        "Skipped 2,000 files that could not be decoded (e.g. junk/0000.jpg, junk/0001.jpg, junk/0002.jpg, ...); "
        f"all of them are listed in {listed}."
    ]
    assert sorted(listed.read_text().splitlines()) == sorted(str(f) for f in junk.iterdir())
    assert load(out)["step"] == 2, "the run trained on the good images"

    assert main(_train_argv(junk, tmp_path / "junk-run", 2, "--no-progress")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in re.split(r"[\r\n]", err) if line.startswith("error:")] == [
        f"error: --data {junk}: none of its 2,000 image files could be decoded (e.g. 0000.jpg, 0001.jpg, 0002.jpg, ...)."
    ]
    assert not (tmp_path / "junk-run").exists()


# ------------------------------------------------------------------------------------------- changing data
def test_files_changed_during_a_run_leave_it_alone_and_the_next_run_decodes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row "a file that changes or vanishes during training": the data is decoded before the first step, so
    deleting, rewriting and truncating files mid-run leaves every step what it was (the run ends bit for bit as
    one on an untouched copy); the next run finds the folder changed, says so and decodes it again."""
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    data = _image_folder(tmp_path / "images", n=48)
    untouched = shutil.copytree(data, tmp_path / "untouched")
    rng = np.random.default_rng(1)

    def change_files(trainer: Trainer, stats: torch.Tensor) -> None:
        if trainer.step == 1:
            names = sorted(data.iterdir())
            for gone in names[:8]:
                gone.unlink()
            for changed in names[8:16]:
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(changed)
            names[-1].write_bytes(names[-1].read_bytes()[:40])

    for folder, hook in ((data, change_files), (untouched, None)):
        config = tiny_config(
            data=str(folder), channels=3, batch_size=16, steps=4, checkpoint_every=2, sample_every=1000,
            gemm_conv=False, channels_last=False,
        )  # fmt: skip
        Trainer(config, tmp_path / f"{folder.name}-run", progress=False).fit(on_step=hook)
    changed, same = load(tmp_path / "images-run"), load(tmp_path / "untouched-run")
    for part in ("generator", "discriminator"):
        assert all(torch.equal(changed[part][k], same[part][k]) for k in same[part]), f"{part} as if nothing changed"

    assert main(["train", "--out", str(tmp_path / "images-run"), "--resume", "--steps", "5", "--no-progress"]) == 0
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert (
        f"warning: --data {data} changed since it was decoded into the cache (48 image files then, 40 now); "
        "decoding it again." in text
    ), text[-2000:]
    assert "Skipped 1 files that could not be decoded (e.g. 047.png)" in text, "the truncated file, found by decoding"
