"""The benchmark scripts still run and print their tables (tiny sizes: this checks they work, not speed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_train_speed_prints_its_table() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_speed.py"), "--sizes", "16", "--steps", "1", "--warmup", "1", "--rounds", "1"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert any("reference: tutorial loop, fp32" in line and "1.00x" in line for line in lines)
    assert any("auto plan (default)" in line for line in lines)
    assert any("data pipeline" in line for line in lines)
    assert not any("failed" in line for line in lines), out.stdout


@pytest.mark.slow
def test_train_speed_stops_a_far_slower_configuration_and_gives_the_bound() -> None:
    """With --max-slowdown near 0 every row after the tutorial loop's is "far slower": each is stopped in its first
    step, once, and its row gives a bound and says so; the tutorial loop itself is timed in full."""
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_speed.py"), "--sizes", "16", "--steps", "1", "--warmup", "1",
         "--rounds", "2", "--max-slowdown", "0.001"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    rows = [line for line in out.stdout.splitlines() if line.startswith("| 16x16 | ")]
    timed = [row for row in rows if "| reference: tutorial loop, fp32 |" in row]
    assert len(timed) == 1 and "1.00x" in timed[0], out.stdout
    cut = [row for row in rows if "not timed further" in row]
    assert any("dcgan bf16" in row for row in cut) and any("auto plan" in row for row in cut), out.stdout
    assert len(cut) == 11, "every dcgan row and the reference with dcgan's allocator setting"
    assert all(row.split(" | ")[2].startswith("< ") for row in cut), "an upper bound on images/s"
    assert out.stderr.count("round 2 16x16") == 1, "round 2 times only the row that was not cut"


def test_train_speed_workers_report_their_own_peak_memory() -> None:
    """Each configuration runs in its own process; its peak memory is its own, not the parent's (Linux's ru_maxrss
    carries the parent's peak into a child)."""
    held = np.ones(1536 * 2**20, np.uint8)  # 1.5 GiB touched here, in the parent
    code = "import sys; sys.path.insert(0, sys.argv[1]); from train_speed import peak_mb; print(peak_mb())"
    out = subprocess.run([sys.executable, "-c", code, str(BENCHMARKS)], capture_output=True, text=True, check=True)
    assert held.sum() > 0 and 0 < float(out.stdout) < 1024, out.stdout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_matmul_peak_times_the_same_product_in_both_libraries(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    """The peak the speed tables divide by is the best of MKL's product and oneDNN's 1x1 convolution: both must
    compute a @ b (and nothing cheaper), and the peak reports a rate for each."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from peak import PRODUCTS, product_rates

    a, b = torch.randn(96, 80).to(dtype), torch.randn(80, 48).to(dtype)
    exact = a.double() @ b.double()
    for name, prepare in PRODUCTS.items():
        product = prepare(a, b)()
        assert product.shape == (96, 48), name
        torch.testing.assert_close(product.double(), exact, rtol=0.02, atol=0.1 if dtype == torch.bfloat16 else 1e-4)
    rates = product_rates(dtype, 256, 256, 256, repeats=1)
    assert set(rates) == set(PRODUCTS) and all(rate > 0 for rate in rates.values())


@pytest.mark.slow
def test_train_speed_end_to_end_times_both_commands(tmp_path: Path) -> None:
    """One epoch of a folder from the command line, dcgan (cold, then warm decode cache) against the reference,
    twice in turn: here the first 128 of 130 noise images, one dcgan step of 128 and two reference steps of 64."""
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (130, 64, 64, 3), dtype=np.uint8)
    for i, pixels in enumerate(noise):
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    work = tmp_path / "work"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_speed.py"), "--end-to-end", str(folder), "--end-to-end-limit", "128",
         "--end-to-end-out", str(work), "--end-to-end-rounds", "2"],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 64x64 | end to end")]
    assert len(rows) == 3 and not any("failed" in row for row in rows), done.stdout + done.stderr
    reference, cold, warm = rows
    assert "reference_dcgan.py --niter 1" in reference and "128 images" in reference
    assert "empty decode cache" in cold and "already decoded" in warm and "128 images" in cold
    pattern = r": ([\d.]+) s to the last checkpoint .*median of 2: ([\d.]+), ([\d.]+) s \| ([\d.]+) \| ([\d.]+)x"
    figures = [re.search(pattern, row) for row in rows]
    assert all(figures), rows
    median, first, second, rate, ratio = ([float(f.group(i)) for f in figures if f] for i in range(1, 6))  # type: ignore[misc]
    for m, a, b, r in zip(median, first, second, rate, strict=True):
        assert m == pytest.approx((a + b) / 2, abs=0.06), "the median of two rounds"
        # seconds are printed to 0.1 s and rates to 0.1 img/s: the rate is 128 images over the median's bounds
        assert 128 / (m + 0.05) - 0.05 <= r <= 128 / (m - 0.05) + 0.05, f"images/s: {r} is not 128 images over {m} s"
    for row, a, b in zip(rows, first, second, strict=True):
        by_round = re.search(r"\| [\d.]+x \(([\d.]+)x, ([\d.]+)x\)", row)
        assert by_round, row
        # each round against its own reference's seconds; both are printed to 0.1 s and the ratio to 0.01, so
        # the printed ratio lies within the bounds the rounded seconds allow
        for printed, reference_s, own_s in zip(by_round.groups(), (first[0], second[0]), (a, b), strict=True):
            low, high = (reference_s - 0.05) / (own_s + 0.05), (reference_s + 0.05) / (own_s - 0.05)
            assert low - 0.005 <= float(printed) <= high + 0.005, row
    assert ratio[0] == 1.0
    assert len(list((work / "data").iterdir())) == 128, "the first 128 images, copied"
    for round_ in ("round-1", "round-2"):
        assert (work / round_ / "reference" / "netG_epoch_0.pth").exists()
        assert (work / round_ / "dcgan-warm" / "checkpoints").is_dir()
        cached = [p.name for p in (work / round_ / "dcgan-cache").iterdir()]
        assert any(name.endswith(".images.npy") for name in cached), "the cold run decoded the folder into its cache"
    assert "--image-size 64 --epochs 1 --paper" in done.stderr and "--niter 1" in done.stderr, (
        "the commands are printed"
    )


def test_conv_layers_prints_its_table() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "conv_layers.py"), "--size", "16", "--batch", "4", "--repeats", "1"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert any(line.startswith("| layer |") and "| Winograd ms |" in line for line in lines), out.stdout
    assert any(line.startswith("| G.blocks[0]") and "| GEMM |" in line for line in lines)
    assert any(line.startswith("| all layers") for line in lines), out.stdout


@pytest.mark.slow
def test_quality_vs_time_quick_runs_both_systems(tmp_path: Path) -> None:
    from dcgan.metrics import LeNet, save_extractor

    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    features = save_extractor(LeNet(), tmp_path / "lenet-untrained.safetensors")  # the plumbing, not the figures
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "quality_vs_time.py"), "--quick", "--features", str(features),
         "--out", str(out), "--data-cache", str(tmp_path / "data")],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((out / "results.json").read_text())
    systems = {run["system"]: run for run in result["runs"]}
    assert set(systems) == {"dcgan", "reference"}
    for run in systems.values():
        assert len(run["points"]) >= 2, run  # the start and the end at least
        assert run["points"][-1]["step"] >= 1 and "fid" in run["points"][-1]["values"]
    assert systems["dcgan"]["exit_code"] in (0, 130), systems["dcgan"]  # its end, or SIGINT at the budget
    assert (out / "fid_vs_seconds.png").stat().st_size > 0
    assert "| dcgan | 128 | 0 |" in done.stdout and "dcgan FID / reference b64 FID" in done.stdout


@pytest.mark.slow
def test_web_load_prints_its_table() -> None:
    """A tiny untrained run served on loopback, 1 and 2 clients for a second each: every request type answered,
    nothing but 200s and well-formed 503s, and the server's memory reported."""
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "web_load.py"), "--quick", "--clients", "1,2", "--duration", "1"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    for clients in (1, 2):
        assert any(line.startswith(f"|       {clients} | info probe ") for line in lines), out.stdout
    assert any(line.startswith("|       1 | sheet ") for line in lines), out.stdout
    assert "answers other than 200 or a well-formed 503: 0" in lines, out.stdout
    assert any(line.startswith("server RSS: ") and "MiB peak" in line for line in lines), out.stdout


def test_web_load_drives_a_conditional_run() -> None:
    """A class-conditional tiny run: every drawing request names a class, the "same z in every class" request
    joins the mix, and nothing is refused but with a well-formed 503."""
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "web_load.py"), "--quick", "--classes", "3", "--clients", "1",
         "--duration", "1"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert "mix info:4,sheet:1,walk:1,arithmetic:1,filters:1,project:1,classes:1" in out.stdout, out.stdout
    assert any(line.startswith("|       1 | classes ") for line in lines), out.stdout
    assert "answers other than 200 or a well-formed 503: 0" in lines, out.stdout
    refused = subprocess.run(
        [sys.executable, str(BENCHMARKS / "web_load.py"), "--quick", "--mix", "info:1,classes:1"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert refused.returncode != 0 and "this model is unconditional" in refused.stderr, refused.stderr


@pytest.mark.slow
def test_conditional_quality_trains_and_scores_each_model(tmp_path: Path) -> None:
    """Two steps of a conditional (projection) and the unconditional model on Fashion-MNIST, scored on 100 samples
    with an untrained LeNet of Fashion-MNIST's classes: the table, the ceiling and the commands come out."""
    from dcgan.data import registry
    from dcgan.metrics import LeNet, save_extractor

    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    entry = registry.find("fashion-mnist")
    assert entry is not None and entry.classes is not None
    classes = {"classes": json.dumps(list(entry.classes))}
    features = save_extractor(LeNet(), tmp_path / "lenet-untrained.safetensors", meta=classes)  # plumbing only
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "conditional_quality.py"), "--steps", "2", "--n", "100", "--models",
         "projection,none", "--features", str(features), "--out", str(out),
         "--train-args", "--ngf 8 --ndf 8 --batch-size 16 --precision fp32"],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((out / "results.json").read_text())
    models = {m["conditioning"]: m for m in result["models"]}
    assert set(models) == {"projection", "none"} and all(m["step"] == 2 for m in models.values())
    assert {"fid", "intrafid", "recognised", "confidence"} <= set(models["projection"]["values"])
    assert "recognised" not in models["none"]["values"] and "fid" in models["none"]["values"]
    assert 0 <= result["ceiling"] <= 1
    assert "| projection | 0 | 2 |" in done.stdout and "| unconditional | 0 | 2 |" in done.stdout, done.stdout
    assert "    dcgan train --data fashion-mnist --image-size 32 --seed 0 " in done.stdout
    assert "--conditional --conditioning projection" in done.stdout
