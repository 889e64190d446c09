"""Which checkpoint a run resumes from, and whether it fits the config it is resumed with."""

from __future__ import annotations

import warnings
from typing import Any

from dcgan.config import TrainConfig
from dcgan.errors import CheckpointError, ConfigError
from dcgan.run import RunFolder, read_checkpoint


def newest_state(folder: RunFolder, config: TrainConfig, *, resume: bool, talk: bool) -> dict[str, Any] | None:
    """The checkpoint to continue from: the newest readable one in `folder` (a corrupt newest one is reported
    and the one before it taken), or None for a new run.

    Args:
        folder: the run folder.
        config: the config the run goes on with; its model must be the checkpoint's.
        resume: whether continuing is wanted; a folder that holds a run without it is a `ConfigError`.
        talk: print and warn (rank 0).
    """
    existing = folder.list_checkpoints()
    if existing and not resume:
        raise ConfigError(f"{folder.root} already holds a run; add --resume to continue it or pick another --out.")
    if not existing:
        if resume and talk:
            print(f"No checkpoint in {folder.root}: starting a new run there.", flush=True)
        return None
    for path in reversed(existing):
        try:
            state = read_checkpoint(path)
        except CheckpointError as exc:
            if path == existing[0]:
                raise
            warnings.warn(f"{exc} Falling back to the previous checkpoint.", stacklevel=2)
            continue
        _check_fits(TrainConfig.from_dict(state["config"]), config, folder, talk)
        if talk:
            print(f"Resuming {folder.root} from step {state['step']} ({path.name}).", flush=True)
        return state
    return None


def _check_fits(saved: TrainConfig, config: TrainConfig, folder: RunFolder, talk: bool) -> None:
    if saved.conditional != config.conditional:
        raise CheckpointError(
            f"{folder.root} holds a class-conditional run and cannot go on as an unconditional one; resume it "
            "without --no-conditional, or start a new --out."
            if saved.conditional
            else f"{folder.root} holds an unconditional run and cannot go on as a class-conditional one; resume it "
            "without --conditional, or start a new --out with --conditional."
        )
    wanted = config.architecture()
    if saved.architecture() != wanted:
        diff = ", ".join(f"{k} {v} vs {wanted[k]}" for k, v in saved.architecture().items() if v != wanted[k])
        raise CheckpointError(
            f"The checkpoint's model does not match this run's ({diff}); resume with the same model settings "
            "or start a new --out."
        )
    if saved.data != config.data and talk:
        warnings.warn(
            f"Resuming {folder.root}, trained on --data {saved.data}, on --data {config.data}. To continue with "
            f"the run's own settings, pass dcgan.resume_config('{folder.root}', steps=...) as the config.",
            stacklevel=3,
        )
