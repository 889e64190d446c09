"""dcgan.plan.inference: forward passes run under the plan timed fastest on the real module, cached per machine,
torch version and shape; an fp32 plan computes what sampling computed before (exactly for the defaults, to 1e-5 in
another layout or convolution path), and every hot path asks for its plan."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import dcgan.gemm_conv
import dcgan.plan.inference
import dcgan.plan.load
import dcgan.plan.timing
from dcgan.models import Generator
from dcgan.plan import ExecutionPlan, InferenceShape, Load, generator_plan
from dcgan.plan.inference import default_inference_plan, inference_candidates
from dcgan.sample import generate, latents, to_uint8, write_samples
from tests.conftest import shapes_data

CPU = torch.device("cpu")


def fastest() -> ExecutionPlan:
    """The fake machine's fastest plan: fp32, channels_last, torch's convolutions."""
    return ExecutionPlan("fp32", channels_last=True, gemm_conv=False)


class FakeMachine:
    """Each pass advances a fake clock by its plan's cost: `fastest()` 1 s, bf16 `bf16` s, any other plan 1.3 s.
    `others` CPUs of 2 are kept busy by other processes meanwhile; `measured` lists what was timed."""

    def __init__(self) -> None:
        self.now = 0.0
        self.bf16 = 3.0
        self.others = 0.0
        self.measured: list[InferenceShape] = []

    def cost(self, plan: ExecutionPlan) -> float:
        return self.bf16 if plan.precision == "bf16" else 1.0 if plan == fastest() else 1.3

    def cpu_times(self) -> dcgan.plan.load.CpuTimes:
        return dcgan.plan.load.CpuTimes(self.now, busy=(2 + self.others) * self.now, own=2 * self.now, cpus=2)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    for name in ("DCGAN_RETUNE", "DCGAN_PLAN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dcgan.plan.inference, "_CHOSEN", {})
    yield


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> FakeMachine:
    """The real `measure` (first passes, pruning, rounds, load) on the fake machine's clock and CPU meter."""
    fake = FakeMachine()
    real = dcgan.plan.timing.measure

    def measure(plans: Sequence[ExecutionPlan], shape: InferenceShape, device: torch.device, **options: Any) -> Any:
        fake.measured.append(shape)

        def stepper(plan: ExecutionPlan, shape: object, device: torch.device) -> Callable[[], None]:
            return lambda: setattr(fake, "now", fake.now + fake.cost(plan))

        options.update(stepper=stepper, clock=lambda: fake.now, sampler=fake.cpu_times)
        return real(plans, shape, device, **options)

    monkeypatch.setattr(dcgan.plan.timing, "measure", measure)
    return fake


def forget() -> None:
    """A new process: this one's answers are forgotten, the cache on disk is not."""
    dcgan.plan.inference._CHOSEN.clear()


# ------------------------------------------------------------------------------------------- same results
def test_the_defaults_sample_exactly_as_before_and_every_fp32_plan_to_1e_5(monkeypatch: pytest.MonkeyPatch) -> None:
    """G at 32x32 takes the GEMM path in its first three layers and torch's in the last: every switch matters."""
    torch.manual_seed(0)
    g = Generator(32, 3, nz=16, ngf=8).eval()
    z = latents(20, 16, "uniform", seed=0)
    with torch.no_grad():
        before = g(z)  # what `generate` computed before plans: G as it is, the process's GEMM switch (on)
    assert torch.equal(generate(g, z), before), "no plan: as before"
    assert torch.equal(generate(g, z, plan=default_inference_plan()), before), "the defaults: exactly as before"

    layouts: list[bool] = []
    hook = g.blocks[-1][0].register_forward_pre_hook(  # type: ignore[index]
        lambda m, args: layouts.append(not m.weight.is_contiguous())  # channels_last weights: not contiguous
    )
    gemm_used: list[bool] = []
    path = dcgan.gemm_conv._path
    monkeypatch.setattr(dcgan.gemm_conv, "_path", lambda m, x: gemm_used.append(path(m, x) is not None) or path(m, x))
    fp32 = inference_candidates(CPU, {"precision": "fp32"})
    assert len(fp32) == 4
    for plan in fp32:
        layouts.clear()
        gemm_used.clear()
        out = generate(g, z, plan=plan)
        torch.testing.assert_close(out, before, atol=1e-5, rtol=0, msg=str(plan))
        assert layouts == [plan.channels_last], f"{plan}: G's weights are in the plan's layout while it runs"
        assert any(gemm_used) == plan.gemm_conv, f"{plan}: the plan's convolution path"
    hook.remove()
    assert all(p.is_contiguous() for p in g.parameters()), "G is put back in its own layout"
    assert dcgan.gemm_conv._enabled, "the process-wide GEMM switch is left alone"

    bf16 = generate(g, z, plan=ExecutionPlan("bf16", False, True))
    assert not torch.equal(bf16, before) and float((bf16 - before).abs().max()) < 0.05, "bf16: rounded, no more"


# ------------------------------------------------------------------------------------------- the choice
def test_the_fastest_plan_is_chosen_and_cached_per_shape_and_work(machine: FakeMachine) -> None:
    g = Generator(16, 1, nz=8, ngf=8)
    choice = generator_plan(g)
    assert choice.source == "measured" and choice.plan == fastest()
    assert str(choice).startswith("Inference plan: fp32, channels_last, torch convs") and "1 s/pass" in str(choice)
    assert choice.measurement is not None and len(choice.measurement.timed()) == 4, "bf16 (3x) pruned at its first pass"
    assert len(machine.measured) == 1 and machine.measured[0].inputs == "8x8", "timed on 8 rows of z"
    forget()
    again = generator_plan(g)
    assert again.source == "cached" and again.plan == fastest() and len(machine.measured) == 1
    assert generator_plan(g, forced={"precision": "fp32"}).plan == fastest() and len(machine.measured) == 1
    generator_plan(Generator(32, 1, nz=8, ngf=8))
    assert len(machine.measured) == 2, "another architecture is timed"
    generator_plan(g, backward=True)
    assert len(machine.measured) == 3, "a forward and backward pass is timed on its own"

    machine.bf16 = 0.5
    forget()
    assert generator_plan(g).plan == fastest() and len(machine.measured) == 3, "the cache answers until retuned"
    forget()
    retuned = dcgan.plan.inference.inference_plan(g, [torch.zeros(8, 8)], work="G", retune=True)  # as G's
    assert retuned.plan.precision == "bf16" and len(machine.measured) == 4
    assert generator_plan(g, forced={"precision": "fp32"}).plan == fastest(), "fp32 forced: the fastest fp32 plan"


def test_within_the_noise_the_defaults_stay(machine: FakeMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeMachine, "cost", lambda self, plan: 0.99 if plan == fastest() else 1.0)
    assert generator_plan(Generator(16, 1, nz=8, ngf=8)).plan == default_inference_plan(), "1% is within the noise"


def test_dcgan_plan_default_and_modules_without_a_choice_measure_nothing(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCGAN_PLAN", "default")
    choice = generator_plan(Generator(16, 1, nz=8, ngf=8))
    assert choice.plan == default_inference_plan() and choice.source == "default" and not machine.measured
    monkeypatch.delenv("DCGAN_PLAN")
    linear = torch.nn.Linear(4, 2)
    only = dcgan.plan.inference.inference_plan(linear, [torch.zeros(3, 4)], work="linear", forced={"precision": "fp32"})
    assert only.source == "forced" and not machine.measured, "no 4-D weights, no convolutions: nothing to choose"


def test_a_plan_timed_on_a_busy_machine_is_timed_again_when_it_is_quiet(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load the fake machine's timings are garbage (the defaults look fastest); the verdict is provisional."""
    honest = FakeMachine.cost
    monkeypatch.setattr(FakeMachine, "cost", lambda self, plan: 1.0 if plan == default_inference_plan() else 1.3)
    machine.others = 1.9
    g = Generator(16, 1, nz=8, ngf=8)
    busy = generator_plan(g)
    assert busy.measurement is not None and busy.measurement.provisional and "busy machine" in str(busy)
    monkeypatch.setattr(dcgan.plan.load, "load_now", lambda threads: Load(0.05, cpus=2, threads=2))
    monkeypatch.setattr(FakeMachine, "cost", honest)
    machine.others = 0.0
    forget()
    quiet = generator_plan(g)
    assert quiet.source == "measured" and quiet.plan == fastest() and len(machine.measured) == 2
    forget()
    assert generator_plan(g).source == "cached" and len(machine.measured) == 2


# ------------------------------------------------------------------------------------------- the hot paths
def test_sampling_and_the_web_server_run_under_the_measured_plan(machine: FakeMachine, tmp_path: Path) -> None:
    from dcgan.web.explorer import Explorer

    machine.bf16 = 0.5  # a machine where bf16 is the fastest: sampling and the page use it
    torch.manual_seed(0)
    g = Generator(16, 1, nz=8, ngf=8).eval()
    plan = generator_plan(g).plan
    assert plan.precision == "bf16"
    write_samples(g, 6, tmp_path / "samples", seed=3)
    written = np.stack([np.asarray(Image.open(tmp_path / "samples" / f"{i:06d}.png")) for i in range(6)])
    z = latents(6, 8, "uniform", seed=3)
    assert np.array_equal(written, to_uint8(generate(g, z, plan=plan))[:, 0].numpy())
    assert not np.array_equal(written, to_uint8(generate(g, z))[:, 0].numpy()), "not the fp32 images"

    explorer = Explorer(g)
    assert explorer.plan == plan
    assert torch.equal(explorer._generate(z), generate(g, z, plan=plan))


def test_evaluation_and_projection_stay_in_fp32_where_bf16_is_faster(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dcgan.metrics import LeNet, evaluate
    from dcgan.projection import project

    machine.bf16 = 0.5
    used: list[tuple[str, ExecutionPlan | None]] = []
    for name in ("dcgan.metrics.evaluate", "dcgan.projection", "dcgan.metrics.feature_extractor"):
        module = importlib.import_module(name)
        real = module.applied
        spy = lambda m, plan, real=real: (used.append((type(m).__name__, plan)), real(m, plan))[1]
        monkeypatch.setattr(module, "applied", spy)
    torch.manual_seed(0)
    g = Generator(16, 1, nz=8, ngf=8)
    lenet = LeNet()
    lenet.name = "lenet-plan-test"
    evaluate(g, data=shapes_data(64), features=lenet, n=8, metrics="fid")
    project(g, generate(g, latents(2, 8, "uniform", seed=0)), steps=1, restarts=1)
    assert {name for name, _ in used} == {"Generator", "LeNet"}
    assert all(plan is not None and plan.precision == "fp32" for _, plan in used), used
    assert sorted(s.work for s in machine.measured) == ["G", "G", "lenet-plan-test features"], "each timed"
    assert machine.measured[-1].backward, "projection's plan is timed with the backward pass"
    assert dict(used)["Generator"] == fastest()


def test_dedup_hashing_and_the_probe_ask_for_their_plans(machine: FakeMachine, tmp_path: Path) -> None:
    from dcgan.dedup import deduplicate
    from dcgan.models import Discriminator
    from dcgan.probe.features import extract_features, features_plan

    machine.bf16 = 0.5
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(shapes_data(12, size=32, channels=3).images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    deduplicate(folder, steps=1, train_images=12)
    assert "dedup hash" in [s.work for s in machine.measured]

    d = Discriminator(16, 1, ndf=4).eval()
    assert features_plan(d).precision == "bf16" and features_plan(d, "fp32") == fastest()
    images = shapes_data(8).images
    auto = extract_features(d, images, precision="auto")
    assert np.array_equal(auto, extract_features(d, images, precision="bf16"))
    assert not np.array_equal(auto, extract_features(d, images, precision="fp32"))
