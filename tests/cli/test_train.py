"""`dcgan train`: --resume takes the run's saved config, --dry-run checks and times a run and writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
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
    ("flags", "ndf"),
    [
        (["--data", "faces", "--image-size", "64"], 32),  # D half G's width at 64x64
        (["--data", "faces", "--image-size", "128", "--ngf", "48"], 24),
        (["--data", "faces", "--image-size", "32"], 64),  # below 64x64 D stays as wide as G
        (["--data", "faces", "--image-size", "64", "--ndf", "40"], 40),  # a given width is kept
        (["--data", "faces", "--image-size", "64", "--paper"], 64),  # the reference's widths
        (["--data", "faces", "--image-size", "64", "--ngf", "96", "--paper"], 96),
        (["--data", "faces", "--image-size", "64", "--ndf", "40", "--paper"], 40),
        (["--preset", "lsun64"], 128),  # a preset's width is kept
        (["--preset", "faces64", "--data", "faces"], 32),
        ([], 16),  # the default job, digits32
    ],
)
def test_d_width_defaults_to_half_gs_at_64x64_unless_given_or_paper(flags: list[str], ndf: int) -> None:
    assert config_from_args(build_parser().parse_args(["train", *flags])).ndf == ndf


@pytest.mark.parametrize(
    ("flags", "flip"),
    [
        ([], False),  # the default job: digits are not mirrored
        (["--data", "faces", "--image-size", "64"], False),  # a folder: nothing known about it
        (["--data", "faces", "--image-size", "64", "--flip"], True),
        (["--preset", "faces64", "--data", "faces"], True),  # the face presets mirror
        (["--preset", "celeba64"], True),
        (["--preset", "faces64", "--data", "faces", "--no-flip"], False),
        (["--preset", "faces64", "--data", "faces", "--paper"], False),  # the paper does not mirror
        (["--preset", "faces64", "--data", "faces", "--paper", "--flip"], True),
    ],
)
def test_faces_are_mirrored_by_their_presets_unless_no_flip_or_paper(flags: list[str], flip: bool) -> None:
    assert config_from_args(build_parser().parse_args(["train", *flags])).flip is flip


@pytest.mark.parametrize(
    ("flags", "augment"),
    [
        ([], ""),  # the paper's D sees the images as they are
        (["--augment", "cutout,translation"], "translation,cutout"),
        (["--augment", "none"], ""),
        (["--data", "faces", "--augment", "color", "--paper"], "color"),  # given with --paper, it is kept
    ],
)
def test_augment_is_off_unless_asked_for(flags: list[str], augment: str) -> None:
    assert config_from_args(build_parser().parse_args(["train", *flags])).augment == augment


def test_paper_cannot_change_a_resumed_runs_widths(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _files(tiny_run)
    assert main(["train", "--out", str(tiny_run), "--resume", "--paper"]) == 2
    err = capsys.readouterr().err
    assert "--paper" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _files(tiny_run) == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--image-size", "48"], "power of two"),
        (["--data", "/no/such/folder"], "neither a data set name"),
        (["--augment", "rotate"], "--augment takes a comma-separated choice of color, translation, cutout"),
    ],
)
def test_dry_run_with_a_bad_flag_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["train", "--dry-run", "--out", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------- class-conditional
def _class_folders(folder: Path, classes: tuple[str, ...] = ("cats", "dogs"), n: int = 24) -> Path:
    for name in classes:
        _images(folder / name, n)
    return folder


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--conditional"],
            "--conditional needs labelled images and --data {data} has no labels: use a labelled "
            "set (mnist, fashion-mnist, cifar10, svhn, imagenet), a folder with one subfolder per class, or "
            "--labels-from-name gender|race|age for UTKFace-style file names.",
        ),
        (
            ["--conditioning", "concat"],
            "--conditioning says how a class-conditional model takes its label; add --conditional.",
        ),
        (["--conditional", "--conditioning", "film"], "invalid choice: 'film'"),
        (["--conditional", "--labels-from-name", "hair"], "--labels-from-name must be one of gender, race, age"),
    ],
)
def test_conditional_flag_errors_are_one_sentence_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    data = _images(tmp_path / "flat")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--steps", "2", "--no-progress", *TINY, *flags]
    if "film" in flags:
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
    else:
        assert main(args) == 2
    err = capsys.readouterr().err
    assert message.format(data=data) in err and "Traceback" not in err
    assert len([line for line in err.strip().splitlines() if "error:" in line]) == 1
    assert not out.exists()


def test_conditional_dry_run_finds_a_folders_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One subfolder per class is enough for --conditional; a dry run reads the classes without decoding."""
    data = _class_folders(tmp_path / "pets")
    out = tmp_path / "run"
    assert main(["train", "--dry-run", "--conditional", "--data", str(data), "--out", str(out), *TINY]) == 0
    assert "48 images" in capsys.readouterr().out and not out.exists()


def test_resuming_a_conditional_run_unconditionally_is_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _class_folders(tmp_path / "pets")
    out = tmp_path / "run"
    base = ["train", "--data", str(data), "--out", str(out), "--no-progress", "--log-every", "1", *TINY]
    assert main([*base, "--steps", "2", "--conditional", "--conditioning", "cbn"]) == 0
    before = _files(out)
    capsys.readouterr()
    assert main([*base, "--steps", "4", "--resume", "--no-conditional"]) == 2
    err = capsys.readouterr().err
    assert f"{out} holds a class-conditional run and cannot go on as an unconditional one" in err
    assert len(err.strip().splitlines()) == 1 and _files(out) == before
    assert main([*base, "--steps", "3", "--resume"]) == 0, "a plain --resume goes on conditionally"
    assert resume_config(out).conditioning == "cbn" and resume_config(out).conditional


def _grey_images(folder: Path, n: int = 48) -> Path:
    """Greyscale PNGs (mode L): a folder decodes them to three equal channels."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8), mode="L").save(folder / f"{i}.png")
    return folder


def _channels(run: Path) -> int:
    from dcgan.run import RunFolder, read_checkpoint

    return int(read_checkpoint(RunFolder(run).list_checkpoints()[-1])["channels"])


def test_a_folder_of_grey_images_trains_in_one_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """G draws what the data holds: grey files train a one-channel model (the dry run says so first), unless
    --channels 3 asks for three; colour files keep three (the dry-run test above)."""
    data = _grey_images(tmp_path / "grey")
    assert main(["train", "--dry-run", "--data", str(data), "--out", str(tmp_path / "dry"), *TINY]) == 0
    assert "48 images, 1 channel, 16x16" in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "2", "--no-progress", *TINY]) == 0
    assert "is grey: training in 1 channel" in capsys.readouterr().out
    assert _channels(run) == 1
    three = tmp_path / "three"
    flags = ["--steps", "2", "--no-progress", "--channels", "3", *TINY]
    assert main(["train", "--data", str(data), "--out", str(three), *flags]) == 0
    assert _channels(three) == 3


def test_one_colour_pixel_keeps_three_channels() -> None:
    from dcgan.data import ImageData, single_channel_if_grey

    images = torch.full((5, 3, 4, 4), 7, dtype=torch.uint8)
    grey = single_channel_if_grey(ImageData(images, None, "x", "train", "here"))
    assert grey.images.shape == (5, 1, 4, 4) and bool((grey.images == 7).all())
    images[4, 2, 3, 3] = 8
    colour = ImageData(images, None, "x", "train", "here")
    assert single_channel_if_grey(colour) is colour


def test_a_run_begun_in_three_channels_on_grey_images_resumes_in_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs begun before grey data trained in one channel (three equal ones then) resume as they began."""
    data, run = _grey_images(tmp_path / "grey"), tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr("dcgan.data.single_channel_if_grey", lambda images: images)
        assert main(["train", "--data", str(data), "--out", str(run), "--steps", "2", "--no-progress", *TINY]) == 0
    assert _channels(run) == 3
    assert main(["train", "--out", str(run), "--resume", "--steps", "4", "--dry-run"]) == 0
    assert main(["train", "--out", str(run), "--resume", "--steps", "4", "--no-progress"]) == 0
    assert _channels(run) == 3
