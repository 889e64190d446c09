"""The execution plan: how a training step runs on this machine, chosen by timing it rather than by a rule.

A plan is the precision (fp32, or bf16/fp16 autocast), the memory layout (channels_last or NCHW), the
convolution path (`dcgan.gemm_conv`'s matrix products or torch's kernels), torch.compile, and the thread count
it was measured with. Which is fastest depends on the machine more than on anything a rule can read from it:
the speed work was done on CPUs with AMX, where bf16 + channels_last + GEMM convolutions is the fastest by far;
on this project's later 2-core Xeons (AVX-512 without AMX or AVX-512-bf16) bf16 is emulated and 3x slower than
fp32 in every layout, and fp32 with torch's NCHW kernels beats the GEMM path (72 against 64 images/s at 64x64,
batch 128); on a 2-core AMD EPYC with AVX-512-bf16 but no AMX, bf16 is again the fastest (156 against 89 images/s
for the best fp32 plan); on a 2-core AMD EPYC with AVX2 only (no AVX-512), bf16 runs 60x slower than fp32. So
`precision="auto"` (the default) means: time a few real training steps of each candidate on the run's own model
shape and device, keep the fastest, and cache the answer per machine, torch version and shape.

The thread count is not a candidate: it is the process's (OMP_NUM_THREADS, `torch.set_num_threads`), recorded in
the plan and part of what the cache matches. On a 2-core machine shared with another job, one thread can be many
times faster than two for a small model, but that is the load of the moment, which a cached plan must not keep.

How the plan is chosen:

- `candidates`: every combination of the switches the user did not force: on CPUs fp32 and bf16 (measured,
  never assumed) x layout x convolution path; on GPUs bf16 (where supported) and fp16 x layout. compile is not a
  candidate (its warm-up takes minutes): it is on only when asked for, and the candidates are then timed eager.
- `measure`: first each precision's first plan takes two steps of `PROBE_BATCH` (2) images, and a precision that
  takes over `PROBE_RATIO` (8) times the fastest's there is not timed at full size (bf16 on AVX2: its one full step
  alone cost 110 s). Then, after one warm-up step for the process, each candidate runs a first step, the first
  plan of each precision first; a precision whose first step takes over `PRUNE_RATIO` (2) times the fastest is not
  explored further (bf16 on the Xeon without AMX: 3x slower in every layout). The rest are timed in `ROUNDS` (2)
  interleaved rounds of real training steps (`Trainer.train_step` on random images; the first step is the first
  round when it takes 0.1 s or more), the best round kept, so that a slow spell of a shared machine hits every
  candidate alike.
- `choose`: the fastest; among plans within the measurement noise of it (the spread between the rounds, at least
  2% and at most 10%), the simplest: fp32 before bf16 before fp16, then the built-in defaults' layout. Never a
  plan slower than the fastest by more than the noise.

Where a run's plan comes from (`plan_for_run`), first match wins: the plan the run stored (a resume replays
exactly), every switch forced, `DCGAN_PLAN=default` (the built-in defaults, no measuring), the cache
(`cache_dir()/plans.json`), a measurement (when the run is long enough to pay for it), the built-in defaults.
`DCGAN_RETUNE=1` or `dcgan tune` measures again.

A measurement records the CPU time other processes took meanwhile (`dcgan.plan.load`); one made while they left
its threads under 3/4 of the CPU they needed is provisional: used, said so, and measured again by a later run that
finds the machine quieter, replacing it only if it was made under no more load.

Forward-only work (sampling, evaluation, dedup hashing, projection, the web server, the probe's features) has its
own plan, timed on a few passes of the module it runs: `dcgan.plan.inference`.
"""

from dcgan.plan.cache import PlanCache, machine
from dcgan.plan.inference import applied, generator_plan, inference_plan, running
from dcgan.plan.load import Load
from dcgan.plan.plans import ExecutionPlan, InferenceShape, ModelShape, candidates, choose, default_plan, forced_by
from dcgan.plan.select import PlanChoice, plan_for_run, select_plan
from dcgan.plan.timing import Measurement, Timing, measure, plan_stepper

__all__ = [
    "ExecutionPlan",
    "InferenceShape",
    "Load",
    "Measurement",
    "ModelShape",
    "PlanCache",
    "PlanChoice",
    "Timing",
    "applied",
    "candidates",
    "choose",
    "default_plan",
    "forced_by",
    "generator_plan",
    "inference_plan",
    "machine",
    "measure",
    "plan_for_run",
    "plan_stepper",
    "running",
    "select_plan",
]
