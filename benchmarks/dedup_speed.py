"""Throughput and peak memory of `dcgan dedup` on a million 64x64 images (a real folder listed again and again).

Writes a .txt list naming the UTKFace faces (9,780 64x64 JPEGs) over and over up to --images paths, then runs
the whole pipeline on it as `dcgan dedup --data LIST.txt` would: decode in chunks, hash, sha256, group, write
the report. Prints images/s of the hash pass and the process's peak resident memory. The repeats are
byte-identical, so they only exercise exact grouping; the near-collision search (multi-index hashing) is
timed separately on a million synthetic codes: real codes of the faces, each copied ~100 times with every bit
flipped with probability --flip, so that buckets have a realistic skew.

    python benchmarks/dedup_speed.py --images 1000000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dcgan.dedup import DEFAULT_RADIUS, deduplicate, train_autoencoder
from dcgan.dedup.groups import group_duplicates
from dcgan.dedup.stream import open_source

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "utkface64"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_codes(real: np.ndarray, n: int, flip: float, seed: int = 0) -> np.ndarray:
    """n codes: random real codes with each bit flipped with probability `flip` (built 100,000 at a time)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), np.uint8)
    for start in range(0, n, 100_000):
        bits = np.unpackbits(real[rng.integers(0, len(real), min(100_000, n - start))], axis=1)
        bits ^= (rng.random(bits.shape, dtype=np.float32) < flip).astype(np.uint8)
        out[start : start + len(bits)] = np.packbits(bits, axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=300, help="autoencoder steps (speed does not depend on them)")
    parser.add_argument("--radius", type=int, default=DEFAULT_RADIUS)
    parser.add_argument("--flip", type=float, default=0.03, help="bit-flip rate of the synthetic codes")
    parser.add_argument("--skip-pipeline", action="store_true", help="only time the near-collision search")
    args = parser.parse_args()
    faces = sorted(str(p) for p in FACES.glob("*.jpg"))
    if not faces:
        raise SystemExit(f"needs the UTKFace faces at {FACES}")
    source = open_source(FACES)
    images = source.read(list(range(len(source.ids)))).images
    model = train_autoencoder(images[:2000], steps=args.steps)

    if not args.skip_pipeline:
        with tempfile.TemporaryDirectory() as tmp:
            listing = Path(tmp) / "million.txt"
            with listing.open("w") as f:
                f.writelines(faces[i % len(faces)] + "\n" for i in range(args.images))
            rss_before = peak_rss_mib()
            start = time.perf_counter()
            result = deduplicate(listing, Path(tmp) / "report", model=model, radius=args.radius, chunk=args.chunk)
            total = time.perf_counter() - start
        c = result.counts()
        print(f"Whole pipeline on {c['images']:,} listed 64x64 JPEGs (radius {args.radius}, chunk {args.chunk}):\n")
        print("| images | hash pass (images/s) | whole run (s) | groups | kept | peak memory (MiB) | before (MiB) |")
        print("|---|---|---|---|---|---|---|")
        print(
            f"| {c['images']:,} | {result.images_per_s:,.0f} | {total:,.0f} | {c['groups']:,} | {c['kept']:,} "
            f"| {peak_rss_mib():,.0f} | {rss_before:,.0f} |\n",
            flush=True,
        )

    real = model.hash(torch.from_numpy(images))
    codes = synthetic_codes(real, args.images, args.flip)
    print(f"Grouping {len(codes):,} synthetic 128-bit codes (real codes, bits flipped with p={args.flip}):\n")
    print("| radius | seconds | groups | buckets skipped |")
    print("|---|---|---|---|")
    for radius in sorted({0, 2, args.radius}):
        start = time.perf_counter()
        groups, _, skipped = group_duplicates(codes, radius=radius)
        print(f"| {radius} | {time.perf_counter() - start:,.1f} | {len(groups):,} | {skipped} |", flush=True)


if __name__ == "__main__":
    main()
