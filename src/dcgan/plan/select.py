"""Where a run's plan comes from: its stored plan, the flags, the cache, a measurement or the built-in defaults."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dcgan.config import TrainConfig
from dcgan.plan import load as plan_load
from dcgan.plan import timing
from dcgan.plan.cache import PlanCache
from dcgan.plan.plans import (
    ExecutionPlan,
    InferenceShape,
    ModelShape,
    candidates,
    choose,
    default_plan,
    forced_by,
)
from dcgan.plan.timing import Measurement
from dcgan.training.speed import resolve_precision

#: A run measures only when it has this many times the steps a measurement costs still to go: measuring costs
#: under 5% of the run (8 plans are estimated at 17 steps, so runs of 340 steps or more measure).
RUN_TO_MEASUREMENT = 20


@dataclass(frozen=True)
class PlanChoice:
    """The plan a run uses and where it came from; `str()` is the line a run logs at start.

    Attributes:
        source: "measured" (now), "cached" (measured earlier on this machine), "stored" (the run's own),
            "forced" (every switch given) or "default" (the built-in defaults, `why` says why).
        why: for a measurement, why it was not cached (if it was not).
    """

    plan: ExecutionPlan
    source: str
    why: str = ""
    measurement: Measurement | None = None
    defaults: ExecutionPlan | None = None
    cache: Path | None = None
    shape: ModelShape | InferenceShape | None = None

    def summary(self) -> str:
        """The plan and, in brackets, where it came from."""
        if self.measurement is None:
            where = {"stored": "the run's own, from its config", "forced": "every switch given"}.get(self.source)
            return f"{self.plan} ({where or 'the built-in defaults: ' + self.why})"
        timed = self.measurement.timed()
        per = "pass" if isinstance(self.shape, InferenceShape) else "step"
        seconds = f"{timed[self.plan]:.3g} s/{per}"
        if self.defaults is not None and self.defaults != self.plan and self.defaults in timed:
            seconds += f" vs {timed[self.defaults]:.3g} for the defaults"
        how = "measured" if self.source == "measured" else "measured earlier"
        where = f"; {'cached in' if self.source == 'measured' else 'from'} {self.cache}" if self.cache else ""
        if self.why:
            where += f"; {self.why}"
        if self.measurement.provisional:
            where += (f"; measured on a busy machine ({self.measurement.load}): it will be measured again when the "
                      "machine is quieter")  # fmt: skip
        return f"{self.plan} ({how}: {seconds}{where})"

    def __str__(self) -> str:
        what = "Inference plan" if isinstance(self.shape, InferenceShape) else "Execution plan"
        return f"{what}: {self.summary()}"

    def rows(self) -> list[list[str]]:
        """The candidates as table rows: plan, s/step, images/s, against the fastest, the chosen mark, a note."""
        header = ["plan", "s/step", "img/s", "vs fastest", "chosen", "note"]
        if self.measurement is None:
            return [header, [str(self.plan), "", "", "", "*", self.summary()]]
        batch = self.shape.batch_size if self.shape is not None else 1
        fastest = min(self.measurement.timed().values())
        body = []
        for t in self.measurement.timings:
            note = t.note or ("the built-in defaults" if t.plan == self.defaults else "")
            cells = ["", "", ""]
            if t.seconds is not None:
                cells = [f"{t.seconds:.3g}", f"{batch / t.seconds:,.0f}", f"{t.seconds / fastest:.2f}x"]
            elif t.first_step is not None:
                note += f" ({t.first_step:.3g} s)"
            body.append([str(t.plan), *cells, "*" if t.plan == self.plan else "", note])
        return [header, *body]


def select_plan(
    shape: ModelShape,
    device: torch.device,
    forced: Mapping[str, Any] | None = None,
    *,
    retune: bool | None = None,
    may_measure: bool = True,
    store: bool = True,
    prune: bool = True,
) -> PlanChoice | None:
    """The fastest plan for a `shape` model on `device` among the `candidates`, from the cache or measured.

    A cached measurement made on a busy machine (`Measurement.provisional`) is used while the machine stays busy
    (`load_now` watches it for a quarter of a second): measuring again under the same load would cost the run
    seconds to a minute for another verdict as unreliable. Once the machine is quieter it is measured again, and
    the new measurement replaces it only if it was made under no more load (`Measurement.better_than`); a busy
    measurement never replaces a quiet one, not even one asked for with `retune`.

    Args:
        retune: measure even if the cache has an answer (default: whether `DCGAN_RETUNE=1`).
        may_measure: when false and nothing is cached, return None instead of measuring.
        store: write a new measurement into the cache.
        prune: see `measure`.
    """
    plans = candidates(device, forced)
    defaults = default_plan(device, forced)
    if len(plans) == 1:
        return PlanChoice(plans[0], "forced")
    return cached_or_measured(
        plans, defaults, PlanCache(), PlanCache.key(shape, device),
        lambda: timing.measure(plans, shape, device, prune=prune),
        retune=retune, may_measure=may_measure, store=store, shape=shape,
    )  # fmt: skip


def cached_or_measured(
    plans: Sequence[ExecutionPlan],
    defaults: ExecutionPlan,
    cache: PlanCache,
    key: dict[str, Any],
    measure: Callable[[], Measurement],
    *,
    retune: bool | None,
    may_measure: bool,
    store: bool,
    shape: ModelShape | InferenceShape,
) -> PlanChoice | None:
    """The choice among `plans` from `cache` under `key`, or from `measure()`; what `select_plan` does for training
    steps, and `dcgan.plan.inference_plan` for forward passes (see `select_plan` for the rules)."""
    if retune is None:
        retune = os.environ.get("DCGAN_RETUNE", "") not in ("", "0")
    cached = cache.find(key, plans)
    found = None if retune else cached
    if found is not None and found.provisional and may_measure:
        now = plan_load.load_now(plans[0].threads)
        if now is None or not now.busy:
            found = None
    if found is None and not may_measure:
        return None
    source, why, written = "cached", "", True
    if found is None:
        fresh = measure()
        if cached is None or fresh.better_than(cached):
            found, source, written = fresh, "measured", store
            if store:
                cache.store(key, fresh)
        elif retune:
            found, source, written = fresh, "measured", False
            quieter = f" ({cached.load})" if cached.load is not None else ""
            why = f"not cached: the cached measurement was made on a quieter machine{quieter}"
        else:
            found = cached  # measured under more load than the cached verdict: that one stays, and is used
    plan = choose(found.timed(plans), found.noise, prefer=defaults)
    return PlanChoice(plan, source, why, measurement=found, defaults=defaults,
                      cache=cache.path if written else None, shape=shape)  # fmt: skip


def plan_for_run(
    config: TrainConfig,
    shape: ModelShape,
    device: torch.device,
    *,
    stored: dict[str, Any] | None,
    resumed: dict[str, Any] | None = None,
    remaining_steps: int,
    distributed: bool = False,
) -> PlanChoice:
    """The plan a run uses (see the module's docstring for the order of the sources).

    Args:
        stored: the plan the run saved in its config, reused with the forced switches.
        resumed: the config dict of the checkpoint being resumed: its plan, or for a run begun before plans were
            measured the built-in defaults it began with.
        remaining_steps: the steps still to run: a measurement must cost under a twentieth of them.
        distributed: under torchrun no rank measures (they would disagree); the cache or the defaults are used.
    """
    forced = forced_by(config)
    if stored is None and resumed is not None:
        stored = resumed.get("plan") or default_plan(device).to_dict()
    if stored is not None:
        # The thread count is this process's (OMP_NUM_THREADS, torch.set_num_threads): a plan records it.
        plan = dataclasses.replace(ExecutionPlan.from_dict(stored), threads=torch.get_num_threads(), **forced)
        resolve_precision(plan.precision, device)
        return PlanChoice(plan, "stored")
    plans = candidates(device, forced)
    defaults = default_plan(device, forced)
    if len(plans) == 1:
        return PlanChoice(plans[0], "forced")
    if os.environ.get("DCGAN_PLAN") == "default":
        return PlanChoice(defaults, "default", "DCGAN_PLAN=default")
    cost = timing.measurement_steps(plans)
    worth = not distributed and remaining_steps >= RUN_TO_MEASUREMENT * cost
    choice = select_plan(shape, device, forced, may_measure=worth)
    if choice is not None:
        return choice
    why = (
        "ranks under torchrun do not measure; `dcgan tune` on one process caches a plan they all use"
        if distributed
        else f"a {remaining_steps}-step run does not pay for measuring {len(plans)} plans; `dcgan tune` caches one"
    )
    return PlanChoice(defaults, "default", why)
