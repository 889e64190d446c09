"""`dcgan train`: --resume takes the run's saved config, --dry-run checks and times a run and writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan.cli import build_parser, main
from dcgan.cli.train import config_from_args
from dcgan.run import resume_config


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def _images(folder: Path, n: int = 48) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


TINY = ["--image-size", "16", "--nz", "8", "--ngf", "8", "--ndf", "8", "--batch-size", "16", "--precision", "fp32"]


def test_resume_flags_and_resume_config_are_one_merge(tiny_run: Path) -> None:
    args = build_parser().parse_args(["train", "--out", str(tiny_run), "--resume", "--steps", "16", "--lr", "1e-4"])
    assert config_from_args(args) == resume_config(tiny_run, steps=16, lr=1e-4)


def test_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _images(tmp_path / "images")
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))  # the decoded-data cache is not written either
    before = _files(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--dry-run", "--data", str(data), "--out", str(out), "--steps", "30", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "48 images, 3 channels, 16x16" in printed
    assert "30 = 10.0 epochs of 3 steps, batch 16" in printed and "images/s" in printed
    assert f"run folder  {out}" in printed
    assert _files(tmp_path) == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--image-size", "48"], "power of two"), (["--data", "/no/such/folder"], "neither a data set name")],
)
def test_dry_run_with_a_bad_flag_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["train", "--dry-run", "--out", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
