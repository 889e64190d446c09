"""What a dedup run leaves in its output folder: report.json, contact sheets of the groups, and the kept list.

Nothing here touches the user's files: `kept.txt` lists the files to keep (it is a valid `--data` for
`dcgan train`), and `kept/` holds symbolic links to them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from dcgan.dedup import DedupResult
    from dcgan.dedup.stream import Source

THUMB, PAD, PER_ROW, ROWS_PER_SHEET = 64, 3, 8, 8
KEPT, DROPPED = (40, 170, 60), (200, 50, 40)


def write_report(result: DedupResult, out: Path) -> Path:
    """`report.json`: counts, settings, timings, `groups` and `exact_groups` (file paths, the kept one first)."""
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "data": result.data,
        "method": result.method,
        "radius": result.radius,
        "counts": result.counts(),
        "images_per_s": round(result.images_per_s, 1),
        "hash_seconds": round(result.hash_seconds, 2),
        "train_seconds": round(result.train_seconds, 2),
        "code_bits_used": round(result.code_entropy, 1),
        "skipped_buckets": result.skipped_buckets,
        "model": None if result.model_path is None else str(result.model_path),
        "groups": result.groups,
        "exact_groups": result.exact_groups,
        "unreadable": result.skipped,
    }
    path = out / "report.json"
    tmp = path.with_name(".report.json.tmp")
    with tmp.open("w") as f:
        json.dump(doc, f, indent=1)  # streamed: a million paths never sit in one string
    tmp.replace(path)
    return path


def _framed(array: np.ndarray, color: tuple[int, int, int]) -> Image.Image:
    image = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)).convert("RGB")
    framed = Image.new("RGB", (THUMB + 2 * PAD, THUMB + 2 * PAD), color)
    framed.paste(image, (PAD, PAD))
    return framed


def _rows(groups: list[np.ndarray], width: int, cell: int, gap: int) -> list[list[np.ndarray]]:
    """Pack groups (each cut to PER_ROW members) left to right into rows at most `width` pixels wide."""
    rows: list[list[np.ndarray]] = [[]]
    used = 0
    for group in groups:
        need = min(len(group), PER_ROW) * cell + gap
        if rows[-1] and used + need > width:
            rows.append([])
            used = 0
        rows[-1].append(group)
        used += need
    return rows if rows[0] else []


def write_contact_sheets(
    groups: list[np.ndarray], source: Source, out: Path, max_sheets: int = 8, prefix: str = "groups"
) -> list[Path]:
    """PNG sheets of the groups, biggest first, packed into rows: the kept copy framed green, the others red.

    A group larger than PER_ROW shows its first PER_ROW members, the last one marked "+n" for the rest.
    """
    cell, gap = THUMB + 3 * PAD, 4 * PAD
    width = PER_ROW * cell + PER_ROW // 2 * gap  # four pairs to a row
    rows = _rows(groups, width, cell, gap)[: max_sheets * ROWS_PER_SHEET]
    paths = []
    for sheet_no, start in enumerate(range(0, len(rows), ROWS_PER_SHEET)):
        sheet_rows = rows[start : start + ROWS_PER_SHEET]
        sheet = Image.new("RGB", (width, len(sheet_rows) * cell + PAD), "white")
        draw = ImageDraw.Draw(sheet)
        for r, row in enumerate(sheet_rows):
            x = PAD
            for group in row:
                members = list(group[:PER_ROW])
                chunk = source.read(members, size=THUMB)
                found = {int(p): a for p, a in zip(chunk.positions, chunk.images, strict=True)}
                for c, pos in enumerate(members):
                    if pos in found:
                        sheet.paste(_framed(found[pos], KEPT if c == 0 else DROPPED), (x, r * cell + PAD))
                    x += cell
                if len(group) > PER_ROW:
                    draw.text((x - cell + 2 * PAD, r * cell + 2 * PAD), f"+{len(group) - PER_ROW}", fill="white")
                x += gap
        path = out / f"{prefix}_{sheet_no:03d}.png"
        sheet.save(path, optimize=True)
        paths.append(path)
    return paths


def write_kept(result: DedupResult, out: Path, links: bool = False) -> list[Path]:
    """`kept_indices.txt` (positions in the data set), `kept.txt` (paths) and with `links` a `kept/` folder.

    `kept.txt` and `kept/` need images that are files; a standard set without files gets the indices only.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "kept_indices.txt"]
    written[0].write_text("".join(f"{i}\n" for i in result.kept_positions))
    if not result.has_files:
        return written
    kept = [result.ids[i] for i in result.kept_positions]
    (out / "kept.txt").write_text("".join(f"{os.path.abspath(p)}\n" for p in kept))
    written.append(out / "kept.txt")
    if links:
        folder = out / "kept"
        folder.mkdir(exist_ok=True)
        for old in folder.iterdir():  # links from an earlier run; never anything else
            if old.is_symlink():
                old.unlink()
        for i, p in zip(result.kept_positions, kept, strict=True):
            (folder / f"{i:07d}_{Path(p).name}").symlink_to(os.path.abspath(p))
        written.append(folder)
    return written
