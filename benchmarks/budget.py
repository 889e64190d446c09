"""A `dcgan train` command run from the command line as a user would, stopped by SIGINT at a wall-clock budget.

Shared by `quality_vs_time.py` and `conditional_quality.py`, which import it from this folder (a script's own
folder is on its import path).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from dcgan.run import RunFolder


def run_with_budget(
    command: list[str], log: Path, run: RunFolder, budget: float | None, env: dict[str, str] | None = None
) -> tuple[int, float, float]:
    """Run `command` with its output in `log`; SIGINT it `budget` seconds after launch (None: let it finish).

    The signal waits for the run's first checkpoint: dcgan writes the step-0 checkpoint once its signal handler
    is in place, so an earlier SIGINT would stop the process with nothing saved. dcgan then finishes its step,
    saves a checkpoint and exits with 130. Returns the exit code, the launch time and the seconds it ran.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    signalled = False
    while process.poll() is None:
        if budget is not None and not signalled and time.time() - started >= budget and run.list_checkpoints():
            process.send_signal(signal.SIGINT)
            signalled = True
        time.sleep(0.1)
    return process.returncode, started, time.time() - started
