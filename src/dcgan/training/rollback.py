"""NaN rollback: when the losses turn NaN or Inf, go back to the newest checkpoint and try another noise stream."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from dcgan.errors import DcganError
from dcgan.run import RunFolder, read_checkpoint


class NumericalFault(DcganError):
    """Training produced NaN or Inf and ran out of rollbacks."""


class NanRollback:
    """Reloads the newest checkpoint and reseeds the noise, at most `max_retries` times in a run.

    `retries` is part of the training state (checkpoints save it), so a run cannot loop on a NaN by being resumed.
    Under DDP, `share` runs the read on rank 0 and hands the checkpoint to every rank (`distributed.from_main`):
    the other ranks may be on machines without the run folder.
    """

    def __init__(
        self,
        folder: RunFolder,
        max_retries: int,
        seed: int,
        *,
        warn: bool,
        share: Callable[[Callable[[], Any]], Any] = lambda read: read(),
    ) -> None:
        self.folder, self.max_retries, self.seed, self.warn, self.share = folder, max_retries, seed, warn, share
        self.retries = 0

    def __call__(self, step: int, restore: Callable[[dict[str, Any]], None], noise: torch.Generator) -> None:
        """Step `step + 1` gave NaN/Inf: `restore` the newest checkpoint and reseed `noise`; raise
        `NumericalFault` when the retries are spent."""
        self.retries += 1
        if self.retries > self.max_retries:
            raise NumericalFault(
                f"Training produced NaN/Inf at step {step + 1} again after {self.max_retries} rollbacks; try a "
                f"lower --lr or --precision fp32. The last good checkpoint is in {self.folder.root}."
            )

        def newest() -> tuple[str, dict[str, Any]]:
            path = self.folder.list_checkpoints()[-1]
            return path.name, read_checkpoint(path)

        name, state = self.share(newest)
        retries = self.retries
        restore(state)  # which sets `retries` to the checkpoint's count
        self.retries = retries
        # A different noise stream, or the same batch would produce the same NaN again.
        noise.manual_seed(self.seed + 1 + 1_000_003 * retries)
        if self.warn:
            warnings.warn(
                f"NaN/Inf in the losses: rolled back to {name} (retry {retries} of {self.max_retries}) "
                "with a fresh noise stream.",
                stacklevel=2,
            )
