"""`dcgan train`: --resume takes the run's saved config, as `dcgan.resume_config` does from Python."""

from __future__ import annotations

from pathlib import Path

from dcgan.cli import build_parser
from dcgan.cli.train import config_from_args
from dcgan.run import resume_config


def test_resume_flags_and_resume_config_are_one_merge(tiny_run: Path) -> None:
    args = build_parser().parse_args(["train", "--out", str(tiny_run), "--resume", "--steps", "16", "--lr", "1e-4"])
    assert config_from_args(args) == resume_config(tiny_run, steps=16, lr=1e-4)
