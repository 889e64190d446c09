"""Precision and recall of `dcgan dedup` on planted near-duplicates, against perceptual-hash baselines.

Copies N real faces (UTKFace 64x64, one of each of its ~100 byte-identical pairs) into a temporary folder,
then plants M altered copies of M of them:
resized (48 or 96 px), re-encoded as JPEG at quality 10-25, shifted/cropped by 2-4 px, recoloured
(brightness, contrast, saturation within 10-15%), and all of these at once. Every method runs through the same
pipeline (`deduplicate`), and is scored on pairs: a predicted pair is two images in the same group; a true
pair is an original and its planted copy. Precision = true predicted pairs / predicted pairs, recall = true
pairs found / planted pairs. images/s is the streaming hash pass (decode + hash + sha256), training excluded.

    python benchmarks/dedup_quality.py --plot docs/images/dedup_pr.png   # 1,000 originals + 300 copies
    python benchmarks/dedup_quality.py --originals 3000 --copies 600 --radii 0,2,4,8
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import random
import shutil
import tempfile
from pathlib import Path

from PIL import Image, ImageEnhance

from dcgan.dedup import DEFAULT_STEPS, HashAutoencoder, deduplicate, train_autoencoder

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "utkface64"
KINDS = ("resize", "jpeg", "shift", "recolour", "all")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def alter(image: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, int]:
    """A near-duplicate of `image` of the given kind, and the JPEG quality to save it at."""
    w, h = image.size
    quality = 90
    if kind in ("shift", "all"):
        dx, dy = rng.randint(2, 4), rng.randint(2, 4)
        left, top = rng.choice((0, dx)), rng.choice((0, dy))
        image = image.crop((left, top, left + w - dx, top + h - dy)).resize((w, h), Image.Resampling.BICUBIC)
    if kind in ("recolour", "all"):
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.88, 1.12))
        image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.88, 1.12))
        image = ImageEnhance.Color(image).enhance(rng.uniform(0.85, 1.15))
    if kind in ("resize", "all"):
        side = rng.choice((48, 96))
        image = image.resize((side, side), Image.Resampling.LANCZOS)
    if kind in ("jpeg", "all"):
        quality = rng.randint(10, 25)
    return image, quality


def plant(folder: Path, originals: int, copies: int, seed: int = 0) -> dict[str, str]:
    """Fill `folder` with originals and altered copies; returns {copy path: original path}."""
    rng = random.Random(seed)
    unique = {hashlib.sha256(f.read_bytes()).digest(): f for f in sorted(FACES.glob("*.jpg"), reverse=True)}
    files = sorted(unique.values())  # UTKFace holds ~100 byte-identical pairs: one of each, or they count as misses
    picked = rng.sample(files, originals)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, f in enumerate(picked):
        names.append(folder / f"orig_{i:05d}.jpg")
        shutil.copyfile(f, names[-1])
    truth = {}
    for j, (i, kind) in enumerate(zip(rng.sample(range(originals), copies), itertools.cycle(KINDS), strict=False)):
        image, quality = alter(Image.open(names[i]).convert("RGB"), kind, rng)
        path = folder / f"copy_{j:05d}_{kind}.jpg"
        image.save(path, "JPEG", quality=quality)
        truth[str(path)] = str(names[i])
    return truth


def score(groups: list[list[str]], truth: dict[str, str]) -> tuple[float, float, dict[str, float]]:
    """Pair precision, pair recall, and recall per kind of alteration."""
    group_of = {p: g for g, members in enumerate(groups) for p in members}
    predicted = sum(len(g) * (len(g) - 1) // 2 for g in groups)
    found = {c for c, o in truth.items() if c in group_of and group_of.get(o) == group_of[c]}
    # Two copies of one original are a true pair too, but `plant` makes at most one copy per original.
    precision = len(found) / predicted if predicted else 1.0
    per_kind = {k: sum(c in found for c in truth if c.endswith(f"_{k}.jpg")) / max(1, sum(c.endswith(f"_{k}.jpg") for c in truth)) for k in KINDS}  # fmt: skip
    return precision, len(found) / len(truth), per_kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--originals", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=300)
    parser.add_argument("--radii", default="0,2,4,8,12", help="Hamming radii to try, comma-separated")
    parser.add_argument(
        "--methods",
        default="autoencoder,untrained,phash,dhash",
        help="autoencoder (trained as dcgan dedup does), untrained (its random initial weights), phash, dhash",
    )
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="autoencoder training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="also copy the planted folder here")
    parser.add_argument("--plot", type=Path, help="save a precision-recall chart (PNG) here")
    args = parser.parse_args()
    if not FACES.is_dir():
        raise SystemExit(f"needs the UTKFace faces at {FACES}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "planted"
        truth = plant(folder, args.originals, args.copies, args.seed)
        if args.keep:
            shutil.copytree(folder, args.keep, dirs_exist_ok=True)
        print(f"{args.originals} originals + {len(truth)} planted copies ({', '.join(KINDS)}), seed {args.seed}\n")
        header = f"| method | radius | precision | recall | images/s | {' | '.join(f'recall {k}' for k in KINDS)} |"
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        rows: list[tuple[str, int, float, float]] = []
        for method in args.methods.split(","):
            # trained once for every radius; "untrained" shows what the training adds to random projections
            model = _trained(folder, args, 0 if method == "untrained" else args.steps) if "trained" in method else None
            for radius in (int(r) for r in args.radii.split(",")):
                result = deduplicate(folder, method="autoencoder" if model else method, radius=radius, model=model)
                p, r, kinds = score(result.groups, truth)
                rows.append((method, radius, p, r))
                cols = " | ".join(f"{kinds[k]:.2f}" for k in KINDS)
                print(f"| {method} | {radius} | {p:.3f} | {r:.3f} | {result.images_per_s:,.0f} | {cols} |", flush=True)
    if args.plot:
        plot(rows, args.plot, f"{args.originals} faces + {len(truth)} planted near-duplicates")


def plot(rows: list[tuple[str, int, float, float]], path: Path, title: str) -> None:
    """Precision against recall, one line per method through its radii: all of it, and the top zoomed in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=90)
    for method in dict.fromkeys(m for m, *_ in rows):
        points = [(r, p, radius) for m, radius, p, r in rows if m == method]
        for ax in axes:
            ax.plot([x for x, _, _ in points], [y for _, y, _ in points], "o-", label=method)
        for x, y, radius in points:
            if y >= 0.85:
                axes[1].annotate(str(radius), (x, y), textcoords="offset points", xytext=(-3, 5), fontsize=7)
    axes[0].set(title=title, ylim=(-0.03, 1.03))
    axes[1].set(title="top, zoomed: the numbers are the radii", ylim=(0.85, 1.01))
    for ax in axes:
        ax.set(xlabel="recall (planted pairs found)", ylabel="precision (pairs)", xlim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)


def _trained(folder: Path, args: argparse.Namespace, steps: int) -> HashAutoencoder:
    """The autoencoder `dcgan dedup` would train on this folder (all of it: fewer than --train-images)."""
    from dcgan.dedup.stream import open_source

    source = open_source(folder)
    images = source.read(list(range(len(source.ids)))).images
    return train_autoencoder(images, steps=steps, seed=args.seed)


if __name__ == "__main__":
    main()
