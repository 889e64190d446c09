"""How busy the machine was while plans were timed: the CPU time other processes took on the CPUs this one may use.

A measurement made while another job ran is garbage (on the 2-core Xeon, 1.07-1.38 s/step for plans that take
0.14-0.21 s idle, and the "fastest" of them 1.36x slower than the real one). So `measure` reads, before and after,
the busy time of this process's usable CPUs (`/proc/stat`, idle and iowait excluded, steal included) and this
process's own CPU time; the difference is what others took. Where `/proc/stat` is missing the load is unknown and a
measurement counts as made on a quiet machine, as before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

#: A measurement is provisional when other processes left its threads less than this share of the CPU they
#: needed: on 2 CPUs with 2 threads, when others kept more than half a CPU busy on average.
BUSY_SHARE = 0.75
#: How long `load_now` watches the machine before a provisional measurement is taken again.
PROBE_SECONDS = 0.25


class CpuTimes(NamedTuple):
    """A reading: wall seconds, busy seconds summed over the usable CPUs, this process's CPU seconds, the CPUs."""

    wall: float
    busy: float
    own: float
    cpus: int


def cpu_times() -> CpuTimes | None:
    """Now's reading, or None where `/proc/stat` cannot be read."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy, cpus = 0, 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or (usable is not None and int(name[3:]) not in usable):
            continue
        ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal (guest is in user)
        busy += sum(ticks) - ticks[3] - ticks[4]
        cpus += 1
    if not cpus:
        return None
    return CpuTimes(time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), time.process_time(), cpus)


@dataclass(frozen=True)
class Load:
    """What other processes took during a measurement: `others` CPUs busy on average, of `cpus` usable ones, while
    the measurement ran `threads` threads."""

    others: float
    cpus: int
    threads: int

    @property
    def share(self) -> float:
        """The share of the CPU the measurement's threads needed that others left to them (1: all of it)."""
        return max(0.0, min(1.0, (self.cpus - self.others) / max(1, min(self.threads, self.cpus))))

    @property
    def busy(self) -> bool:
        return self.share < BUSY_SHARE

    def __str__(self) -> str:
        return f"other processes kept {self.others:.1f} of {self.cpus} CPUs busy"

    def to_dict(self) -> dict[str, Any]:
        return {"others": self.others, "cpus": self.cpus, "threads": self.threads, "share": round(self.share, 3)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Load:
        return cls(float(values["others"]), int(values["cpus"]), int(values["threads"]))


def load_between(before: CpuTimes | None, after: CpuTimes | None, threads: int) -> Load | None:
    """The load between two readings (None if either is missing or no time passed)."""
    if before is None or after is None or after.wall <= before.wall:
        return None
    others = ((after.busy - before.busy) - (after.own - before.own)) / (after.wall - before.wall)
    return Load(max(0.0, others), after.cpus, threads)


def load_now(
    threads: int, seconds: float = PROBE_SECONDS, sampler: Callable[[], CpuTimes | None] = cpu_times
) -> Load | None:
    """The load over the next `seconds`, this process sleeping meanwhile."""
    before = sampler()
    time.sleep(seconds)
    return load_between(before, sampler(), threads)
