"""Every ```python block in README.md and docs/*.md runs, so the examples cannot drift from the code.

Each block runs on its own in a fresh temporary folder holding a copy of a tiny trained run at `runs/digits32`
(the default preset's data and shape, 4 steps), which the examples use. A block that cannot run in a test is
marked in the markdown by `<!-- snippet: skip (reason) -->` on the line before it; at most MAX_SKIPS may exist.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import dcgan

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MAX_SKIPS = 3
SKIP = re.compile(r"^\s*<!--\s*snippet:\s*skip\s*\((.+)\)\s*-->\s*$")
FENCE = re.compile(r"^\s*(```|~~~)\s*(\w*)")


@dataclass(frozen=True)
class Snippet:
    page: str  # path relative to the repository
    index: int  # among the page's python blocks, from 0
    line: int  # of the opening fence, from 1
    code: str
    skip: str | None  # the reason given by a skip marker

    @property
    def id(self) -> str:
        return f"{self.page}-{self.index}"


def snippets(path: Path) -> list[Snippet]:
    """The python blocks of a page, with the skip marker (if any) on the last non-blank line before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if re.match(rf"^\s*{m.group(1)}\s*$", lines[j])), len(lines))
        if m.group(2) == "python":
            before = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
            marker = SKIP.match(before)
            code = "\n".join(lines[i + 1 : end]) + "\n"
            rel = str(path.relative_to(REPO))
            found.append(Snippet(rel, len(found), i + 1, code, marker.group(1) if marker else None))
        i = end + 1
    return found


ALL = [s for page in PAGES for s in snippets(page)]


def train_function():  # type: ignore[no-untyped-def]
    """`dcgan.train(config, out)`, or the function in the `dcgan.train` module before that existed."""
    train = getattr(dcgan, "train", None)
    if callable(train):
        return train
    from dcgan.train import train

    return train


@pytest.fixture(scope="module")
def tiny_digits32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step run of the default preset (32x32 digits from mnist5k) at `<tmp>/runs/digits32`."""
    root = tmp_path_factory.mktemp("docs-run")
    config = dcgan.build_config("digits32", steps=4, log_every=1, sample_every=2, checkpoint_every=2)
    train_function()(config, root / "runs" / "digits32", progress=False)
    return root / "runs" / "digits32"


def test_pages_have_examples() -> None:
    assert ALL, "README.md and docs/ should hold python examples"
    assert any(s.page == "README.md" for s in ALL), "the README should show the Python API"


def test_skip_markers_are_few_and_each_marks_a_python_block() -> None:
    markers = [
        (str(page.relative_to(REPO)), n + 1)
        for page in PAGES
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines())
        if SKIP.match(line)
    ]
    skipped = [s for s in ALL if s.skip is not None]
    assert len(markers) <= MAX_SKIPS, f"{len(markers)} skip markers (at most {MAX_SKIPS}): {markers}"
    assert len(skipped) == len(markers), f"a skip marker must sit right before a ```python block: {markers}"


# Marked blocks are not collected at all (the test above keeps them few): on CI a skipped test fails the run.
RUNNABLE = [s for s in ALL if s.skip is None]


@pytest.mark.parametrize("snippet", RUNNABLE, ids=[s.id for s in RUNNABLE])
def test_snippet_runs(snippet: Snippet, tiny_digits32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(tiny_digits32, tmp_path / "runs" / "digits32")
    monkeypatch.chdir(tmp_path)
    code = compile(snippet.code, f"{snippet.page}, python block {snippet.index} (line {snippet.line})", "exec")
    exec(code, {"__name__": "__docs__"})
