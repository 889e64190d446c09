"""`dcgan dedup`: find near-duplicate images with the paper's autoencoder hash and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dcgan.cli.common import non_negative_int, positive_int
from dcgan.dedup import DEFAULT_RADIUS, DEFAULT_STEPS, METHODS


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dedup",
        help="find near-duplicate images (the paper's autoencoder hash, section 4.1.1)",
        description="Train (or load) a 3072-128-3072 denoising autoencoder on 32x32 centre crops, hash every image "
        "by its binarised code, and group images whose hashes collide, plus byte-identical files. "
        "Writes report.json and contact sheets; never modifies the data.",
    )
    p.add_argument("--data", required=True, metavar="NAME|FOLDER|LIST.txt", help="a folder, a .txt list or a set name")
    p.add_argument("--data-root", type=Path, help="where standard data sets live (default $DCGAN_DATA, then ./data)")
    p.add_argument("--out", type=Path, help="report folder (default: dedup-<data name> in the current folder)")
    p.add_argument("--apply", action="store_true", help="write kept.txt (a valid --data for dcgan train)")
    p.add_argument("--links", action="store_true", help="with --apply, also a folder kept/ of links to the kept files")
    p.add_argument("--model", type=Path, help="reuse an autoencoder.safetensors from an earlier run")
    p.add_argument(
        "--method", default="autoencoder", choices=METHODS, help="autoencoder (default), or the baselines phash, dhash"
    )
    p.add_argument(
        "--radius",
        type=non_negative_int,
        default=DEFAULT_RADIUS,
        help=f"also group hashes this many bits apart (default {DEFAULT_RADIUS}; 0 = exact collisions, the paper's rule)",
    )
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 or 3 (default: the data's own)")
    p.add_argument("--train-images", type=positive_int, default=20_000, help="images to train on (default 20000)")
    p.add_argument(
        "--steps", type=non_negative_int, default=DEFAULT_STEPS, help=f"training steps of 128 (default {DEFAULT_STEPS})"
    )
    p.add_argument("--chunk", type=positive_int, default=1024, help="images decoded at a time (default 1024)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_dedup)


def run_dedup(args: argparse.Namespace) -> int:
    from dcgan.dedup import deduplicate

    out = args.out or Path(f"dedup-{Path(str(args.data).rstrip('/')).stem.replace(':', '-') or 'data'}")
    result = deduplicate(
        args.data, out, root=args.data_root, channels=args.channels, method=args.method, model=args.model,
        radius=args.radius, train_images=args.train_images, steps=args.steps, chunk=args.chunk, seed=args.seed,
        device=args.device, apply=args.apply, links=args.links, progress=not args.no_progress,
    )  # fmt: skip
    c = result.counts()
    print(
        f"{c['images']} images ({c['unreadable']} unreadable): {c['groups']} groups of near-duplicates, "
        f"{c['near_duplicates']} images to drop ({c['exact_duplicates']} byte-identical); {c['kept']} kept. "
        f"Hashed at {result.images_per_s:,.0f} images/s."
    )
    print(f"Report: {out / 'report.json'}")
    if args.apply:
        kept = out / ("kept.txt" if result.has_files else "kept_indices.txt")
        print(f"Kept list: {kept}" + (f" (train on it: dcgan train --data {kept})" if result.has_files else ""))
    return 0
