"""The README and docs/ point at things that exist: files, images, headings, tests, and CI's test command.

Every relative link and image target in README.md and docs/*.md must exist; every `#anchor` must name a heading
of its target file under GitHub's slug rules; every `tests/...py::test_name` a page cites must be a test that
exists; every figure in docs/images/ must be shown by some page; and the README's install-and-test command must
be the one `.ci/run` runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
IDS = [str(p.relative_to(REPO)) for p in PAGES]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_TARGET = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CITED_TEST = re.compile(r"`(?:(tests/[\w/]+\.py))?::(\w+)")
CITED_FILE = re.compile(r"\btests/[\w/]+\.py\b")


def prose_lines(path: Path) -> list[str]:
    """The page's lines outside fenced code blocks (code blocks hold shell comments and examples, not links)."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        lines.append("" if fenced else line)
    return lines


def links(path: Path) -> list[str]:
    """Every link and image target in the page's prose, code spans removed first."""
    found = []
    for line in prose_lines(path):
        text = INLINE_CODE.sub(lambda m: m.group(2) if "](" in m.group(2) else "code", line)
        found += [m.group(2) for m in LINK.finditer(text)]
        found += [m.group(1) for m in HTML_TARGET.finditer(text)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation but `-` and `_` removed, spaces to `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts by its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading in a markdown file (repeated headings get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        count = seen.get(base, 0)
        out.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return out


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) is not None


def test_there_are_pages() -> None:
    assert (REPO / "README.md").is_file()
    assert len(PAGES) > 5, "docs/ should hold one page per area"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_relative_link_and_image_exists(page: Path) -> None:
    missing = []
    for target in links(page):
        if is_external(target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.name} links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_anchor_names_a_heading(page: Path) -> None:
    broken = []
    for target in links(page):
        if is_external(target) or "#" not in target:
            continue
        path, anchor = target.split("#", 1)
        file = page if not path else (page.parent / path)
        if file.suffix != ".md" or not file.is_file():
            continue  # a missing file is the other test's failure
        if anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.name} has anchors that name no heading: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_cited_test_exists(page: Path) -> None:
    """`tests/test_x.py::test_name` (and `::test_other` after it on the same line) names a test in that file."""
    missing = []
    for line in prose_lines(page):
        for name in CITED_FILE.findall(line):
            if not (REPO / name).is_file():
                missing.append(name)
        current = None
        for m in CITED_TEST.finditer(line):
            current = m.group(1) or current
            if current is None:
                missing.append(f"::{m.group(2)} (no test file before it on the line)")
                continue
            file = REPO / current
            if not file.is_file() or not re.search(
                rf"^\s*(?:async\s+)?(?:def|class)\s+{m.group(2)}\b", file.read_text(), re.M
            ):
                missing.append(f"{current}::{m.group(2)}")
    assert not missing, f"{page.name} cites tests that do not exist: {missing}"


def test_every_figure_is_shown() -> None:
    shown = {(page.parent / t.split("#", 1)[0]).resolve() for page in PAGES for t in links(page) if not is_external(t)}
    unused = [p.name for p in sorted((REPO / "docs" / "images").iterdir()) if p.resolve() not in shown]
    assert not unused, f"figures in docs/images/ that no page shows: {unused}"


def test_slug_follows_github() -> None:
    assert (
        slug("Feature extractors (`--features inception|NAME|PATH`)")
        == "feature-extractors---features-inceptionnamepath"
    )
    assert slug("Guided backpropagation of D's features (Figure 5)") == "guided-backpropagation-of-ds-features-figure-5"
    assert slug("Against the tutorial loop: `benchmarks/train_speed.py`") == (
        "against-the-tutorial-loop-benchmarkstrain_speedpy"
    )


# ----------------------------------------------------------------------------------------------- README vs CI
def shell_commands(text: str) -> list[list[str]]:
    """Simple commands of a shell text: comments dropped, continuations joined, split on `&&`, each cut at the first
    `||`, `|`, `;` or redirection, with the flags that change only output (`-q`, `--durations=N`) removed."""
    joined = re.sub(r"\\\n", " ", text)
    commands = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            tokens = []
            try:
                words = shlex.split(part, comments=True)
            except ValueError:  # a quote that spans an `&&`: not one of the simple commands compared here
                continue
            for token in words:
                if token in ("||", "|", ";") or re.match(r"^\d?>", token):
                    break
                if token == "-q" or token.startswith("--durations"):
                    continue
                tokens.append(token)
            if tokens:
                commands.append(tokens)
    return commands


def readme_first_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^```(?:bash|sh)\n(.*?)^```", text, re.M | re.S)
    assert m, "README.md should open with a bash block of the commands that work on a fresh machine"
    assert text.index(m.group(0)) < text.index("\n## "), "the commands should come before the first section"
    return m.group(1)


def test_readme_opens_with_exactly_two_commands() -> None:
    lines = [ln for ln in readme_first_block().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) == 2, lines
    assert lines[0].endswith(".venv/bin/dcgan train")
    assert lines[1].endswith(".venv/bin/python -m pytest")


def test_readme_test_command_is_what_ci_runs() -> None:
    install_and_test = [ln for ln in readme_first_block().splitlines() if "pytest" in ln and not ln.startswith("#")]
    readme = shell_commands(install_and_test[0])
    ci = shell_commands((REPO / ".ci" / "run").read_text(encoding="utf-8"))
    assert readme[-1][:3] == [".venv/bin/python", "-m", "pytest"]
    for command in readme:
        assert command in ci, f"the README runs `{shlex.join(command)}`, which .ci/run does not: {ci}"
