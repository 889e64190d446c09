"""Folders of images at scale: a million entries are listed in one streaming pass that says what it is doing."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dcgan.data import load_images

MILLION = 1_000_000


class _Name(str):
    """A file name that counts how many of its kind are alive at once: what a listing holds on to (one name in a
    hundred is one, to keep the test fast)."""

    alive = most = 0

    def __new__(cls, text: str) -> _Name:
        cls.alive += 1
        cls.most = max(cls.most, cls.alive)
        return super().__new__(cls, text)

    def __del__(self) -> None:
        type(self).alive -= 1


class _NotAnImage:
    """A directory entry for a file that is not an image (what `os.scandir` yields, as little of it as is read)."""

    __slots__ = ("_folder", "name")

    def __init__(self, folder: str, name: str, counted: bool) -> None:
        self._folder, self.name = folder, _Name(name) if counted else name

    @property
    def path(self) -> str:
        return os.path.join(self._folder, self.name)

    def is_dir(self, follow_symlinks: bool = True) -> bool:
        return False

    def is_symlink(self) -> bool:
        return False


class _Crowded:
    """`os.scandir(folder)` with `extra` non-image entries spread among the real ones; counts what is read."""

    def __init__(self, folder: str, extra: int, read: list[int], scandir: Any) -> None:
        self._real = scandir(folder)
        self._entries = self._all(folder, extra, read)

    def _all(self, folder: str, extra: int, read: list[int]) -> Iterator[Any]:
        real = iter(self._real)
        for i in range(extra):
            read[0] += 1
            yield _NotAnImage(folder, f"caption-{i:07d}.txt", counted=i % 100 == 0)
            if i % 50_000 == 0:
                yield from (e for e in [next(real, None)] if e is not None)
        yield from real

    def __iter__(self) -> _Crowded:
        return self

    def __next__(self) -> Any:
        return next(self._entries)

    def __enter__(self) -> _Crowded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._real.close()


def test_a_million_paths_are_listed_once_without_holding_them_and_with_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row "a data folder with a million paths": a folder holding 24 images among a million other files (a
    scraped folder's captions) is read entry by entry, once: its images load, and the million names are counted,
    never held (as a list they would take over 60 MB); the progress bar counts the files while they are read;
    a symbolic link back to the folder does not list it again."""
    data = tmp_path.resolve() / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / f"{i:02d}.png")
    (data / "loop").symlink_to(data, target_is_directory=True)
    real_scandir, read = os.scandir, [0]

    def scandir(folder: Any) -> Any:
        crowded = str(folder) == str(data)
        return _Crowded(str(folder), MILLION, read, real_scandir) if crowded else real_scandir(folder)

    monkeypatch.setattr(os, "scandir", scandir)
    loaded = load_images(str(data), image_size=16, use_cache=False)
    assert len(loaded) == 24 and not loaded.skipped, "the 24 images, each once (the link lists nothing again)"
    assert read[0] == MILLION, f"the folder's entries were read {read[0] / MILLION:g} times, not once"
    assert _Name.most < 10, f"the listing held {_Name.most * 100:,} names of files that are not images at once"
    shown = [int(n) for n in re.findall(r"listing data: (\d+) files", capsys.readouterr().err)]
    assert len(set(shown)) >= 2 and max(shown) >= MILLION // 2, f"the listing's progress showed {shown}"


def test_a_run_without_progress_loads_its_folder_without_bars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dcgan train --no-progress` (progress=False) prints no listing or decoding bar while it reads a folder;
    with progress on, both bars are drawn."""
    from dcgan.cli import main

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / f"{i:02d}.png")
    base = ["train", "--data", str(data), "--image-size", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "8"]
    base += ["--steps", "1", "--precision", "fp32"]
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache-quiet"))  # each run decodes the folder itself
    assert main([*base, "--out", str(tmp_path / "quiet"), "--no-progress"]) == 0
    quiet = capsys.readouterr().err
    assert "listing data" not in quiet and "decoding data" not in quiet, quiet
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache-loud"))
    assert main([*base, "--out", str(tmp_path / "loud")]) == 0
    loud = capsys.readouterr().err
    assert "listing data" in loud and "decoding data" in loud, "the bars this test looks for are drawn"
