"""A graceful stop: SIGINT or SIGTERM finish the current step, save a checkpoint and say how to resume."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from dcgan.errors import DcganError


class Interrupted(DcganError):
    """SIGINT or SIGTERM stopped the run after a checkpoint was written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class GracefulStop:
    """While entered, SIGINT and SIGTERM set `signum` instead of killing the process; the loop looks at it after
    each step. A second signal raises KeyboardInterrupt at once (the last checkpoint stands). The previous
    handlers come back on exit. Off the main thread, where handlers cannot be set, signals are left alone.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> GracefulStop:
        with contextlib.suppress(ValueError):  # not the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()

    def interrupted(self, step: int, total: int, out: Path) -> Interrupted:
        """The error that ends the run once the checkpoint of `step` is saved."""
        signum = self.signum or signal.SIGINT
        # Under torchrun the same launch command with --resume continues the run with all its processes.
        launcher = (
            " (under torchrun: the same torchrun command with --resume)" if "TORCHELASTIC_RUN_ID" in os.environ else ""
        )
        return Interrupted(
            f"Stopped by {signal.Signals(signum).name} at step {step} of {total}; a checkpoint is saved. "
            f"Resume with: dcgan train --out {out} --resume{launcher}",
            signum,
        )
