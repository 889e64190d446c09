"""`dcgan evaluate` (FID, KID, IS, precision/recall of a trained generator) and `dcgan nearest` (memorisation)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dcgan.cli.common import non_negative_int, positive_int


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--data", help="the real data set or folder (default: the one the run trained on)")
    p.add_argument("--data-root", help="where the standard data sets live (default: the run's)")
    p.add_argument(
        "--features",
        metavar="inception|NAME|PATH",
        help="feature extractor: the FID Inception, a fitted extractor such as lenet-fashion-mnist, or a file "
        "(.safetensors extractor, .pth Inception weights); default: the data set's domain extractor, else inception",
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="picks the latents (default 0)")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if an EMA copy exists")
    p.add_argument("--snapshots", type=positive_int, metavar="K",
                   help="draw from a mixture of the run's newest K snapshots of G (default: as many as the run "
                   "kept with --snapshots; 1: the checkpoint's G alone)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch-size", type=positive_int, default=250, help="images per forward pass (default 250)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="FID, KID, Inception Score and precision/recall of a trained generator",
        description="Measure a generator's samples against real images: fid (Fréchet distance, all reference "
        "images), kid (unbiased kernel distance), is (Inception Score, on the extractor's classes), pr (improved "
        "precision and recall, k=3), classes (a domain classifier's mean top-class probability and the entropy of "
        "its mean class distribution), coverage (with a classifier fitted on labelled groups, e.g. "
        "cnn-utkface64-gender: each group's share among the samples over its share among the reference images); "
        "for a class-conditional generator, whose samples are drawn evenly over its classes, also intrafid (FID "
        "per class against the real images of that class, averaged) and recognised (the share of samples the "
        "classifier reads as the class they were drawn with; its accuracy on real test images is the ceiling). "
        "Values are named with the sample count (fid10k). Reference features are cached per data set, split and "
        "extractor.",
    )
    _common(p)
    p.add_argument(
        "--metrics",
        help="comma-separated: fid, kid, is, pr, classes, coverage, intrafid, recognised (default: fid,kid,is,pr; "
        "a conditional generator adds intrafid and recognised where the reference and extractor allow them)",
    )
    p.add_argument("--n", type=positive_int, default=10_000, help="generated samples (default 10000)")
    p.add_argument("--split", choices=("train", "test"), default="train", help="reference split (default train)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as one JSON object")
    p.add_argument("--download", action="store_true", help="fetch missing data or Inception weights (needs internet)")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser(
        "nearest",
        help="memorisation check: generated samples beside their nearest training images",
        description="For generated samples, find the nearest training images in the extractor's feature space; "
        "write a picture (sample | nearest neighbours), a histogram of nearest distances against held-out test "
        "images, and a JSON summary.",
    )
    _common(p)
    p.add_argument(
        "--out", type=Path, required=True, help="folder for nearest.png, nearest_distances.png, nearest.json"
    )
    p.add_argument("--show", type=positive_int, default=8, help="samples in the picture (default 8)")
    p.add_argument("--k", type=positive_int, default=5, help="neighbours per sample (default 5)")
    p.add_argument("--n", type=positive_int, default=1000, help="samples for the histogram (default 1000)")
    p.set_defaults(func=run_nearest)


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    """The run and what it samples from (G and its last snapshots, `Run.sampler`); the data set and root default
    to the ones it trained on."""
    from dcgan.run import Run

    run = Run.open(args.run, device=args.device)
    args.data = args.data or run.config.data
    args.data_root = args.data_root if args.data_root is not None else run.config.data_root
    return run, run.sampler(ema=not args.no_ema, snapshots=args.snapshots)


def run_evaluate(args: argparse.Namespace) -> int:
    from dcgan.metrics.evaluate import evaluate
    from dcgan.mixture import drawn_by

    run, generator = _open(args)
    result = evaluate(
        generator, data=args.data, root=args.data_root, metrics=args.metrics, n=args.n, features=args.features,
        split=args.split, seed=args.seed, device=args.device, batch_size=args.batch_size, download=args.download,
        progress=not args.quiet,
    )  # fmt: skip
    ema = run.has_ema and not args.no_ema
    steps = list(getattr(generator, "steps", [run.step]))
    result.info.update({"checkpoint": str(run.path), "step": run.step, "ema": ema, "snapshot_steps": steps})
    drawn = f"{args.n:,} samples"
    if generator.num_classes:
        each, extra = divmod(args.n, generator.num_classes)
        evenly = f"{each:,}{f' or {each + 1:,}' if extra else ''} of each of {generator.num_classes} classes"
        if generator.class_shares is None:
            drawn += f" ({evenly})"
        else:
            mix = ", ".join(f"{name} {share:.1%}" for name, share in zip(generator.classes, generator.class_shares))
            per_class = any(name.startswith(("intrafid", "recognised")) for name in result.values)
            drawn += f" in the training images' mix of classes ({mix})" + (f"; {evenly}" if per_class else "")
    print(
        f"{run.path} (step {run.step}{', EMA generator' if ema else ''}{drawn_by(generator)}), {drawn}, seed {args.seed}"
    )
    print(result.table())
    if args.json:
        result.write_json(args.json)
        print(f"Wrote {args.json}")
    return 0


def run_nearest(args: argparse.Namespace) -> int:
    from dcgan.metrics.nearest import memorisation_check, write_memorisation_check
    from dcgan.run import CHECKPOINT_DIR

    run, generator = _open(args)
    result = memorisation_check(
        generator, data=args.data, root=args.data_root, features=args.features, show=args.show, k=args.k, n=args.n,
        seed=args.seed, device=args.device, batch_size=args.batch_size, progress=not args.quiet,
    )  # fmt: skip
    in_folder = run.path.parent.name == CHECKPOINT_DIR
    title = f"{run.folder.root.name if in_folder else run.path.name}, step {run.step}"
    summary = write_memorisation_check(result, args.out, title)
    print(json.dumps(summary, indent=2))
    print(f"Wrote {args.out / 'nearest.png'}, {args.out / 'nearest_distances.png'} and {args.out / 'nearest.json'}")
    return 0
