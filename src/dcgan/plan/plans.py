"""What an execution plan is, the candidates worth timing on a device, and the rule that picks one of them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from dcgan.config import TrainConfig
from dcgan.errors import ConfigError
from dcgan.training.speed import resolve_precision

#: Simplest first: what `choose` prefers among plans within the noise of the fastest.
PRECISION_ORDER = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ExecutionPlan:
    """How a training step runs. `str()` names it: "fp32, NCHW, torch convs, 2 threads"."""

    precision: str
    channels_last: bool
    gemm_conv: bool
    compile: bool = False
    threads: int = field(default_factory=torch.get_num_threads)

    def __str__(self) -> str:
        parts = [self.precision, "channels_last" if self.channels_last else "NCHW"]
        parts.append("GEMM convs" if self.gemm_conv else "torch convs")
        if self.compile:
            parts.append("compiled")
        return ", ".join([*parts, f"{self.threads} thread{'s' if self.threads != 1 else ''}"])

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: object) -> ExecutionPlan:
        """A plan from its `to_dict()`; anything else is a `ConfigError`."""
        try:
            plan = cls(**values)  # type: ignore[arg-type]
            ok = plan.precision in PRECISION_ORDER and isinstance(plan.threads, int) and plan.threads >= 1
            ok = ok and all(isinstance(getattr(plan, k), bool) for k in ("channels_last", "gemm_conv", "compile"))
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(f"The config's plan {values!r} is not an execution plan; remove it to let dcgan choose.")
        return plan


@dataclass(frozen=True)
class ModelShape:
    """What a step's speed depends on in the model: the image size, channels, widths and one process's batch."""

    image_size: int
    channels: int
    nz: int
    ngf: int
    ndf: int
    batch_size: int

    @classmethod
    def of(cls, config: TrainConfig, channels: int, world: int = 1) -> ModelShape:
        return cls(config.image_size, channels, config.nz, config.ngf, config.ndf, config.batch_size // world)

    def __str__(self) -> str:
        size = self.image_size
        return f"{size}x{size}x{self.channels}, nz {self.nz}, ngf {self.ngf}, ndf {self.ndf}, batch {self.batch_size}"


@dataclass(frozen=True)
class InferenceShape:
    """What a forward pass's speed depends on: the `work` (which call of which module: "G", "D features"), the
    module's `architecture` (a digest of its parameters' names and shapes), the `inputs`' shapes ("8x100") and
    whether a backward pass to the inputs follows (projection)."""

    work: str
    architecture: str
    inputs: str
    backward: bool = False

    @property
    def batch_size(self) -> int:
        return int(self.inputs.split("x", 1)[0]) if self.inputs[:1].isdigit() else 1

    def __str__(self) -> str:
        return f"{self.work} on {self.inputs}" + (", with its backward pass" if self.backward else "")


def forced_by(config: TrainConfig) -> dict[str, Any]:
    """The switches `config` fixes: a precision other than auto, channels_last and gemm_conv unless None, compile."""
    forced: dict[str, Any] = {"compile": bool(config.compile)}
    if config.precision != "auto":
        forced["precision"] = config.precision
    for name in ("channels_last", "gemm_conv"):
        if getattr(config, name) is not None:
            forced[name] = getattr(config, name)
    return forced


def default_plan(device: torch.device, forced: Mapping[str, Any] | None = None) -> ExecutionPlan:
    """The built-in plan, what dcgan did before it measured: `resolve_precision`'s rule of thumb, channels_last
    and GEMM convolutions; the `forced` switches replace those."""
    forced = dict(forced or {})
    plan = ExecutionPlan(resolve_precision(forced.pop("precision", "auto"), device), True, True)
    return dataclasses.replace(plan, **forced)


def candidates(device: torch.device, forced: Mapping[str, Any] | None = None) -> list[ExecutionPlan]:
    """The plans worth timing on `device` given the switches the user `forced`, the built-in defaults first and
    grouped by precision (the defaults' precision first)."""
    forced = dict(forced or {})
    base = default_plan(device, forced)
    if "precision" in forced:
        precisions = [base.precision]
    elif device.type == "cuda":
        precisions = ["bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp16"]
    else:
        precisions = ["fp32", "bf16"]
    precisions.sort(key=lambda p: p != base.precision)
    layouts = [base.channels_last] if "channels_last" in forced else [base.channels_last, not base.channels_last]
    # The GEMM path only runs on CPU tensors: on a GPU the switch changes nothing, so it is not a candidate there.
    convs = [base.gemm_conv] if "gemm_conv" in forced or device.type != "cpu" else [base.gemm_conv, not base.gemm_conv]
    return [
        dataclasses.replace(base, precision=p, channels_last=c, gemm_conv=g)
        for p in precisions
        for c in layouts
        for g in convs
    ]


def choose(
    timings: Mapping[ExecutionPlan, float], tolerance: float, prefer: ExecutionPlan | None = None
) -> ExecutionPlan:
    """The fastest plan, or the simplest of those within `tolerance` (a fraction) of it: fp32 before bf16 before
    fp16, then the layout and convolution path of `prefer` (the built-in defaults), then the faster.

    Never a plan slower than the fastest by more than `tolerance`.
    """
    if not timings:
        raise ValueError("no timings to choose from")
    fastest = min(timings.values())
    near = [plan for plan, seconds in timings.items() if seconds <= fastest * (1 + tolerance)]

    layout = (prefer.channels_last, prefer.gemm_conv) if prefer is not None else None

    def simplicity(plan: ExecutionPlan) -> tuple[int, bool, float]:
        return PRECISION_ORDER.index(plan.precision), (plan.channels_last, plan.gemm_conv) != layout, timings[plan]

    return min(near, key=simplicity)
