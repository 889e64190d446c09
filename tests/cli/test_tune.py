"""`dcgan tune`: times the candidate plans for a model shape, prints them as a table and caches the choice, which
the next run of that shape then starts with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dcgan.cli import main
from dcgan.plan import ModelShape, select_plan

TINY = ["--image-size", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "8"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DCGAN_PLAN", raising=False)


def test_tune_prints_the_candidates_and_caches_the_choice(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["tune", *TINY]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "AMX" in lines[0] or "amx" in lines[0], "the machine's features come first"
    assert "model 16x16x1, nz 100, ngf 8, ndf 8, batch 8 on cpu" in out
    header = next(i for i, line in enumerate(lines) if line.startswith("plan "))
    assert lines[header].split() == ["plan", "s/step", "img/s", "vs", "fastest", "chosen", "note"]
    rows = lines[header + 2 : header + 10]
    assert sum(" fp32, " in f" {row}" for row in rows) == 4 and sum(" bf16, " in f" {row}" for row in rows) == 4
    # the chosen mark is its own column: "*" between runs of spaces, or last on a row with no note
    chosen = [row for row in rows if "  *  " in row or row.rstrip().endswith("  *")]
    assert len(chosen) == 1 and "the built-in defaults" in out
    assert f"Execution plan: {chosen[0].split('  ')[0]}" in out and "cached in" in out
    assert "Load while measuring: other processes kept " in out, "the load the verdict was made under"
    # The next run of this shape starts from the cache, without measuring.
    cached = select_plan(ModelShape(16, 1, 100, 8, 8, 8), torch.device("cpu"), may_measure=False)
    assert cached is not None and cached.source == "cached" and str(cached.plan) == chosen[0].split("  ")[0]


def test_tune_json_with_forced_switches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", *TINY, "--precision", "fp32", "--no-gemm-conv", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    plans = [t["plan"] for t in report["measurement"]["timings"]]
    assert len(plans) == 2 and all(p["precision"] == "fp32" and not p["gemm_conv"] for p in plans)
    assert report["chosen"] in plans and report["shape"]["image_size"] == 16 and "cpu" in report["machine"]


def test_tune_with_every_switch_forced_measures_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["tune", *TINY, "--precision", "fp32", "--channels-last", "--gemm-conv"]) == 0
    assert "every switch given" in capsys.readouterr().out
    assert not (tmp_path / "cache" / "plans.json").exists()


def test_a_bad_device_is_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", *TINY, "--device", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert "--device" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_tune_of_a_grey_folder_measures_the_one_channel_model_train_uses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A folder whose images are all grey trains in one channel (`dcgan.data.as_trained`); tune times that model,
    so the plan it caches is the one the run looks up."""
    from PIL import Image

    folders = {"grey": "L", "colour": "RGB"}
    for name, mode in folders.items():
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.new(mode, (20, 20), color=40 * i if mode == "L" else (40 * i, 10, 200)).save(
                tmp_path / name / f"{i}.png"
            )
    for name, channels in (("grey", 1), ("colour", 3)):
        args = ["tune", *TINY, "--data", str(tmp_path / name), "--precision", "fp32", "--channels-last", "--gemm-conv"]
        assert main(args) == 0
        assert f"model 16x16x{channels}, nz 100" in capsys.readouterr().out, name
    assert main(["tune", *TINY, "--data", str(tmp_path / "grey"), "--channels", "3", "--precision", "fp32",
                 "--channels-last", "--gemm-conv"]) == 0  # fmt: skip
    assert "model 16x16x3, nz 100" in capsys.readouterr().out, "--channels is obeyed"
    assert main(["tune", *TINY, "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
