"""Shared fixtures: tiny data and tiny trained runs, so every test runs on CPU in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dcgan import checkpoint as ckpt
from dcgan.config import build_config
from dcgan.data import ImageData

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the tests' decoded-data cache out of the user's ~/.cache, but share it across the session."""
    os.environ.setdefault("DCGAN_CACHE", str(tmp_path_factory.mktemp("dcgan-cache")))
    torch.set_num_threads(min(2, os.cpu_count() or 1))


def shapes_data(n: int = 256, size: int = 16, channels: int = 1, seed: int = 0) -> ImageData:
    """n images of a bright square on a dark background at random places: a tiny learnable data set."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, channels, size, size), 20, dtype=torch.uint8)
    side = size // 2
    xs = torch.randint(0, size - side + 1, (n,), generator=g)
    ys = torch.randint(0, size - side + 1, (n,), generator=g)
    for i in range(n):
        images[i, :, ys[i] : ys[i] + side, xs[i] : xs[i] + side] = 230
    return ImageData(images, torch.zeros(n, dtype=torch.int64), "shapes", "train", "synthetic")


def class_shapes_data(n: int = 256, size: int = 16, channels: int = 1, seed: int = 0) -> ImageData:
    """`shapes_data` in two classes told apart at a glance: "light" (a bright square on a dark ground, even
    indices) and "dark" (the same square dark on a bright ground, odd indices)."""
    data = shapes_data(n, size, channels, seed)
    data.images[1::2] = 250 - data.images[1::2]
    data.labels = torch.arange(n) % 2
    data.classes = ("light", "dark")
    return data


def tiny_config(**overrides: object):  # type: ignore[no-untyped-def]
    values = dict(
        data="shapes", image_size=16, channels=1, nz=8, ngf=8, ndf=8, batch_size=32, steps=8,
        log_every=2, sample_every=4, checkpoint_every=4, precision="fp32", seed=0,
    )  # fmt: skip
    values.update(overrides)
    return build_config(None, **values)


def train_tiny(out: Path, **overrides: object) -> Path:
    from dcgan.train import train

    config = tiny_config(**overrides)
    data = shapes_data(size=config.image_size, channels=config.channels or 1)
    train(config, out, data=data, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 8-step run of a 16x16 one-channel DCGAN (nz=8); its folder holds checkpoints and samples."""
    return train_tiny(tmp_path_factory.mktemp("tiny-run") / "run")


@pytest.fixture(scope="session")
def tiny_conditional_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 8-step class-conditional run (projection) on `class_shapes_data`: classes "light" and "dark"."""
    from dcgan.train import train

    out = tmp_path_factory.mktemp("tiny-conditional-run") / "run"
    # projection (G with class-conditional batchnorm, D with the projection term): the tests reach both kinds of
    # label weights through it; the default, concat, is covered by the model tests
    train(tiny_config(conditional=True, conditioning="projection"), out, data=class_shapes_data(), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run_rgb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like tiny_run but 3 channels at 32x32."""
    return train_tiny(tmp_path_factory.mktemp("tiny-run-rgb") / "run", image_size=32, channels=3)


# ----------------------------------------------------------------------------------------------- CI: no skips
def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On CI (CI=true) a skipped test fails the run: everything a test needs is installed there (.ci/run), so a
    skip means a check silently did not happen."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if _ci() and skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if _ci() and skipped:
        terminalreporter.write_line(
            f"CI=true: {len(skipped)} skipped tests fail this run; CI must install what they need (see .ci/run).",
            red=True,
            bold=True,
        )


def checkpoint_weights(run: Path) -> dict[str, torch.Tensor]:
    """G's and D's state dicts and both optimisers' states from the run's newest checkpoint, by name."""
    state = ckpt.load(run)
    out = {f"G.{k}": v for k, v in state["generator"].items()}
    out.update({f"D.{k}": v for k, v in state["discriminator"].items()})
    for name in ("opt_g", "opt_d"):
        for pid, s in state[name]["state"].items():
            out.update({f"{name}.{pid}.{k}": v for k, v in s.items()})
    return out
