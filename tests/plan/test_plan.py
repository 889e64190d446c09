"""dcgan.plan: the execution plan is the fastest measured one (ties go to the simplest), cached per machine, torch
version and shape, forced switch by switch by flags, stored with the run and reused on resume."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dcgan.plan.cache
import dcgan.plan.load
import dcgan.plan.select
import dcgan.plan.timing
from dcgan import checkpoint as ckpt
from dcgan import gemm_conv
from dcgan.config import TrainConfig
from dcgan.errors import ConfigError
from dcgan.plan import (
    ExecutionPlan,
    Load,
    Measurement,
    ModelShape,
    Timing,
    candidates,
    choose,
    default_plan,
    forced_by,
    measure,
    select_plan,
)
from dcgan.run import resume_config
from dcgan.train import dry_run, train
from tests.conftest import shapes_data, tiny_config

CPU = torch.device("cpu")
SHAPE = ModelShape(16, 1, 8, 8, 8, 32)


def fp32() -> ExecutionPlan:
    """fp32 with the built-in layout (channels_last, GEMM convs); plans are made when a test runs, as they record
    the thread count."""
    return default_plan(CPU, {"precision": "fp32"})


def nchw_torch() -> ExecutionPlan:
    return ExecutionPlan("fp32", channels_last=False, gemm_conv=False)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    for name in ("DCGAN_RETUNE", "DCGAN_PLAN"):
        monkeypatch.delenv(name, raising=False)
    yield


def seconds_by_plan() -> Callable[[ExecutionPlan], float]:
    """A fake machine: fp32 with NCHW and torch's kernels takes 1 s a step, bf16 3 s, any other plan 1.3 s."""
    fastest = nchw_torch()
    return lambda plan: 1.0 if plan == fastest else 3.0 if plan.precision == "bf16" else 1.3


class FakeLoad:
    """The fake machine's load: `others` CPUs of 2 kept busy by other processes (None: unknown); `probes` counts
    the looks `select_plan` takes at it before measuring a provisional plan again."""

    def __init__(self) -> None:
        self.others: float | None = None
        self.probes = 0

    def now(self) -> Load | None:
        return None if self.others is None else Load(self.others, cpus=2, threads=2)


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> FakeLoad:
    fake = FakeLoad()

    def probe(threads: int) -> Load | None:
        fake.probes += 1
        return fake.now()

    monkeypatch.setattr(dcgan.plan.load, "load_now", probe)
    return fake


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch, load: FakeLoad) -> list[tuple[ModelShape, tuple[ExecutionPlan, ...]]]:
    """Replace the timing of plans by the fake machine; the list records each measurement (shape, plans). Under
    load (`load.others` over half a CPU) the timings are garbage, as they were on the 2-core Xeon: every plan 5x
    slower, and the built-in defaults' layout the "fastest"."""
    calls: list[tuple[ModelShape, tuple[ExecutionPlan, ...]]] = []
    cost = seconds_by_plan()

    def fake(plans: Sequence[ExecutionPlan], shape: ModelShape, device: torch.device, **_: object) -> Measurement:
        calls.append((shape, tuple(plans)))
        now = load.now()
        busy = now is not None and now.busy
        seconds = {p: 5.0 * (0.9 if p == fp32() else cost(p)) if busy else cost(p) for p in plans}
        timings = tuple(Timing(p, seconds[p], seconds[p]) for p in plans)
        return Measurement(timings, noise=0.05, seconds=0.1, load=now)

    monkeypatch.setattr(dcgan.plan.timing, "measure", fake)
    return calls


def cache_file() -> Path:
    return dcgan.plan.cache.PlanCache().path


# ------------------------------------------------------------------------------------------- the choice
def test_the_fastest_plan_is_chosen() -> None:
    bf16 = ExecutionPlan("bf16", True, True)
    assert choose({fp32(): 1.0, nchw_torch(): 0.8, bf16: 2.9}, tolerance=0.05) == nchw_torch()
    assert choose({fp32(): 1.0, nchw_torch(): 0.8, bf16: 0.5}, tolerance=0.05) == bf16


def test_within_the_noise_the_simplest_plan_wins() -> None:
    bf16 = ExecutionPlan("bf16", True, True)
    assert choose({fp32(): 1.0, bf16: 0.97}, tolerance=0.05) == fp32(), "fp32 over a bf16 only 3% faster"
    assert choose({fp32(): 1.0, bf16: 0.9}, tolerance=0.05) == bf16, "but not over one 10% faster"
    assert choose({fp32(): 1.02, nchw_torch(): 1.0}, tolerance=0.05, prefer=fp32()) == fp32(), "the defaults' layout"
    assert choose({fp32(): 1.2, nchw_torch(): 1.0}, tolerance=0.05, prefer=fp32()) == nchw_torch()


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.lists(st.floats(0.01, 10), min_size=8, max_size=8),
    tolerance=st.floats(0, 0.2),
)
def test_never_a_plan_slower_than_the_fastest_by_more_than_the_noise(seconds: list[float], tolerance: float) -> None:
    timings = dict(zip(candidates(CPU), seconds))
    chosen = choose(timings, tolerance, prefer=default_plan(CPU))
    assert timings[chosen] <= min(seconds) * (1 + tolerance)


def test_forced_switches_leave_only_the_rest_to_measure() -> None:
    plans = candidates(CPU)
    assert len(plans) == 8 and plans[0] == default_plan(CPU) and {p.precision for p in plans} == {"fp32", "bf16"}
    fp32 = candidates(CPU, {"precision": "fp32"})
    assert len(fp32) == 4 and {p.precision for p in fp32} == {"fp32"}
    layout = candidates(CPU, {"channels_last": False, "gemm_conv": False})
    assert {(p.channels_last, p.gemm_conv) for p in layout} == {(False, False)} and len(layout) == 2
    config = tiny_config(precision="fp32", channels_last=False, gemm_conv=False)
    only = select_plan(SHAPE, CPU, forced_by(config))
    assert only is not None and only.source == "forced" and only.plan == nchw_torch()
    assert all(p.compile for p in candidates(CPU, forced_by(tiny_config(compile=True))))


def test_old_configs_still_load_and_force_what_they_say() -> None:
    old = TrainConfig.from_dict({"precision": "auto", "channels_last": True, "gemm_conv": False})
    assert forced_by(old) == {"compile": False, "channels_last": True, "gemm_conv": False}
    with pytest.raises(ConfigError, match="not an execution plan"):
        TrainConfig(plan={"precision": "fp64", "channels_last": True, "gemm_conv": True}).validate()


# ------------------------------------------------------------------------------------------- measuring
def test_measuring_prunes_a_slow_precision_and_times_the_rest_interleaved() -> None:
    """A fake clock: each step advances it by its plan's cost. bf16 (3x) is dropped after one warm-up step."""
    now = [0.0]
    built: list[ExecutionPlan] = []
    cost = seconds_by_plan()

    def stepper(plan: ExecutionPlan, shape: ModelShape, device: torch.device) -> Callable[[], None]:
        if shape == SHAPE:
            built.append(plan)
        return lambda: now.__setitem__(0, now[0] + cost(plan) * shape.batch_size / SHAPE.batch_size)

    # fp32's plans first, as on a CPU whose built-in default is fp32 (one with AVX-512-bf16 or AMX lists bf16 first)
    fp32_first = sorted(candidates(CPU), key=lambda p: p.precision != "fp32")
    result = measure(fp32_first, SHAPE, CPU, stepper=stepper, clock=lambda: now[0])
    assert [p.precision for p in built] == ["fp32", "bf16", "fp32", "fp32", "fp32"], "one bf16 plan, no more"
    assert result.timed() == pytest.approx({p: cost(p) for p in candidates(CPU, {"precision": "fp32"})})
    assert result.noise == dcgan.plan.timing.NOISE_FLOOR, "identical rounds: the smallest tolerance"
    skipped = [t for t in result.timings if t.seconds is None]
    assert len(skipped) == 4 and all("2.3x" in t.note for t in skipped), "3.0 s against the fp32 default's 1.3"
    assert choose(result.timed(), result.noise, prefer=default_plan(CPU)) == nchw_torch()
    everything = measure(fp32_first, SHAPE, CPU, stepper=stepper, clock=lambda: now[0], prune=False)
    assert len(everything.timed()) == 8


def test_a_precision_far_slower_on_a_small_batch_is_never_run_at_full_size() -> None:
    """bf16 emulated on an AVX2 CPU: 60x fp32's time. Two steps of 2 images in each precision tell it, and no
    bf16 plan takes a step at the run's batch; a precision 3x slower (AVX-512 without bf16) still gets its full
    warm-up step, and the probe is skipped where there is one precision or the batch is already small."""
    now = [0.0]
    full: list[ExecutionPlan] = []
    small: list[ExecutionPlan] = []
    tiny = ModelShape(8, 1, 8, 8, 8, 2)  # a batch no larger than the probe's

    def machine(bf16_cost: float) -> Callable[[ExecutionPlan, ModelShape, torch.device], Callable[[], None]]:
        def stepper(plan: ExecutionPlan, shape: ModelShape, device: torch.device) -> Callable[[], None]:
            if shape.batch_size == dcgan.plan.timing.PROBE_BATCH and shape != tiny:
                small.append(plan)
            elif shape == SHAPE:
                full.append(plan)
            cost = (bf16_cost if plan.precision == "bf16" else 1.0) * shape.batch_size / SHAPE.batch_size
            return lambda: now.__setitem__(0, now[0] + cost)

        return stepper

    result = measure(candidates(CPU), SHAPE, CPU, stepper=machine(60.0), clock=lambda: now[0])
    assert sorted(p.precision for p in small) == ["bf16", "fp32"], "one probe per precision"
    assert {p.precision for p in full} == {"fp32"}, "no bf16 step at the run's batch"
    bf16 = [t for t in result.timings if t.plan.precision == "bf16"]
    assert len(bf16) == 4 and all(t.seconds is None and t.first_step is None for t in bf16)
    assert all("a step of 2 images in bf16 took 60x" in t.note for t in bf16), bf16[0].note
    assert len(result.timed()) == 4 and now[0] < 2 * 60 * 2 / 32 + 30, "the probe cost 2 steps of 2 images"
    full.clear()
    small.clear()
    three = measure(candidates(CPU), SHAPE, CPU, stepper=machine(3.0), clock=lambda: now[0])
    assert "bf16" in {p.precision for p in full}, "3x is left to the full warm-up step"
    assert all("warm-up" in t.note for t in three.timings if t.plan.precision == "bf16")
    small.clear()
    measure(candidates(CPU, {"precision": "fp32"}), SHAPE, CPU, stepper=machine(60.0), clock=lambda: now[0])
    measure(candidates(CPU), tiny, CPU, stepper=machine(60.0), clock=lambda: now[0])
    assert not small, "no probe for one precision, nor for a batch no larger than the probe's"


def test_a_real_measurement_leaves_the_process_as_it_was() -> None:
    from dcgan.gemm_conv import use_gemm_conv

    before = torch.random.get_rng_state()
    gemm = use_gemm_conv(False)
    try:
        result = measure(candidates(CPU, {"precision": "fp32", "channels_last": True}), SHAPE, CPU)
        assert not use_gemm_conv(False), "the GEMM switch is put back"
    finally:
        use_gemm_conv(gemm)
    assert torch.equal(torch.random.get_rng_state(), before), "measuring does not move the global RNG"
    assert len(result.timed()) == 2 and all(s > 0 for s in result.timed().values())


# ------------------------------------------------------------------------------------------- the cache
def test_the_cache_is_keyed_by_shape_torch_version_kernels_and_machine(
    measured: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = select_plan(SHAPE, CPU)
    assert first is not None and first.source == "measured" and first.plan == nchw_torch()
    again = select_plan(SHAPE, CPU)
    assert again is not None and again.source == "cached" and again.plan == nchw_torch() and len(measured) == 1
    assert select_plan(SHAPE, CPU, {"precision": "fp32"}) is not None and len(measured) == 1, "a subset is covered"
    select_plan(ModelShape(32, 1, 8, 8, 8, 32), CPU)
    assert len(measured) == 2, "another shape is measured"
    monkeypatch.setattr(torch, "__version__", "99.0")
    select_plan(SHAPE, CPU)
    assert len(measured) == 3, "another torch version is measured"
    monkeypatch.setattr(dcgan.plan.cache, "machine", lambda device: {"cpu": "another"})
    select_plan(SHAPE, CPU)
    assert len(measured) == 4, "another machine is measured"
    monkeypatch.setattr(gemm_conv, "KERNELS", gemm_conv.KERNELS + 1)
    select_plan(SHAPE, CPU)
    assert len(measured) == 5, "a plan measured with an older version of dcgan's kernels is measured again"
    monkeypatch.setenv("DCGAN_RETUNE", "1")
    select_plan(SHAPE, CPU)
    assert len(measured) == 6, "DCGAN_RETUNE=1 measures again"


def test_a_corrupt_cache_warns_and_is_measured_over(measured: list[object], tmp_path: Path) -> None:
    path = tmp_path / "cache" / "plans.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "entries": [')
    with pytest.warns(UserWarning, match="plan cache .* is unreadable"):
        choice = select_plan(SHAPE, CPU)
    assert choice is not None and choice.source == "measured" and len(measured) == 1
    assert json.loads(path.read_text())["entries"], "rewritten whole"
    assert select_plan(SHAPE, CPU, may_measure=False) is not None and len(measured) == 1


# ------------------------------------------------------------------------------------------- a busy machine
def test_measuring_records_the_cpu_time_other_processes_took() -> None:
    """A fake clock and CPU meter: our 2 threads use 2 CPUs of 2; others take `others` CPUs more."""
    now = [0.0]
    step = lambda: now.__setitem__(0, now[0] + 0.5)
    plans = candidates(CPU, {"precision": "fp32"})

    def measured_under(others: float) -> Measurement:
        def sampler() -> dcgan.plan.load.CpuTimes:
            return dcgan.plan.load.CpuTimes(now[0], busy=(2 + others) * now[0], own=2 * now[0], cpus=2)

        return measure(plans, SHAPE, CPU, stepper=lambda *_: step, clock=lambda: now[0], sampler=sampler)

    busy = measured_under(1.5)
    assert busy.load is not None and busy.load.others == pytest.approx(1.5) and busy.provisional
    assert Measurement.from_dict(json.loads(json.dumps(busy.to_dict()))) == busy, "the load is kept in the cache"
    quiet = measured_under(0.1)
    assert quiet.load is not None and quiet.load.others == pytest.approx(0.1) and not quiet.provisional
    assert not measured_under(0.4).provisional and measured_under(0.6).provisional, "the line: half a CPU of 2"
    assert not Load(0.2, cpus=2, threads=8).busy, "threads beyond the CPUs are not counted as needing them"
    assert not measure(plans, SHAPE, CPU, stepper=lambda *_: step, clock=lambda: now[0], sampler=lambda: None).load
    real = dcgan.plan.load.cpu_times()
    assert real is not None and real.cpus == len(os.sched_getaffinity(0)) and real.busy > 0


def test_a_plan_measured_on_a_busy_machine_is_provisional_and_measured_again_when_it_is_quiet(
    measured: list[object], load: FakeLoad, capsys: pytest.CaptureFixture[str]
) -> None:
    load.others = 1.9
    busy = select_plan(SHAPE, CPU)
    assert busy is not None and busy.plan == fp32() and busy.measurement is not None and busy.measurement.provisional
    busy_line = "measured on a busy machine (other processes kept 1.9 of 2 CPUs busy): it will be measured again"
    assert busy_line in str(busy)
    entry = json.loads(cache_file().read_text())["entries"][-1]
    assert entry["provisional"] and entry["measurement"]["load"]["others"] == 1.9
    still = select_plan(SHAPE, CPU)
    assert still is not None and still.source == "cached" and still.plan == fp32() and len(measured) == 1
    assert load.probes == 1, "still busy: the provisional plan is used, not measured again for another bad verdict"
    load.others = 0.05
    short = select_plan(SHAPE, CPU, may_measure=False)
    assert short is not None and short.plan == fp32() and load.probes == 1, "a run too short to measure uses it"
    quiet = select_plan(SHAPE, CPU)
    assert quiet is not None and quiet.source == "measured" and quiet.plan == nchw_torch() and len(measured) == 2
    assert not quiet.measurement.provisional and "busy machine" not in str(quiet)
    again = select_plan(SHAPE, CPU)
    assert again is not None and again.source == "cached" and again.plan == nchw_torch() and len(measured) == 2
    assert load.probes == 2, "a quiet verdict is final: no look at the load, no measuring"
    assert select_plan(SHAPE, CPU, may_measure=False) is not None and load.probes == 2


def test_a_busy_measurement_never_replaces_a_quieter_one(measured: list[object], load: FakeLoad) -> None:
    load.others = 0.1
    select_plan(SHAPE, CPU)
    load.others = 1.9
    retuned = select_plan(SHAPE, CPU, retune=True)
    assert retuned is not None and retuned.source == "measured" and len(measured) == 2, "tune shows what it measured"
    assert retuned.cache is None and "not cached: the cached measurement was made on a quieter machine" in str(retuned)
    kept = select_plan(SHAPE, CPU)
    assert kept is not None and kept.source == "cached" and kept.plan == nchw_torch() and len(measured) == 2

    cache_file().unlink()
    load.others = 1.0
    select_plan(SHAPE, CPU)
    load.others = 1.9
    worse = select_plan(SHAPE, CPU, retune=True)
    assert worse is not None and worse.cache is None, "busier than the provisional one: not cached either"
    assert json.loads(cache_file().read_text())["entries"][-1]["measurement"]["load"]["others"] == 1.0
    load.others = 0.9
    better = select_plan(SHAPE, CPU, retune=True)
    assert better is not None and better.cache is not None, "a less busy one replaces a provisional one"
    assert json.loads(cache_file().read_text())["entries"][-1]["measurement"]["load"]["others"] == 0.9


# ------------------------------------------------------------------------------------------- a run's plan
def test_a_run_stores_its_plan_and_a_resume_reuses_it_without_timing(
    measured: list[object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(dcgan.plan.select, "RUN_TO_MEASUREMENT", 0)  # a tiny run measures as a long one would
    out = tmp_path / "run"
    train(tiny_config(precision="auto", steps=4, checkpoint_every=2), out, data=shapes_data(), progress=False)
    assert len(measured) == 1
    assert "Execution plan: fp32, NCHW, torch convs" in capsys.readouterr().out
    assert TrainConfig.load(out / "config.json").plan == nchw_torch().to_dict()
    assert ckpt.load(out)["config"]["plan"] == nchw_torch().to_dict()

    train(resume_config(out, steps=6), out, resume=True, data=shapes_data(), progress=False)
    train(tiny_config(precision="auto", steps=8), out, resume=True, data=shapes_data(), progress=False)
    assert len(measured) == 1, "resumes reuse the stored plan: nothing is timed"
    assert "the run's own" in capsys.readouterr().out
    assert ckpt.load(out)["config"]["plan"] == nchw_torch().to_dict()


def test_the_measured_plan_trains_exactly_what_its_flags_train(
    measured: list[object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dcgan.plan.select, "RUN_TO_MEASUREMENT", 0)
    train(tiny_config(precision="auto", steps=4), tmp_path / "auto", data=shapes_data(), progress=False)
    forced = tiny_config(precision="fp32", channels_last=False, gemm_conv=False, steps=4)
    train(forced, tmp_path / "flags", data=shapes_data(), progress=False)
    assert len(measured) == 1, "every switch forced: nothing to measure"
    a, b = ckpt.load(tmp_path / "auto"), ckpt.load(tmp_path / "flags")
    for part in ("generator", "discriminator"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


def test_short_runs_and_dcgan_plan_default_do_not_measure(
    measured: list[object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    train(tiny_config(precision="auto", steps=4), tmp_path / "short", data=shapes_data(), progress=False)
    assert not measured
    assert "the built-in defaults: a 4-step run does not pay for measuring" in capsys.readouterr().out
    assert TrainConfig.load(tmp_path / "short" / "config.json").plan == default_plan(CPU).to_dict()
    monkeypatch.setattr(dcgan.plan.select, "RUN_TO_MEASUREMENT", 0)
    monkeypatch.setenv("DCGAN_PLAN", "default")
    train(tiny_config(precision="auto", steps=4), tmp_path / "env", data=shapes_data(), progress=False)
    assert not measured and "DCGAN_PLAN=default" in capsys.readouterr().out


def test_a_run_begun_before_plans_resumes_with_the_defaults_it_began_with(
    measured: list[object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    train(tiny_config(steps=4, checkpoint_every=2), out, data=shapes_data(), progress=False)
    for path in ckpt.list_checkpoints(out):  # as an older dcgan wrote them: no plan
        state = ckpt.load(path)
        del state["config"]["plan"]
        ckpt.atomic_save(state, path)
    monkeypatch.setattr(dcgan.plan.select, "RUN_TO_MEASUREMENT", 0)
    train(tiny_config(precision="auto", steps=6), out, resume=True, data=shapes_data(), progress=False)
    assert not measured
    assert ckpt.load(out)["config"]["plan"] == default_plan(CPU).to_dict()


def test_the_dry_run_shows_the_plan(measured: list[object], tmp_path: Path) -> None:
    report = dry_run(tiny_config(precision="fp32", channels_last=False, gemm_conv=False), tmp_path / "run",
                     data=shapes_data())  # fmt: skip
    assert "plan        fp32, NCHW, torch convs" in str(report) and "every switch given" in str(report)
    assert not (tmp_path / "run").exists()
