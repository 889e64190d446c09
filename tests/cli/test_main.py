"""The command line: every bad input ends in one sentence and exit code 2; parsing is checked by properties."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dcgan.cli import build_parser, main
from dcgan.cli.train import config_from_args, default_run_name
from dcgan.config import PRESETS, TrainConfig, build_config
from dcgan.errors import ConfigError


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--preset", "nope"], "Unknown preset"),
        (["train", "--image-size", "48"], "power of two"),
        (["train", "--image-size", "512"], "power of two"),
        (["train", "--data", "/no/such/folder"], "neither a data set name"),
        (["train", "--steps", "5", "--epochs", "2"], "not both"),
        (["train", "--beta1", "1.5"], "beta1"),
        (["sample", "/no/such/run", "--out", "x"], "No such checkpoint"),
        (["info", "/no/such/checkpoint.pt"], "No such checkpoint"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main([*argv, *(["--out", str(tmp_path / "run")] if argv[0] == "train" else [])]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["train", "--lr", "fast"], ["train", "--batch-size", "0"], ["train", "--prior", "x"]])
def test_malformed_flag_values_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_presets_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS)


def test_no_flags_means_the_embedded_default() -> None:
    config = config_from_args(build_parser().parse_args(["train"]))
    assert config.preset == "digits32" and config.data == "mnist5k"


def test_flags_override_a_preset_and_paper_defaults_hold() -> None:
    config = config_from_args(build_parser().parse_args(["train", "--preset", "cifar32", "--steps", "10"]))
    assert (config.data, config.image_size, config.steps, config.epochs) == ("cifar10", 32, 10, None)
    assert (config.batch_size, config.lr, config.beta1, config.nz, config.prior) == (128, 2e-4, 0.5, 100, "uniform")


def test_resume_reads_the_saved_config_and_takes_new_steps(tiny_run: Path) -> None:
    args = build_parser().parse_args(["train", "--out", str(tiny_run), "--resume", "--steps", "16"])
    config = config_from_args(args)
    assert (config.image_size, config.nz, config.steps) == (16, 8, 16)


def test_default_run_name_cannot_escape_runs(tmp_path: Path) -> None:
    for data in ["../..", "../../etc", "/", "lsun:bed/../../x"]:
        name = default_run_name(TrainConfig(data=data))
        assert "/" not in name and name not in ("", ".", "..")


sizes = st.integers(min_value=-4, max_value=600)


@settings(max_examples=200, deadline=None)
@given(
    size=sizes,
    batch=st.integers(-3, 300),
    nz=st.integers(-3, 300),
    lr=st.one_of(st.floats(-1, 2), st.just(float("nan"))),
)
def test_config_validation_accepts_exactly_the_valid_values(size: int, batch: int, nz: int, lr: float) -> None:
    valid = 16 <= size <= 256 and size & (size - 1) == 0 and batch >= 1 and nz >= 1 and 0 < lr < 1
    try:
        config = build_config(None, image_size=size, batch_size=batch, nz=nz, lr=lr)
    except ConfigError:
        assert not valid
    else:
        assert valid
        assert TrainConfig.from_dict(config.to_dict()) == config, "a config survives its JSON round trip"


@settings(max_examples=100, deadline=None)
@given(
    flags=st.lists(
        st.sampled_from(["--image-size", "--batch-size", "--nz", "--steps", "--epochs", "--seed", "--lr", "--prior"]),
        max_size=4,
        unique=True,
    ),
    values=st.lists(
        st.sampled_from(["0", "1", "32", "-5", "1e-3", "abc", "uniform", "64", ""]), min_size=4, max_size=4
    ),
)
@example(flags=["--steps", "--epochs"], values=["5", "2", "1", "1"])  # a conflict random draws rarely reach
def test_cli_parsing_never_raises_anything_but_a_clean_error(flags: list[str], values: list[str]) -> None:
    argv = ["train"]
    for flag, value in zip(flags, values):
        argv += [flag, value]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's own one-line error
        assert exc.code == 2
        return
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        assert str(exc).endswith(".")
        return
    config.validate()
