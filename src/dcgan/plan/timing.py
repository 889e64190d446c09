"""Timing plans: a first step each, a far slower precision pruned, then interleaved rounds of real training steps."""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dcgan.config import TrainConfig
from dcgan.gemm_conv import use_gemm_conv
from dcgan.plan.load import CpuTimes, Load, cpu_times, load_between
from dcgan.plan.plans import ExecutionPlan, ModelShape

#: A precision whose first plan's warm-up step takes over this many times the fastest is not timed further: bf16 on
#: CPUs that emulate it (3x slower than fp32 in every layout), fp32 on AMX CPUs. Layouts differ by far less.
PRUNE_RATIO = 2.0
#: Before a precision's first full warm-up step, each precision's first plan takes a step at this batch (per
#: process): one whose small step takes over `PROBE_RATIO` times the fastest precision's is not timed at full size.
#: bf16 emulated on an AVX2 CPU (no AVX-512) is 60x slower than fp32 at 64x64: its full warm-up step alone took 110 s
#: of a 129 s selection there; a batch of 2 tells the same in about 2 s. The ratio is loose because a small batch is
#: mostly per-call overhead, which makes precisions look closer than they are (so it prunes only the extreme case);
#: the full warm-up step and `PRUNE_RATIO` decide the rest.
PROBE_BATCH = 2
PROBE_RATIO = 8.0
#: Interleaved rounds of timed steps per candidate; the best round counts.
ROUNDS = 2
#: A round runs enough steps to last this long (one step at 64x64 on a CPU), at most MAX_ROUND_STEPS.
ROUND_SECONDS = 0.1
MAX_ROUND_STEPS = 20
#: The measurement noise `choose` tolerates is the spread between rounds, clamped to this range.
NOISE_FLOOR, NOISE_CAP = 0.02, 0.10

Stepper = Callable[[], None]


@dataclass(frozen=True)
class Timing:
    """One candidate's measurement: seconds per step (best round; None if not timed), its warm-up step, why not."""

    plan: ExecutionPlan
    seconds: float | None
    first_step: float | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict(), "seconds": self.seconds, "first_step": self.first_step, "note": self.note}


@dataclass(frozen=True)
class Measurement:
    """The candidates' timings, the noise between rounds, what measuring took (seconds) and the load meanwhile
    (None: unknown, or measured before dcgan watched it)."""

    timings: tuple[Timing, ...]
    noise: float
    seconds: float
    load: Load | None = None

    @property
    def provisional(self) -> bool:
        """Whether other processes took so much CPU meanwhile (`Load.busy`) that the verdict must be taken again."""
        return self.load is not None and self.load.busy

    def better_than(self, other: Measurement) -> bool:
        """Whether this may replace `other` in the cache: a quiet measurement always may, a provisional one only
        another provisional one taken under no more load."""
        share = self.load.share if self.load is not None else 1.0
        return not self.provisional or (other.provisional and other.load is not None and share >= other.load.share)

    def timed(self, plans: Sequence[ExecutionPlan] | None = None) -> dict[ExecutionPlan, float]:
        """Seconds per step of the timed plans (of `plans` only, if given)."""
        return {t.plan: t.seconds for t in self.timings if t.seconds is not None and (plans is None or t.plan in plans)}

    def covers(self, plans: Sequence[ExecutionPlan]) -> bool:
        """Whether this measurement considered every plan in `plans` and timed at least one of them."""
        considered = {t.plan for t in self.timings}
        return all(p in considered for p in plans) and bool(self.timed(plans))

    def to_dict(self) -> dict[str, Any]:
        load = self.load.to_dict() if self.load is not None else None
        return {"timings": [t.to_dict() for t in self.timings], "noise": self.noise, "seconds": self.seconds,
                "load": load}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Measurement:
        timings = tuple(
            Timing(
                ExecutionPlan.from_dict(t["plan"]), _seconds(t["seconds"]), _seconds(t["first_step"]), str(t["note"])
            )
            for t in values["timings"]
        )
        load = Load.from_dict(values["load"]) if values.get("load") is not None else None
        return cls(timings, float(values["noise"]), float(values["seconds"]), load)


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"not a duration: {value!r}")
    return float(value)


def plan_stepper(plan: ExecutionPlan, shape: ModelShape, device: torch.device) -> Stepper:
    """A function that runs one real training step (`Trainer.train_step`) of a `shape` model under `plan` on random
    images, and waits for it. Building it writes nothing (the Trainer's run folder is never created)."""
    from dcgan.data import ImageData
    from dcgan.train import Trainer

    size = shape.image_size
    plan = dataclasses.replace(plan, compile=False)  # compiling each candidate would take minutes: timed eager
    config = TrainConfig(
        data="random", image_size=size, channels=shape.channels, nz=shape.nz, ngf=shape.ngf, ndf=shape.ndf,
        batch_size=shape.batch_size, steps=10**6, precision=plan.precision, channels_last=plan.channels_last,
        gemm_conv=plan.gemm_conv, compile=plan.compile, plan=plan.to_dict(),
    )  # fmt: skip
    pixels = torch.randint(0, 256, (shape.batch_size, shape.channels, size, size), dtype=torch.uint8)
    data = ImageData(pixels, None, "random", "train", "random pixels")
    never_created = Path(tempfile.gettempdir()) / f"dcgan-plan-{os.getpid()}-{id(pixels)}"
    trainer = Trainer(config, never_created, data=data, device=device, progress=False)

    def step() -> None:
        use_gemm_conv(plan.gemm_conv)  # process-wide: candidates take turns
        trainer.train_step(trainer.real_batch(0), trainer.latent_batch()).cpu()  # .cpu() waits for the device

    return step


def measure(
    plans: Sequence[ExecutionPlan],
    shape: Any,
    device: torch.device,
    *,
    prune: bool = True,
    stepper: Callable[[ExecutionPlan, Any, torch.device], Stepper] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sampler: Callable[[], CpuTimes | None] = cpu_times,
    round_seconds: float = ROUND_SECONDS,
) -> Measurement:
    """Time `plans` on a `shape` model: a first step each, the first plan of each precision first (a precision
    whose first plan is `PRUNE_RATIO` times slower is not timed further), then interleaved rounds of timed steps
    until each plan has `ROUNDS`, the best kept. A first step of `ROUND_SECONDS` or more is its plan's first round;
    shorter ones are timed in rounds of several steps after it. With more than one precision and a training
    `ModelShape`, each precision's first plan first takes two steps at `PROBE_BATCH` images, and a precision whose
    faster one is `PROBE_RATIO` times the fastest's is not timed at full size. The global RNG and the GEMM switch
    are left as they were.

    Args:
        prune: skip a precision whose first plan's small probe step or warm-up step is far slower; False times
            every plan.
        shape: what `stepper` builds the step for: a `ModelShape` for training steps (`plan_stepper`), an
            `InferenceShape` for forward passes (`dcgan.plan.inference`).
        stepper: builds a candidate's step (`plan_stepper`); tests give a fake one.
        clock: seconds, as `time.perf_counter`.
        sampler: reads the CPU time of the machine and of this process (`dcgan.plan.load.cpu_times`), before and
            after, for the load the measurement was made under.
        round_seconds: how long a round of steps lasts at least (`ROUND_SECONDS`; shorter for forward passes).
    """
    make = stepper or plan_stepper
    begin = clock()
    cpu_before = sampler()
    steps: dict[ExecutionPlan, Stepper] = {}
    first: dict[ExecutionPlan, float] = {}
    notes: dict[ExecutionPlan, str] = {}
    groups: dict[str, list[ExecutionPlan]] = {}
    for plan in plans:
        groups.setdefault(plan.precision, []).append(plan)
    gemm_before = use_gemm_conv(True)
    use_gemm_conv(gemm_before)

    def warm_up(plan: ExecutionPlan) -> None:
        steps[plan] = make(plan, shape, device)
        if not first:
            steps[plan]()  # the process's first step pays one-off costs (library set-up) that no plan should carry
        start = clock()
        steps[plan]()
        first[plan] = clock() - start

    def probe(plan: ExecutionPlan, small: ModelShape) -> float:
        step = make(plan, small, device)
        times = []
        for _ in range(2):  # the first pays the precision's one-off costs (kernel creation)
            start = clock()
            step()
            times.append(clock() - start)
        return min(times)

    rounds: dict[ExecutionPlan, list[float]] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            if prune and len(groups) > 1 and isinstance(shape, ModelShape) and shape.batch_size > PROBE_BATCH:
                small = dataclasses.replace(shape, batch_size=PROBE_BATCH)
                probed = {precision: probe(group[0], small) for precision, group in groups.items()}
                quickest = min(probed.values())
                for precision, seconds in probed.items():
                    if seconds / quickest > PROBE_RATIO:
                        for plan in groups.pop(precision):
                            notes[plan] = (f"not timed: a step of {PROBE_BATCH} images in {precision} took "
                                           f"{seconds / quickest:.0f}x the fastest precision's")  # fmt: skip
            for group in groups.values():
                warm_up(group[0])
            fastest = min(first.values())
            for group in groups.values():
                ratio = first[group[0]] / fastest
                if prune and ratio > PRUNE_RATIO:
                    notes[group[0]] = f"warm-up step only: {ratio:.1f}x the fastest"
                    del steps[group[0]]
                    for plan in group[1:]:
                        notes[plan] = f"not timed: {plan.precision}'s first plan took {ratio:.1f}x the fastest warm-up"
                    continue
                for plan in group[1:]:
                    warm_up(plan)
            # A step long enough to time alone (seconds at 64x64 on a CPU) is its plan's first round: after the
            # process's own warm-up step, a new plan's set-up costs milliseconds.
            count = {plan: max(1, min(MAX_ROUND_STEPS, math.ceil(round_seconds / first[plan]))) for plan in steps}
            rounds = {plan: [first[plan]] if count[plan] == 1 else [] for plan in steps}
            while any(len(r) < ROUNDS for r in rounds.values()):
                for plan, step in steps.items():
                    if len(rounds[plan]) == ROUNDS:
                        continue
                    start = clock()
                    for _ in range(count[plan]):
                        step()
                    rounds[plan].append((clock() - start) / count[plan])
        finally:
            steps.clear()
            use_gemm_conv(gemm_before)
    spreads = [(max(r) - min(r)) / min(r) for r in rounds.values() if len(r) > 1 and min(r) > 0]
    noise = min(NOISE_CAP, max(NOISE_FLOOR, statistics.median(spreads) if spreads else 0.0))
    timings = tuple(
        Timing(plan, min(rounds[plan]) if plan in rounds else None, first.get(plan), notes.get(plan, ""))
        for plan in plans
    )
    load = load_between(cpu_before, sampler(), plans[0].threads if plans else torch.get_num_threads())
    return Measurement(timings, noise, clock() - begin, load)


def measurement_steps(plans: Sequence[ExecutionPlan]) -> int:
    """About how many training steps' time measuring `plans` costs: the process's warm-up step and `ROUNDS` each."""
    return 1 + len(plans) * ROUNDS
