"""The benchmark scripts still run and print their tables (tiny sizes: this checks they work, not speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_conv_layers_prints_its_table() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "conv_layers.py"), "--size", "16", "--batch", "4", "--repeats", "1"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert any(line.startswith("| G.blocks[0]") and "| GEMM |" in line for line in lines)
    assert any(line.startswith("| all layers") for line in lines), out.stdout
