"""Deduplicate a data set the paper's way (section 4.1.1): a denoising autoencoder's code as a semantic hash.

`deduplicate` trains (or loads) the 3072-128-3072 autoencoder on a sample of the data, hashes every image in
chunks (bounded memory, linear time), groups images whose hashes collide (and, with `radius`, those a few
bits apart) together with byte-identical files (sha256), and writes a report. It never modifies the data:
with `apply` it writes a list of the files to keep (and optionally a folder of links to them).

    from dcgan.dedup import deduplicate
    result = deduplicate("photos/", out="dedup-photos", apply=True)
    # dcgan train --data dedup-photos/kept.txt ...
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dcgan.dedup.autoencoder import HashAutoencoder, bit_entropy, load_autoencoder, save_autoencoder, train_autoencoder
from dcgan.dedup.groups import group_duplicates, keeper_first
from dcgan.dedup.perceptual import dhash, phash
from dcgan.dedup.report import write_contact_sheets, write_kept, write_report
from dcgan.dedup.stream import CROP, Source, chunks, open_source
from dcgan.errors import ConfigError, DataError

METHODS = ("autoencoder", "phash", "dhash")
MODEL_FILE = "autoencoder.safetensors"
#: Bits a near-duplicate's hash may differ by (the paper's rule, exact collision, is 0). 4 of 128 bits keeps
#: the search near-linear at a million images and quadruples recall, 0.13 to 0.55 at precision 0.994
#: (benchmarks/dedup_quality.py measures it).
DEFAULT_RADIUS = 4
DEFAULT_STEPS = 2000


@dataclass
class DedupResult:
    """Groups of near-duplicates among a data set's images, and what to keep."""

    data: str
    ids: list[str]  # every listed image (file path, or name[i])
    groups: list[list[str]]  # near-duplicate groups (exact ones included), the kept copy first, biggest first
    exact_groups: list[list[str]]  # byte-identical files, the kept copy first
    kept_positions: list[int]  # positions in `ids` of the images to keep (unreadable files are not kept)
    skipped: list[str]  # files that could not be decoded
    has_files: bool
    method: str = "autoencoder"
    radius: int = 0
    hash_seconds: float = 0.0
    train_seconds: float = 0.0
    code_entropy: float = 0.0  # bits of information in the codes (128 at most for the autoencoder)
    skipped_buckets: int = 0
    model_path: Path | None = None
    files_written: list[Path] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        decoded = len(self.ids) - len(self.skipped)
        return decoded / self.hash_seconds if self.hash_seconds > 0 else 0.0

    def counts(self) -> dict[str, int]:
        dropped = sum(len(g) - 1 for g in self.groups)
        return {
            "images": len(self.ids),
            "unreadable": len(self.skipped),
            "groups": len(self.groups),
            "exact_groups": len(self.exact_groups),
            "exact_duplicates": sum(len(g) - 1 for g in self.exact_groups),
            "near_duplicates": dropped,
            "kept": len(self.kept_positions),
        }


def _sample_images(source: Source, n: int, seed: int, chunk: int) -> np.ndarray:
    """The 32x32 crops of n images drawn at random (without replacement) from the source."""
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(source.ids), size=min(n, len(source.ids)), replace=False))
    parts = [source.read(picks[r.start : r.stop].tolist()).images for r in chunks(len(picks), chunk)]
    images = np.concatenate(parts) if parts else np.zeros((0, source.channels, CROP, CROP), np.uint8)
    if len(images) == 0:
        raise DataError(f"None of the {len(picks)} images sampled for training could be decoded.")
    return images


def _check_out(out: Path, source: Source) -> None:
    """Refuse an output folder inside the data folder: its sheets and links would join the data set."""
    if source.folder is not None and out.expanduser().resolve().is_relative_to(source.folder):
        raise ConfigError(f"--out {out} is inside the data folder {source.folder}; choose a folder outside it.")


def deduplicate(
    data: str | Path,
    out: str | Path | None = None,
    *,
    root: str | Path | None = None,
    channels: int | None = None,
    method: str = "autoencoder",
    model: str | Path | HashAutoencoder | None = None,
    radius: int = DEFAULT_RADIUS,
    train_images: int = 20_000,
    steps: int = DEFAULT_STEPS,
    chunk: int = 1024,
    seed: int = 0,
    device: str = "cpu",
    apply: bool = False,
    links: bool = False,
    max_sheets: int = 8,
    progress: bool = False,
) -> DedupResult:
    """Find near-duplicate and byte-identical images in a data set; with `out`, write the report.

    Args:
        data: a folder (searched recursively), a .txt list of image paths, or a standard set name.
        out: folder for `report.json`, the contact sheets `groups_*.png`, the autoencoder and `kept.txt`.
        root: where standard sets live (as for `load_images`).
        channels: 1 or 3; defaults to the data's own.
        method: "autoencoder" (the paper's hash), or the baselines "phash" / "dhash".
        model: a trained autoencoder (or its safetensors file) to reuse instead of training one.
        radius: also group hashes at most this many bits apart (0: only exact collisions, the paper's rule).
        train_images: how many images (drawn at random) the autoencoder is trained on.
        steps: autoencoder training steps (batches of 128).
        chunk: images decoded and hashed at a time (memory is bounded by this, not by the data set).
        seed: fixes the training sample and the autoencoder.
        device: "cpu" or "cuda" for the autoencoder.
        apply: write `kept.txt` (one path per line, a valid `--data`) and `kept_indices.txt` into `out`.
        links: with `apply`, also a folder `kept/` of symbolic links to the kept files.
        max_sheets: at most this many contact sheets (8 rows of groups each).
        progress: show progress bars.

    Raises:
        DataError: the data is missing or empty.
        ConfigError: a bad option (method, radius, output inside the data).
        CheckpointError: `model` is not a dedup autoencoder.
    """
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}.")
    if radius < 0 or radius >= 32 or chunk < 1 or train_images < 1 or steps < 0:
        raise ConfigError("--radius must be 0 to 31, --steps 0 or more, --chunk and --train-images at least 1.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available here; use --device cpu.")
    if (apply or links) and out is None:
        raise ConfigError("--apply needs an output folder (--out) for kept.txt.")
    source = open_source(data, root=root, channels=channels)
    out_dir = None if out is None else Path(out)
    if out_dir is not None:
        _check_out(out_dir, source)

    hasher: Callable[[np.ndarray], np.ndarray] = phash if method == "phash" else dhash
    bits, train_seconds, model_path = 64, 0.0, None
    if method == "autoencoder":
        start = time.perf_counter()
        net, model_path = _autoencoder(source, model, out_dir, train_images, steps, chunk, seed, device, progress)
        train_seconds = time.perf_counter() - start
        plan = net.hash_plan()
        hasher, bits = (lambda images: net.hash(torch.from_numpy(images), plan)), net.code_bits
    if radius >= bits // 4:
        raise ConfigError(f"--radius {radius} is too large for {bits}-bit hashes; use less than {bits // 4}.")

    start = time.perf_counter()
    hashed = _hash_all(source, hasher, chunk, progress)
    hash_seconds = time.perf_counter() - start
    positions, codes, digests, areas, nbytes = hashed
    groups, exact, skipped_buckets = group_duplicates(codes, digests, radius)
    ordered = sorted((keeper_first(g, areas, nbytes) for g in groups), key=lambda g: (-len(g), int(g.min())))
    exact_ordered = sorted((keeper_first(g, areas, nbytes) for g in exact), key=lambda g: (-len(g), int(g.min())))
    dropped = {int(i) for g in ordered for i in g[1:]}
    kept = [int(p) for k, p in enumerate(positions) if k not in dropped]
    name = lambda g: [source.ids[int(positions[i])] for i in g]
    decoded = set(positions.tolist())
    result = DedupResult(
        data=str(data), ids=source.ids, groups=[name(g) for g in ordered],
        exact_groups=[name(g) for g in exact_ordered], kept_positions=kept,
        skipped=[i for p, i in enumerate(source.ids) if p not in decoded],
        has_files=source.has_files, method=method, radius=radius, hash_seconds=hash_seconds,
        train_seconds=train_seconds, code_entropy=bit_entropy(codes), skipped_buckets=skipped_buckets,
        model_path=model_path,
    )  # fmt: skip
    if out_dir is not None:
        result.files_written.append(write_report(result, out_dir))
        sheet_groups = [positions[g] for g in ordered]
        result.files_written += write_contact_sheets(sheet_groups, source, out_dir, max_sheets)
        if model_path is not None and model_path.parent == out_dir:
            result.files_written.append(model_path)
        if apply or links:
            result.files_written += write_kept(result, out_dir, links)
    return result


def _autoencoder(
    source: Source,
    model: str | Path | HashAutoencoder | None,
    out_dir: Path | None,
    train_images: int,
    steps: int,
    chunk: int,
    seed: int,
    device: str,
    progress: bool,
) -> tuple[HashAutoencoder, Path | None]:
    """The hash network: given, loaded from a file, or trained on a sample of the source (and saved in out_dir)."""
    model_path = None
    if isinstance(model, HashAutoencoder):
        net = model.to(device).eval()
    elif model is not None:
        net, model_path = load_autoencoder(model, device), Path(model)
    else:
        sample = _sample_images(source, train_images, seed, chunk)
        net = train_autoencoder(sample, steps=steps, seed=seed, device=device, progress=progress)
        if out_dir is not None:
            model_path = save_autoencoder(net, out_dir / MODEL_FILE)
    if net.channels != source.channels or net.size != CROP:
        raise ConfigError(
            f"The autoencoder takes {net.channels}-channel images, the data has {source.channels}; "
            f"pass --channels {net.channels}."
        )
    return net, model_path


def _hash_all(
    source: Source, hasher: Callable[[np.ndarray], np.ndarray], chunk: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode and hash every image a chunk at a time: (positions, codes, digests, areas, nbytes) of those decoded."""
    from tqdm import tqdm

    n = len(source.ids)
    positions = np.empty(n, np.int64)
    digests = np.empty((n, 32), np.uint8)
    areas, nbytes = np.empty(n, np.int64), np.empty(n, np.int64)
    codes: np.ndarray | None = None
    count = 0
    with tqdm(total=n, desc="hashing", unit="img", leave=False, disable=not progress) as bar:
        for r in chunks(n, chunk):
            part = source.read(list(r))
            k = len(part.positions)
            if k:
                code = hasher(part.images)
                if codes is None:
                    codes = np.empty((n, code.shape[1]), np.uint8)
                codes[count : count + k] = code
                positions[count : count + k] = part.positions
                digests[count : count + k] = part.digests
                areas[count : count + k], nbytes[count : count + k] = part.areas, part.nbytes
                count += k
            bar.update(len(r))
    if codes is None:
        raise DataError(f"None of the {n} images could be decoded.")
    return positions[:count], codes[:count], digests[:count], areas[:count], nbytes[:count]


__all__ = [
    "DEFAULT_RADIUS",
    "DEFAULT_STEPS",
    "METHODS",
    "DedupResult",
    "HashAutoencoder",
    "deduplicate",
    "dhash",
    "load_autoencoder",
    "phash",
    "save_autoencoder",
    "train_autoencoder",
]
