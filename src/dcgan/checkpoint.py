"""Checkpoints: one plain dict of tensors and primitives, written atomically, read without unpickling code.

`torch.load(..., weights_only=True)` only rebuilds tensors and plain containers, so a file crafted to run
code when unpickled is refused, not run. Writes go to a temporary file in the same folder that is flushed,
fsynced and renamed over the target, so a checkpoint is either complete or absent, even after SIGKILL or a
full disk.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcgan.config import TrainConfig
from dcgan.errors import CheckpointError
from dcgan.models import Discriminator, Generator, recalibrate_batchnorm

FORMAT = "dcgan-checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{8,})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's step checkpoints, oldest first (`best.pt` and temporary files excluded)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's latest checkpoint."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise CheckpointError(f"{path} holds no checkpoints (looked in {path / CHECKPOINT_DIR}).")
        return found[-1]
    if not path.exists():
        raise CheckpointError(f"No such checkpoint or run folder: {path}.")
    return path


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
        raise CheckpointError(
            f"Could not write the checkpoint {path} ({reason}); the previous checkpoints are intact."
        ) from exc
    _fsync_dir(path.parent)
    return path


def load(path: str | Path) -> dict[str, Any]:
    """Read a dcgan checkpoint (file or run folder) safely; raise `CheckpointError` with a clear reason."""
    path = resolve(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refusing to load {path}: it contains Python objects other than tensors and plain data, "
            "which could run code; it is not a dcgan checkpoint or has been tampered with."
        ) from exc
    except Exception as exc:  # a damaged file breaks the reader in many ways (IndexError, KeyError, ...)
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read ({type(exc).__name__}).") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dcgan checkpoint.")
    if "digest" in state and digest(state) != state["digest"]:
        raise CheckpointError(f"{path} is corrupt: its contents do not match the checksum written with it.")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer dcgan (format {state['version']}); upgrade dcgan.")
    for key in ("config", "generator", "step"):
        if key not in state:
            raise CheckpointError(f"{path} is missing '{key}'; it is incomplete.")
    return state


def config_of(state: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(state["config"])


def build_models(config: TrainConfig, channels: int) -> tuple[Generator, Discriminator]:
    g = Generator(config.image_size, channels, config.nz, config.ngf)
    d = Discriminator(config.image_size, channels, config.ndf)
    return g, d


def load_state_dict(module: torch.nn.Module, weights: dict[str, torch.Tensor], what: str, path: object) -> None:
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"The {what} weights in {path} do not fit the model its config describes.") from exc


def load_generator(path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu") -> Generator:
    """The generator of a run folder or checkpoint, in eval mode.

    Args:
        path: a run folder (its newest checkpoint) or a checkpoint file.
        ema: use the evaluation copy the run saved: the EMA weights when it kept them (`--ema`), with batchnorm
            statistics re-estimated for the final weights. False gives the raw training weights.
        device: where to put it.
    """
    state = load(path)
    config = config_of(state)
    channels = int(state.get("channels") or config.channels or 3)
    g = Generator(config.image_size, channels, config.nz, config.ngf)
    # "generator_eval": G (its EMA when on) with batchnorm statistics re-estimated for its final weights.
    evaluation = state.get("generator_eval") if ema else None
    load_state_dict(g, evaluation or state["generator"], "generator", path)
    g.prior = config.prior  # type: ignore[assignment]
    g.to(device)
    if ema and not evaluation:  # a checkpoint from before evaluation copies were saved: re-estimate now
        recalibrate_batchnorm(g, config.prior, seed=config.seed + 3)
    return g.eval()


def load_discriminator(path: str | Path, *, device: str | torch.device = "cpu") -> Discriminator:
    """The discriminator of a run folder or checkpoint, in eval mode."""
    state = load(path)
    config = config_of(state)
    if "discriminator" not in state:
        raise CheckpointError(f"{path} holds no discriminator.")
    channels = int(state.get("channels") or config.channels or 3)
    d = Discriminator(config.image_size, channels, config.ndf)
    load_state_dict(d, state["discriminator"], "discriminator", path)
    return d.to(device).eval()


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


def prune(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints."""
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)


def describe(path: str | Path) -> dict[str, Any]:
    """What `dcgan info` prints: the file, its training state and its config."""
    path = resolve(path)
    state = load(path)
    config = config_of(state)
    count = lambda weights: int(sum(t.numel() for t in weights.values() if t.is_floating_point()))
    return {
        "file": str(path),
        "size_mb": round(path.stat().st_size / 2**20, 2),
        "step": int(state["step"]),
        "epoch": int(state.get("epoch", 0)),
        "batch_in_epoch": int(state.get("batch_in_epoch", 0)),
        "channels": int(state.get("channels") or config.channels or 3),
        "generator_parameters": count(state["generator"]),
        "discriminator_parameters": count(state.get("discriminator", {})),
        "has_ema": bool(state.get("generator_ema")),
        "resumable": all(k in state for k in ("opt_g", "opt_d", "rng", "noise_rng")),
        "config": config.to_dict(),
    }
