"""Checkpoints: one plain dict of tensors and primitives, written atomically, read without unpickling code.

`torch.load(..., weights_only=True)` only rebuilds tensors and plain containers, so a file crafted to run
code when unpickled is refused, not run. Writes go to a temporary file in the same folder that is flushed,
fsynced and renamed over the target, so a checkpoint is either complete or absent, even after SIGKILL or a
full disk.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcgan.config import TrainConfig
from dcgan.errors import CheckpointError
from dcgan.models import Discriminator, Generator

FORMAT = "dcgan-checkpoint"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=str):
            _feed(h, key)
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _feed(h, item)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def digest(state: dict[str, Any]) -> str:
    """SHA-256 over every tensor's bytes and every value (the "digest" entry itself excluded).

    torch's zip container does not check its payload, so a flipped byte in a weight would otherwise load
    silently as a wrong weight.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def atomic_save(obj: dict[str, Any], path: str | Path) -> Path:
    """Write `obj` with torch.save so that `path` afterwards holds either the old file or the whole new one.

    A dict with a "format" entry (a checkpoint) gets a "digest" entry that `load` verifies.
    """
    path = Path(path)
    if "format" in obj:
        obj = {**obj, "digest": digest(obj)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            reason += f": {_room(path.parent, _payload_bytes(obj))}"
        raise CheckpointError(
            f"Could not write the checkpoint {path} ({reason}); the previous checkpoints are intact."
        ) from exc
    _fsync_dir(path.parent)
    return path


def _payload_bytes(obj: Any) -> int:
    """About how many bytes `torch.save(obj)` writes: its tensors' (the rest is small)."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_payload_bytes(v) for v in obj)
    return 0


def _room(folder: Path, needed: int) -> str:
    """Which disk `folder` is on, what it has free and what a file of `needed` bytes takes, for a message."""
    mount = folder.resolve()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        free = f"{_megabytes(shutil.disk_usage(folder).free)} free"
    except OSError:
        free = "its free space unknown"
    return f"the disk mounted at {mount} has {free} and a checkpoint needs about {_megabytes(needed)}"


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def read_verified(path: Path) -> dict[str, Any]:
    """A file written by `atomic_save`, read without unpickling code and checked against its digest.

    The checkpoint's schema (which keys, which version) is `dcgan.run`'s business; this only guarantees that
    the bytes are the ones that were written and hold nothing but tensors and plain data.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refusing to load {path}: it contains Python objects other than tensors and plain data, "
            "which could run code; it is not a dcgan checkpoint or has been tampered with."
        ) from exc
    except Exception as exc:  # a damaged file breaks the reader in many ways (IndexError, KeyError, ...)
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read ({type(exc).__name__}).") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a dcgan checkpoint.")
    if "digest" in state and digest(state) != state["digest"]:
        raise CheckpointError(f"{path} is corrupt: its contents do not match the checksum written with it.")
    return state


# Shortcuts kept for code written against the first release; `dcgan.run` is where runs are opened.
def load(path: str | Path) -> dict[str, Any]:
    """Read a dcgan checkpoint (file or run folder) safely: `dcgan.run.read_checkpoint`."""
    from dcgan.run import read_checkpoint

    return read_checkpoint(path)


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's newest checkpoint: `dcgan.run.resolve`."""
    from dcgan.run import resolve as resolve_run

    return resolve_run(path)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's step checkpoints, oldest first: `dcgan.run.RunFolder(run_dir).list_checkpoints()`."""
    from dcgan.run import RunFolder

    return RunFolder(run_dir).list_checkpoints()


def config_of(state: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(state["config"])


def load_generator(path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu") -> Generator:
    """The generator of a run folder or checkpoint, in eval mode: `dcgan.run.Run.open(path).generator()`."""
    from dcgan.run import Run

    return Run.open(path, device=device).generator(ema=ema)


def load_discriminator(path: str | Path, *, device: str | torch.device = "cpu") -> Discriminator:
    """The discriminator of a run folder or checkpoint, in eval mode."""
    from dcgan.run import Run

    return Run.open(path, device=device).discriminator()


def rng_state() -> dict[str, Any]:
    """Every global RNG's state, as tensors and primitives only (no pickled NumPy objects)."""
    np_state: Any = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
