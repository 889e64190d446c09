"""Training: the run folder, exact resume, NaN rollback, graceful stops and SIGKILL at any moment."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan import checkpoint as ckpt
from dcgan.config import TrainConfig
from dcgan.errors import CheckpointError, ConfigError, DataError
from dcgan.gemm_conv import use_gemm_conv
from dcgan.metrics import LeNet, evaluate, save_extractor
from dcgan.mixture import SnapshotMixture
from dcgan.models import Discriminator
from dcgan.run import Run, RunFolder, resume_config
from dcgan.train import NumericalFault, Trainer, dry_run, train
from dcgan.training.samples import class_grid
from tests.conftest import checkpoint_weights, class_shapes_data, shapes_data, tiny_config, train_tiny


def _assert_bitwise_equal(a: Path, b: Path) -> None:
    wa, wb = checkpoint_weights(a), checkpoint_weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_run_folder_has_everything(tiny_run: Path) -> None:
    assert json.loads((tiny_run / "config.json").read_text())["image_size"] == 16
    assert sorted(p.name for p in (tiny_run / "samples").iterdir()) == ["step-00000004.png", "step-00000008.png"]
    assert Image.open(tiny_run / "progress.gif").n_frames == 2
    assert (tiny_run / "losses.png").exists()
    assert list((tiny_run / "tensorboard").glob("events.out.tfevents.*"))
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "loss_d" in r]
    assert [r["step"] for r in logged] == [2, 4, 6, 8]
    assert all(0 < r["d_x"] < 1 and 0 < r["d_g_z"] < 1 and r["img_per_s"] > 0 for r in logged)
    assert any("diversity" in r for r in rows)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resumed_run_is_bitwise_identical(tmp_path: Path, precision: str) -> None:
    train_tiny(tmp_path / "full", steps=12, precision=precision, snapshot_every=2)
    train_tiny(tmp_path / "half", steps=6, precision=precision, checkpoint_every=3, snapshot_every=2)
    config = tiny_config(steps=12, precision=precision, checkpoint_every=3, snapshot_every=2)
    train(config, tmp_path / "half", resume=True, data=shapes_data(), progress=False)
    _assert_bitwise_equal(tmp_path / "full", tmp_path / "half")
    # G's snapshots, which sampling mixes, are the same too: the newest 4 of those taken every 2 steps
    full, half = RunFolder(tmp_path / "full").list_snapshots(), RunFolder(tmp_path / "half").list_snapshots()
    assert [s for s, _ in full] == [s for s, _ in half] == [6, 8, 10, 12]
    for (_, a), (_, b) in zip(full, half, strict=True):
        wa, wb = ckpt.read_verified(a)["generator"], ckpt.read_verified(b)["generator"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = [json.loads(x) for x in (tmp_path / "half" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss_d" in r] == [2, 4, 6, 8, 10, 12]


def test_resume_spans_epochs_exactly(tmp_path: Path) -> None:
    # 256 images / 32 per batch = 8 steps an epoch: stop mid-epoch 2 and resume into epoch 3.
    train_tiny(tmp_path / "full", steps=20)
    train_tiny(tmp_path / "part", steps=11, checkpoint_every=11)
    train(tiny_config(steps=20), tmp_path / "part", resume=True, data=shapes_data(), progress=False)
    _assert_bitwise_equal(tmp_path / "full", tmp_path / "part")


def test_existing_run_needs_resume(tiny_run: Path) -> None:
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_config(), tiny_run, data=shapes_data(), progress=False)


def test_python_resume_continues_the_saved_run_to_n_steps(tmp_path: Path) -> None:
    """`train(resume_config(out, steps=N), out, resume=True)` is `dcgan train --out OUT --resume --steps N`: the
    run goes on to step N with its own saved settings (data, sampling interval, learning rate)."""
    out = train_tiny(tmp_path / "run", steps=4, sample_every=2, checkpoint_every=2, lr=1e-4)
    result = train(resume_config(out, steps=8), out, resume=True, data=shapes_data(), progress=False)
    assert result.step == 8
    saved = TrainConfig.load(out / "config.json")
    assert (saved.data, saved.image_size, saved.sample_every, saved.lr, saved.steps) == ("shapes", 16, 2, 1e-4, 8)
    assert [p.name for p in sorted((out / "samples").iterdir())] == [f"step-0000000{i}.png" for i in (2, 4, 6, 8)]


def test_resuming_on_other_data_warns_and_names_resume_config(tiny_run: Path) -> None:
    with pytest.warns(UserWarning, match="resume_config"):
        Trainer(tiny_config(steps=16, data="mnist5k"), tiny_run, resume=True, data=shapes_data(), progress=False)


def test_resume_with_another_architecture_is_refused(tmp_path: Path) -> None:
    train_tiny(tmp_path / "run", steps=2)
    with pytest.raises(CheckpointError, match="ngf 8 vs 16"):
        train(tiny_config(steps=4, ngf=16), tmp_path / "run", resume=True, data=shapes_data(), progress=False)


def test_nan_in_the_weights_rolls_back_and_finishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Trainer.train_step
    calls = {"n": 0}

    def poisoned(self: Trainer, real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        stats = original(self, real, z)
        calls["n"] += 1
        if calls["n"] == 6:  # once, mid-run, after step 6's finite losses: a weight of G becomes NaN
            with torch.no_grad():
                next(self.G.parameters())[0, 0, 0, 0] = float("nan")
        return stats

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    # Step 6's checkpoint is not written (its weights hold a NaN), so step 7's NaN rolls back to step 4.
    with pytest.warns(UserWarning, match="rolled back to step-00000004.pt"):
        result = train(tiny_config(steps=8, checkpoint_every=2), tmp_path / "run", data=shapes_data(), progress=False)
    assert result.step == 8
    state = ckpt.load(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in state["generator"].values())
    assert state["nan_retries"] == 1


def test_persistent_nan_stops_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def always_nan(self: Trainer, real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.full((4,), float("nan"))

    monkeypatch.setattr(Trainer, "train_step", always_nan)
    with pytest.warns(UserWarning), pytest.raises(NumericalFault, match="after 2 rollbacks"):
        train(tiny_config(max_nan_retries=2), tmp_path / "run", data=shapes_data(), progress=False)
    assert ckpt.list_checkpoints(tmp_path / "run"), "the last good checkpoint is still there"


# ------------------------------------------------------------------------------------------- processes
def _image_folder(path: Path, n: int = 64) -> Path:
    rng = np.random.default_rng(0)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path / f"{i}.png")
    return path


def _cli(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "dcgan", "train", "--data", str(data), "--out", str(out), "--image-size", "16",
        "--nz", "8", "--ngf", "8", "--ndf", "8", "--batch-size", "16", "--steps", str(steps), "--precision", "fp32",
        "--checkpoint-every", "2", "--log-every", "2", "--sample-every", "1000", "--no-progress", *extra,
    ]  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DCGAN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def _wait_for_checkpoint(out: Path, proc: subprocess.Popen[bytes], after: int = 0, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ckpt.list_checkpoints(out)
        if found and int(found[-1].name[5:13]) > after:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_and_says_how_to_resume(tmp_path: Path, sig: signal.Signals) -> None:
    data = _image_folder(tmp_path / "images")
    out = tmp_path / "run"
    env = _env(tmp_path)
    proc = subprocess.Popen(_cli(data, out, 100000), stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    _wait_for_checkpoint(out, proc, after=0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err.decode()
    message = err.decode()
    assert f"Stopped by {sig.name}" in message and f"dcgan train --out {out} --resume" in message
    assert "Traceback" not in message
    stopped_at = int(message.split(" at step ")[1].split()[0])
    assert ckpt.load(out)["step"] == stopped_at, "the checkpoint holds the step the message names"


_DIE_MID_WRITE = """
import io, os, signal, sys, torch
from dcgan import checkpoint as ckpt
real_save = torch.save
def dying_save(obj, f, *args, **kwargs):
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying_save
state = ckpt.load(sys.argv[1])
ckpt.atomic_save({**state, "step": state["step"] + 1}, sys.argv[1])
"""


def test_sigkill_at_random_moments_resumes_to_the_same_weights(tmp_path: Path) -> None:
    data = _image_folder(tmp_path / "images")
    env = _env(tmp_path)
    subprocess.run(_cli(data, tmp_path / "straight", 24), check=True, env=env, capture_output=True)
    out = tmp_path / "killed"
    rng = np.random.default_rng(1)
    for _ in range(3):
        proc = subprocess.Popen(_cli(data, out, 24, "--resume"), stderr=subprocess.PIPE, env=env)
        last = int(ckpt.list_checkpoints(out)[-1].name[5:13]) if ckpt.list_checkpoints(out) else -1
        _wait_for_checkpoint(out, proc, after=last)
        time.sleep(float(rng.uniform(0, 0.3)))
        proc.kill()
        proc.wait()
        for path in ckpt.list_checkpoints(out):
            ckpt.load(path)  # every checkpoint on disk is complete, whenever the kill landed
    subprocess.run(_cli(data, out, 24, "--resume"), check=True, env=env, capture_output=True)
    assert ckpt.load(out)["step"] == 24
    _assert_bitwise_equal(tmp_path / "straight", out)
    # A kill landing inside a checkpoint write, made certain: the writer dies with half the new bytes written.
    newest = ckpt.list_checkpoints(out)[-1]
    before = newest.read_bytes()
    killed = subprocess.run([sys.executable, "-c", _DIE_MID_WRITE, str(newest)], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert newest.read_bytes() == before, "a kill during a checkpoint write leaves the previous checkpoint whole"


def test_best_checkpoint_follows_the_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --eval-every, best.pt is the checkpoint of the step with the lowest FID, not the last one."""
    scores = iter([9.0, 4.0, 6.0, 5.0])

    class FakeEvaluator:
        key, lower_is_better = "fid2k", True

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __call__(self, generator: torch.nn.Module) -> dict[str, float]:
            return {"fid2k": next(scores)}

        def is_better(self, value: float, best: float | None) -> bool:
            return best is None or value < best

    import dcgan.metrics

    monkeypatch.setattr(dcgan.metrics, "TrainingEvaluator", FakeEvaluator)
    train(tiny_config(steps=8, eval_every=2), tmp_path / "run", data=shapes_data(), progress=False)
    best = ckpt.load(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["step"] == 4 and best["metrics"] == {"fid2k": 4.0} and best["best_value"] == 4.0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["fid2k"] for r in rows if "fid2k" in r] == [9.0, 4.0, 6.0, 5.0]
    assert ckpt.load(tmp_path / "run")["step"] == 8, "the run folder still resolves to the newest checkpoint"


@pytest.mark.slow
def test_eval_every_with_a_real_extractor(tmp_path: Path) -> None:
    """The real evaluator, on a LeNet fitted here to the embedded digits: FID is logged and best.pt written."""
    from dcgan.data import ImageData, load_images
    from dcgan.metrics import fit_extractor, save_extractor

    digits = load_images("mnist5k", image_size=16)
    assert digits.labels is not None
    part = lambda a, b: ImageData(digits.images[a:b], digits.labels[a:b], "mnist5k", "train", "")
    extractor, meta = fit_extractor(part(0, 4000), part(4000, 5000), epochs=1)
    features = save_extractor(extractor, tmp_path / "lenet.safetensors", meta)
    config = tiny_config(data="mnist5k", steps=4, eval_every=2, eval_n=64, ema=0.9, eval_features=str(features))
    train(config, tmp_path / "run", data=digits, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    fids = [r["fid64"] for r in rows if "fid64" in r]
    assert len(fids) == 2 and all(f > 0 for f in fids)
    best = ckpt.load(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["best_value"] == min(fids) and best["generator_ema"] is not None


def _assert_close_weights(a: Path, b: Path, tol: float) -> None:
    wa, wb = checkpoint_weights(a), checkpoint_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=tol, atol=tol, msg=lambda m, k=key: f"{k}: {m}")


def test_gemm_convolutions_train_the_same_model(tmp_path: Path) -> None:
    """--no-gemm-conv (torch's kernels everywhere) and the default reach the same weights in fp32."""
    train_tiny(tmp_path / "gemm", steps=6)
    train_tiny(tmp_path / "torch", steps=6, gemm_conv=False)
    _assert_close_weights(tmp_path / "torch", tmp_path / "gemm", 1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("gcc") or shutil.which("cc")), reason="torch.compile on CPU needs a C compiler")
def test_compiled_training_matches_eager(tmp_path: Path) -> None:
    train_tiny(tmp_path / "eager", steps=3)
    train_tiny(tmp_path / "compiled", steps=3, compile=True)
    _assert_close_weights(tmp_path / "eager", tmp_path / "compiled", 1e-3)


def _gemm_conv_on() -> bool:
    on = use_gemm_conv(True)
    use_gemm_conv(on)
    return on


@pytest.mark.parametrize("fails", [False, True])
def test_training_puts_the_gemm_switch_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: bool) -> None:
    """--no-gemm-conv holds while the run trains; afterwards (returned or raised) the process has its own again."""
    seen = []

    def step(self: Trainer, real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        seen.append(_gemm_conv_on())
        if fails:
            raise RuntimeError("boom")
        return torch.full((4,), 0.5)

    monkeypatch.setattr(Trainer, "train_step", step)
    before = use_gemm_conv(True)
    try:
        if fails:
            with pytest.raises(RuntimeError, match="boom"):
                train_tiny(tmp_path / "run", steps=2, gemm_conv=False)
        else:
            train_tiny(tmp_path / "run", steps=2, gemm_conv=False)
        assert seen and not any(seen), "training ran with the GEMM path off"
        assert _gemm_conv_on(), "and switched it back on afterwards"
    finally:
        use_gemm_conv(before)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_dry_run_of_a_resume_reads_the_run_and_writes_nothing(tiny_run: Path) -> None:
    before = _files(tiny_run)
    report = dry_run(resume_config(tiny_run, steps=16), tiny_run, resume=True, data=shapes_data())
    assert (report.start_step, report.total_steps, report.steps_per_epoch) == (8, 16, 8)
    assert report.images_per_s > 0 and report.seconds == 8 * report.seconds_per_step
    assert "8 to 16" in str(report) and str(tiny_run) in str(report)
    assert _files(tiny_run) == before
    with pytest.raises(ConfigError, match="already holds a run"):
        dry_run(tiny_config(), tiny_run, data=shapes_data())


# ------------------------------------------------------------------------------------------- class-conditional
def _class_of(images: torch.Tensor) -> torch.Tensor:
    """`class_shapes_data`'s class read from the pixels: "dark" (1) images are bright on average."""
    return (images.detach().float().flatten(1).mean(1) > 0).long()


@pytest.mark.parametrize("one_pass", [False, True])
def test_conditional_d_sees_each_real_image_with_its_label_and_fakes_in_the_same_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_pass: bool
) -> None:
    calls: list[tuple[torch.Tensor, torch.Tensor, int]] = []
    forward = Discriminator.forward

    def spy(
        self: Discriminator, x: torch.Tensor, labels: torch.Tensor | None = None, parts: int = 1, classes: bool = False
    ) -> torch.Tensor:
        assert labels is not None, "a conditional D is always given labels"
        calls.append((x.detach().clone(), labels.clone(), parts))
        return forward(self, x, labels, parts, classes)

    monkeypatch.setattr(Discriminator, "forward", spy)
    monkeypatch.setattr(Trainer, "one_pass_d", one_pass)
    train(tiny_config(steps=3, conditional=True), tmp_path / "run", data=class_shapes_data(), progress=False)
    per_step = 2 if one_pass else 3  # D on real and fake (one call or two), then D on the fake for G's loss
    assert len(calls) == 3 * per_step
    for step in range(3):
        steps_calls = calls[step * per_step : (step + 1) * per_step]
        if one_pass:
            (both, both_labels, parts), (_, fake_labels, _) = steps_calls
            assert parts == 2
            real, real_labels = both.chunk(2)[0], both_labels.chunk(2)[0]
            assert torch.equal(both_labels.chunk(2)[1], real_labels), "the fake half is judged in the real labels"
        else:
            (real, real_labels, _), (_, detached_labels, _), (_, fake_labels, _) = steps_calls
            assert torch.equal(detached_labels, real_labels)
        assert torch.equal(_class_of(real), real_labels), "each real image comes with its own label"
        assert torch.equal(fake_labels, real_labels), "G draws the fake batch in the real batch's labels"
        assert set(real_labels.tolist()) == {0, 1}


@pytest.mark.parametrize(("conditioning", "precision"), [("projection", "fp32"), ("concat", "bf16"), ("acgan", "fp32")])
def test_resumed_conditional_run_is_bitwise_identical(tmp_path: Path, conditioning: str, precision: str) -> None:
    data = class_shapes_data()
    config = lambda steps: tiny_config(
        steps=steps, conditional=True, conditioning=conditioning, precision=precision, checkpoint_every=3
    )
    train(config(10), tmp_path / "full", data=data, progress=False)
    train(config(5), tmp_path / "half", data=data, progress=False)
    train(config(10), tmp_path / "half", resume=True, data=data, progress=False)
    _assert_bitwise_equal(tmp_path / "full", tmp_path / "half")
    state = ckpt.load(tmp_path / "half")
    assert (state["num_classes"], state["conditioning"], state["classes"]) == (2, conditioning, ["light", "dark"])


def test_resuming_across_conditioning_or_classes_is_refused_and_writes_nothing(
    tiny_run: Path, tiny_conditional_run: Path
) -> None:
    before = _files(tiny_conditional_run), _files(tiny_run)
    with pytest.raises(CheckpointError, match="holds a class-conditional run and cannot go on as an unconditional"):
        train(tiny_config(steps=12), tiny_conditional_run, resume=True, data=class_shapes_data(), progress=False)
    with pytest.raises(CheckpointError, match="holds an unconditional run and cannot go on as a class-conditional"):
        train(tiny_config(steps=12, conditional=True), tiny_run, resume=True, data=class_shapes_data(), progress=False)
    three = class_shapes_data()
    three.labels, three.classes = torch.arange(len(three)) % 3, ("a", "b", "c")
    with pytest.raises(CheckpointError, match="draw 2 classes but --data shapes has 3"):
        config = tiny_config(steps=12, conditional=True, conditioning="projection")  # the run's own conditioning
        train(config, tiny_conditional_run, resume=True, data=three, progress=False)
    with pytest.raises(CheckpointError, match="conditioning projection vs concat"):
        config = tiny_config(steps=12, conditional=True, conditioning="concat")
        train(config, tiny_conditional_run, resume=True, data=class_shapes_data(), progress=False)
    assert (_files(tiny_conditional_run), _files(tiny_run)) == before


def test_acgan_training_teaches_d_to_name_the_classes_and_g_to_draw_them(tmp_path: Path) -> None:
    """AC-GAN's class loss: after a short run D's classifier names the real images' classes, and the classes G
    draws are the ones asked for (an untrained classifier guesses: about half right on two classes)."""
    data = class_shapes_data()
    config = tiny_config(
        steps=120, conditional=True, conditioning="acgan", checkpoint_every=120, sample_every=120, log_every=20
    )
    train(config, tmp_path / "run", data=data, progress=False)
    run = Run.open(tmp_path / "run")
    g, d = run.generator(), run.discriminator().eval()
    with torch.no_grad():
        real = data.images[:128].float().div(127.5).sub(1)
        assert data.labels is not None
        named_real = d(real, data.labels[:128], classes=True)[:, 1:].argmax(1)
        asked = torch.arange(128) % 2
        fakes = g(torch.rand(128, config.nz) * 2 - 1, asked)
        named_fake = d(fakes, asked, classes=True)[:, 1:].argmax(1)
    assert (named_real == data.labels[:128]).float().mean() > 0.9, "D names the real images' classes"
    assert (named_fake == asked).float().mean() > 0.9, "G draws the class asked for, as D reads it"
    dark = fakes[asked == 1].mean() - fakes[asked == 0].mean()
    assert dark > 0.2, "'dark' (a dark square on a bright ground) is drawn brighter overall than 'light'"


def test_a_conditional_run_keeps_its_classes_shares_of_the_training_images(tmp_path: Path) -> None:
    """Four light images to each dark one: the checkpoint records the mix, and G, its snapshot mixture and
    `dcgan info` carry it (what evaluation draws its classes in); a checkpoint from before the shares were
    recorded draws evenly, and a mix that is not one share per class summing to 1 is refused in one sentence."""
    data = class_shapes_data()
    uneven = data.select(torch.cat([torch.arange(0, 256, 2), torch.arange(1, 256, 8)]))  # 128 light, 32 dark
    train(tiny_config(steps=8, conditional=True, snapshot_every=2), tmp_path / "run", data=uneven, progress=False)
    run = Run.open(tmp_path / "run")
    assert run.class_shares == pytest.approx((0.8, 0.2))
    mixture = run.sampler()
    assert isinstance(mixture, SnapshotMixture) and mixture.steps == (8, 6)
    assert run.generator().class_shares == run.class_shares and mixture.class_shares == run.class_shares
    assert run.describe()["class_shares"] == "80.0%, 20.0%"
    # the mixture is what `dcgan evaluate` scores: each class drawn by the members, four light to each dark
    torch.manual_seed(0)
    extractor = save_extractor(
        LeNet(num_classes=2), tmp_path / "lenet2.safetensors", meta={"classes": '["light", "dark"]'}
    )
    result = evaluate(mixture, data=uneven, features=extractor, metrics="fid,recognised", n=40)
    assert {"fid40", "recognised40"} <= set(result.values) and result.info["samples_in_mix"] == [32, 8]
    path = run.path
    state = ckpt.load(path)
    assert state["class_shares"] == pytest.approx([0.8, 0.2])
    del state["class_shares"]
    ckpt.atomic_save(state, path)
    assert Run.open(path).class_shares is None and Run.open(path).generator().class_shares is None
    ckpt.atomic_save({**state, "class_shares": [0.8, 0.3]}, path)
    with pytest.raises(CheckpointError, match=r"records its classes' shares of the training images as \[0.8, 0.3\]"):
        Run.open(path)


def test_conditional_training_needs_two_labelled_classes(tmp_path: Path) -> None:
    unlabelled = shapes_data()
    unlabelled.labels = None
    with pytest.raises(DataError, match=r"has no labels: use a labelled set .* one subfolder per class, or --labels-"):
        train(tiny_config(conditional=True), tmp_path / "run", data=unlabelled, progress=False)
    with pytest.raises(DataError, match="at least two classes and --data shapes has 1"):
        train(tiny_config(conditional=True), tmp_path / "run", data=shapes_data(), progress=False)
    assert not (tmp_path / "run").exists()


def test_conditional_sample_grids_draw_each_latent_in_every_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two classes: each grid row holds 4 latents, each drawn as "light" then "dark", side by side."""
    import dcgan.training.samples as samples

    drawn: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    generate = samples.generate

    def spy(generator: torch.nn.Module, z: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        drawn.append((z, kwargs.get("labels")))  # type: ignore[arg-type]
        return generate(generator, z, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(samples, "generate", spy)
    out = tmp_path / "run"
    train(tiny_config(steps=4, conditional=True), out, data=class_shapes_data(), progress=False)
    z, labels = drawn[-1]
    assert labels is not None and labels.tolist() == [0, 1] * 32
    assert torch.equal(z[0::2], z[1::2]), "each latent is drawn in both classes"
    assert len(torch.unique(z, dim=0)) == 32
    grid = Image.open(out / "samples" / "step-00000004.png")
    assert grid.size == (2 + 8 * 18, 2 + 8 * 18)
    z, labels, nrow = class_grid(torch.arange(64.0)[:, None], 10)  # ten classes: one latent a row
    assert nrow == 10 and z[:, 0].tolist() == [i // 10 for i in range(60)]
    assert labels.tolist() == [i % 10 for i in range(60)]


@pytest.mark.parametrize("ema", [0.0, 0.9], ids=["raw", "ema"])
def test_step_zero_checkpoint_draws_what_the_trainer_would(tmp_path: Path, ema: float) -> None:
    """Step 0's checkpoint leaves the batchnorm re-estimation to whoever opens it (a second saved at a 64x64 run's
    start); opened, it draws what the Trainer's own sampling copy at step 0 draws."""
    config = tiny_config(steps=4, ema=ema, keep_checkpoints=10)
    trainer = Trainer(config, tmp_path / "run", data=shapes_data(), progress=False)
    expected = trainer.sampling_generator()
    trainer.fit()
    zero = Run.open(RunFolder(tmp_path / "run").checkpoint(0))
    assert zero.step == 0 and zero.state["generator_eval"] is None
    assert Run.open(tmp_path / "run").state["generator_eval"] is not None, "later checkpoints carry their copy"
    z = torch.rand(16, config.nz, 1, 1) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(zero.generator()(z), expected(z), atol=1e-5, rtol=1e-4)


def test_flip_mirrors_a_fresh_half_of_each_epochs_images_and_resumes_exactly(tmp_path: Path) -> None:
    data = shapes_data()
    stored = data.images.clone()
    plain = Trainer(tiny_config(steps=16), tmp_path / "plain", data=data, progress=False)
    flipped = Trainer(tiny_config(steps=16, flip=True), tmp_path / "flip", data=data, progress=False)
    mirrored_by_epoch = []
    for epoch in range(2):  # 256 images, 32 a batch: 8 steps an epoch
        mirrored = torch.zeros(len(data), dtype=torch.bool)
        for step in range(epoch * 8, epoch * 8 + 8):
            index = plain._batch_index(step)
            assert torch.equal(flipped._batch_index(step), index), "--flip keeps the data order"
            a, b = plain.real_batch(step), flipped.real_batch(step)
            same = (a == b).flatten(1).all(1)
            mirror = (a.flip(-1) == b).flatten(1).all(1)
            assert bool((same | mirror).all()), "each image is itself or its mirror image"
            mirrored[index] = mirror & ~same
        assert 0.35 < mirrored.float().mean() < 0.65
        mirrored_by_epoch.append(mirrored)
    assert not torch.equal(*mirrored_by_epoch), "each epoch mirrors its own half"
    assert torch.equal(data.images, stored), "the data set itself is left as it was"
    # a run with --flip stopped mid-epoch 2 and resumed ends where an uninterrupted one does
    train_tiny(tmp_path / "full", steps=20, flip=True)
    train_tiny(tmp_path / "part", steps=11, checkpoint_every=11, flip=True)
    train(tiny_config(steps=20, flip=True), tmp_path / "part", resume=True, data=shapes_data(), progress=False)
    _assert_bitwise_equal(tmp_path / "full", tmp_path / "part")
