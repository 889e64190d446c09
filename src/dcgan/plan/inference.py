"""The plan forward passes run under: precision, memory layout and convolution path, timed on the real module.

Sampling, evaluation, dedup hashing, projection, the web server and the probe's features each run a trained module
forward many times, and which way is fastest depends on the machine as much as for training: on the 2-core Xeon
without AMX bf16 is emulated and 3x slower than fp32, while AMX CPUs and GPUs run it several times faster; and G's
forward pass in NCHW through the GEMM convolutions (what sampling did before) took several times as long as in
channels_last (what the web server did) in one rough timing there. So `inference_plan` times a few passes of the
module itself on `MEASURE_BATCH` rows of its real inputs under each candidate, with the training plans' rounds,
pruning and load watch (`dcgan.plan.timing.measure`, in shorter rounds), keeps the fastest (ties to fp32, then the
defaults' layout) and caches it per machine, torch version, device and shape in `cache_dir()/inference.json`. A
measurement made on a busy machine is provisional and measured again on a quiet one, as training's are.

The candidates: fp32 and bf16 (on a GPU only where it has bf16); channels_last and NCHW where the module has 4-D
weights; the GEMM and torch's convolutions where it has `dcgan.gemm_conv` layers and runs on the CPU. The built-in
defaults, what these paths did before they were measured: fp32, NCHW, GEMM convolutions. `DCGAN_PLAN=default` uses
them without measuring; `DCGAN_RETUNE=1` measures again; a caller's `forced` switches (`dcgan probe --precision`)
leave only the rest to measure.

An fp32 plan computes the same function: another layout or convolution path only sums in another order (within
1e-5 of the defaults, `tests/plan/test_inference.py`), and the defaults give exactly what these paths gave before. A
bf16 plan rounds to bf16's 8 bits of mantissa; the paths whose results must not carry that force fp32 (evaluation,
projection: see their modules).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dcgan.data.cache import cache_dir
from dcgan.errors import ConfigError
from dcgan.gemm_conv import Conv2d, ConvTranspose2d, gemm_conv_path
from dcgan.models import Generator
from dcgan.plan import timing
from dcgan.plan.cache import PlanCache
from dcgan.plan.plans import PRECISION_ORDER, ExecutionPlan, InferenceShape
from dcgan.plan.select import PlanChoice, cached_or_measured
from dcgan.plan.timing import Stepper

#: Rows of the inputs each candidate is timed on: enough that a pass is mostly arithmetic, few enough that choosing
#: among G's 4 fp32 plans at 64x64 costs well under a second on a 2-core CPU.
MEASURE_BATCH = 8
#: A round of timed passes lasts at least this long (training steps: `timing.ROUND_SECONDS`).
ROUND_SECONDS = 0.03
CACHE_FILE = "inference.json"

#: This process's choices, so that a path asking again (each request of a server, each chunk) neither re-reads the
#: cache nor watches the load again.
_CHOSEN: dict[str, PlanChoice] = {}

Call = Callable[..., torch.Tensor]


def default_inference_plan(forced: Mapping[str, Any] | None = None) -> ExecutionPlan:
    """What forward passes ran under before they were measured: fp32, NCHW, GEMM convolutions; `forced` replaces
    those switches."""
    return dataclasses.replace(ExecutionPlan("fp32", channels_last=False, gemm_conv=True), **dict(forced or {}))


def inference_candidates(
    device: torch.device, forced: Mapping[str, Any] | None = None, *, layouts: bool = True, convs: bool = True
) -> list[ExecutionPlan]:
    """The plans worth timing for a module on `device`, the defaults first: precisions x layouts (if `layouts`:
    the module has 4-D weights) x convolution paths (if `convs`: it has GEMM layers and runs on the CPU)."""
    forced = dict(forced or {})
    base = default_inference_plan(forced)
    if "precision" in forced:
        precisions = [base.precision]
    elif device.type == "cuda" and not torch.cuda.is_bf16_supported():
        precisions = ["fp32"]
    else:
        precisions = ["fp32", "bf16"]
    layout = [base.channels_last] if "channels_last" in forced or not layouts else [False, True]
    conv = [base.gemm_conv] if "gemm_conv" in forced or not convs or device.type != "cpu" else [True, False]
    return [dataclasses.replace(base, precision=p, channels_last=c, gemm_conv=g)
            for p in precisions for c in layout for g in conv]  # fmt: skip


def architecture(module: nn.Module) -> str:
    """A digest of the module's class and its parameters' and buffers' names and shapes (not their values)."""
    parts = [type(module).__name__, *(f"{n}:{tuple(t.shape)}" for n, t in module.state_dict().items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def inference_plan(
    module: nn.Module,
    inputs: Sequence[torch.Tensor],
    *,
    work: str,
    call: Call | None = None,
    backward: bool = False,
    forced: Mapping[str, Any] | None = None,
    retune: bool | None = None,
) -> PlanChoice:
    """The fastest plan for `call(module, *inputs)` (default `module(*inputs)`) on the module's device, from this
    process's earlier answer, the cache, or timed now (about 10-20 passes at `MEASURE_BATCH` rows).

    Args:
        inputs: real inputs (their first rows are used, repeated if fewer than `MEASURE_BATCH`).
        work: what the pass is, for the cache key and the plan line ("G", "D features").
        backward: time the pass with a backward pass to the floating-point inputs (projection).
        forced: switches the caller fixes (`{"precision": "fp32"}`).
        retune: measure even if the cache has an answer (default: whether `DCGAN_RETUNE=1`).
    """
    device = _device(module)
    forced = dict(forced or {})
    example = tuple(_rows(x, MEASURE_BATCH) for x in inputs)
    inputs_shape = ";".join("x".join(str(d) for d in x.shape) for x in example)
    shape = InferenceShape(work, architecture(module), inputs_shape, backward)
    weights = [p for p in module.parameters() if p.dim() == 4]
    gemm = any(isinstance(m, (Conv2d, ConvTranspose2d)) for m in module.modules())
    plans = inference_candidates(device, forced, layouts=bool(weights), convs=gemm)
    defaults = default_inference_plan(forced)
    if len(plans) == 1:
        return PlanChoice(plans[0], "forced", shape=shape)
    if os.environ.get("DCGAN_PLAN") == "default":
        return PlanChoice(defaults, "default", "DCGAN_PLAN=default", shape=shape)
    cache = PlanCache(cache_dir() / CACHE_FILE)
    key = PlanCache.key(shape, device)
    if retune is None:
        retune = os.environ.get("DCGAN_RETUNE", "") not in ("", "0")
    memo = json.dumps([str(cache.path), key, sorted(forced.items()), retune], sort_keys=True, default=str)
    if memo not in _CHOSEN:
        stepper = _stepper(module, example, call, backward)
        choice = cached_or_measured(
            plans, defaults, cache, key,
            lambda: timing.measure(plans, shape, device, stepper=stepper, round_seconds=ROUND_SECONDS),
            retune=retune, may_measure=True, store=True, shape=shape,
        )  # fmt: skip
        assert choice is not None  # may_measure: there is always an answer
        _CHOSEN[memo] = choice
    return _CHOSEN[memo]


def generator_plan(
    generator: Generator, *, backward: bool = False, forced: Mapping[str, Any] | None = None
) -> PlanChoice:
    """The plan for G's forward pass (sampling, evaluation's samples, the web server) or, with `backward`, its
    forward and backward pass to z (projection). A class-conditional G is timed with labels."""
    classes = int(getattr(generator, "num_classes", 0) or 0)
    device = _device(generator)
    z = (torch.rand(MEASURE_BATCH, generator.nz, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    inputs = (z, torch.zeros(MEASURE_BATCH, dtype=torch.long, device=device)) if classes else (z,)
    return inference_plan(generator, inputs, work="G", backward=backward, forced=forced)


def resolve_generator_plan(generator: Generator, plan: ExecutionPlan | str | None) -> ExecutionPlan | None:
    """A path's `plan` argument as a plan: "auto" -> `generator_plan`'s, "fp32" or "bf16" -> the fastest with
    that precision, a plan -> itself, None -> None (G as it is, fp32, as before plans)."""
    if plan is None or isinstance(plan, ExecutionPlan):
        return plan
    if plan == "auto":
        return generator_plan(generator).plan
    if plan in PRECISION_ORDER:
        return generator_plan(generator, forced={"precision": plan}).plan
    raise ConfigError(f"plan must be auto, {', '.join(PRECISION_ORDER)} or an ExecutionPlan, got {plan!r}.")


def precision_of(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextlib.contextmanager
def running(plan: ExecutionPlan, device: str | torch.device = "cpu") -> Iterator[None]:
    """Forward passes in this block run under `plan`'s precision (autocast) and convolution path (this thread
    only). The modules' and inputs' layout is the caller's: `in_layout`, or `applied` for both."""
    device = torch.device(device)
    with contextlib.ExitStack() as stack:
        stack.enter_context(gemm_conv_path(plan.gemm_conv))
        if plan.precision != "fp32":
            stack.enter_context(torch.autocast(device.type, dtype=precision_of(plan.precision)))
        yield


def in_layout(x: torch.Tensor, plan: ExecutionPlan) -> torch.Tensor:
    """A 4-D input in the plan's memory layout (the same values); any other tensor as it is."""
    return x.contiguous(memory_format=plan.memory_format) if x.dim() == 4 else x


@contextlib.contextmanager
def applied(module: nn.Module, plan: ExecutionPlan | None) -> Iterator[nn.Module]:
    """The module in the plan's layout, run under `running(plan)`, and put back in its own layout afterwards (two
    copies of its weights, unless it is in the plan's layout already). None: the module as it is, as before plans.

    Not for a module other threads run meanwhile: the web server puts its G in the plan's layout once instead.
    """
    if plan is None:
        yield module
        return
    weights = [p for p in module.parameters() if p.dim() == 4]
    own = torch.channels_last if weights and _is_channels_last(weights[0]) else torch.contiguous_format
    if weights and own != plan.memory_format:
        module.to(memory_format=plan.memory_format)
    try:
        with running(plan, _device(module)):
            yield module
    finally:
        if weights and own != plan.memory_format:
            module.to(memory_format=own)


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _device(module: nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """The first n rows of x, repeated when it has fewer."""
    if x.shape[0] >= n or x.shape[0] == 0:
        return x[:n]
    return x.repeat(-(-n // x.shape[0]), *([1] * (x.dim() - 1)))[:n]


def _stepper(
    module: nn.Module, example: tuple[torch.Tensor, ...], call: Call | None, backward: bool
) -> Callable[[ExecutionPlan, Any, torch.device], Stepper]:
    """Builds each candidate's pass: a copy of the module in the plan's layout (the caller's is never touched) on
    the inputs in that layout, waited for."""
    run: Call = call or (lambda m, *xs: m(*xs))

    def make(plan: ExecutionPlan, shape: Any, device: torch.device) -> Stepper:
        own = copy.deepcopy(module).eval().requires_grad_(False).to(memory_format=plan.memory_format)
        args = [in_layout(x, plan) for x in example]

        def step() -> None:
            with running(plan, device), torch.set_grad_enabled(backward):
                xs = [x.detach().requires_grad_(True) if backward and x.is_floating_point() else x for x in args]
                out = run(own, *xs).float()
                if backward:
                    out.sum().backward()
                out.sum().item()  # waits for the device

        return step

    return make


__all__ = [
    "MEASURE_BATCH",
    "applied",
    "default_inference_plan",
    "generator_plan",
    "in_layout",
    "inference_candidates",
    "inference_plan",
    "resolve_generator_plan",
    "running",
]
