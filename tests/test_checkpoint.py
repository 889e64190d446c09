"""Checkpoints are atomic, verified and never unpickled: hostile or damaged files give one clear error."""

from __future__ import annotations

import errno
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dcgan import checkpoint as ckpt
from dcgan.cli import main
from dcgan.errors import CheckpointError


def _copy_latest(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy.pt"
    target.write_bytes(ckpt.resolve(run).read_bytes())
    return target


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_runs_code_when_unpickled_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "config": {}, "generator": _Exploit(marker), "step": 0}, path)
    with pytest.raises(CheckpointError, match="Refusing"):
        ckpt.load(path)
    assert main(["info", str(path)]) == 2
    assert main(["sample", str(path), "--out", str(tmp_path / "s")]) == 2
    assert not marker.exists(), "the payload must never run"
    err = capsys.readouterr().err
    assert "Refusing" in err and "Traceback" not in err


def test_plain_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CheckpointError):
        ckpt.load(path)
    assert not marker.exists()


def test_truncated_checkpoint(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy_latest(tiny_run, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert main(["info", str(path)]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


@settings(max_examples=15, deadline=None)
@given(fraction=st.floats(0.0, 0.999))
def test_any_flipped_byte_is_caught(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory, fraction: float) -> None:
    path = _copy_latest(tiny_run, tmp_path_factory.mktemp("flip"))
    data = bytearray(path.read_bytes())
    data[int(fraction * len(data))] ^= 0x55
    path.write_bytes(bytes(data))
    try:
        state = ckpt.load(path)
    except CheckpointError:
        return
    # The only bytes that can change without an error are ones torch never reads (e.g. zip comments/padding).
    original = ckpt.load(tiny_run)
    assert ckpt.digest(state) == ckpt.digest(original)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a dcgan checkpoint"):
        ckpt.load(path)
    with pytest.raises(CheckpointError, match="No such"):
        ckpt.load(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="holds no checkpoints"):
        ckpt.load(tmp_path)


def test_save_is_atomic_on_a_full_disk(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ckpt.pt"
    good = ckpt.load(tiny_run)
    ckpt.atomic_save(good, target)
    before = target.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_save(obj, f, *args, **kwargs)  # some bytes reach the temporary file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"No space left on device.*intact"):
        ckpt.atomic_save({**good, "step": 999}, target)
    assert target.read_bytes() == before, "the previous checkpoint is untouched"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"], "no temporary file is left behind"


def test_checkpoint_holds_the_full_training_state(tiny_run: Path) -> None:
    state = ckpt.load(tiny_run)
    for key in ("generator", "discriminator", "opt_g", "opt_d", "step", "epoch", "batch_in_epoch", "rng", "config"):
        assert key in state
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert state["step"] == 8
    with zipfile.ZipFile(ckpt.resolve(tiny_run)) as z:
        assert z.testzip() is None


def test_info_prints_config_and_state(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "step: 8" in out and "image_size: 16" in out and "resumable: True" in out
