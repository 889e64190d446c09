"""`dcgan extractor fit|list`: train and list the domain classifiers whose features the metrics use offline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dcgan.cli.common import non_negative_int, positive_int


def register(sub: Any) -> None:
    from dcgan.data import registry

    fittable = [d.name for d in registry.entries() if d.fittable]
    p = sub.add_parser("extractor", help="fit or list feature extractors for the metrics (offline FID etc.)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    f = actions.add_parser(
        "fit",
        help="train a domain classifier (LeNet for digits, small CNN for CIFAR-10) and save it with its accuracy",
    )
    f.add_argument("--data", required=True, help=f"{', '.join(fittable)} (needs a train and a test split)")
    f.add_argument("--data-root", help="where the data set lives")
    f.add_argument("--arch", choices=("lenet", "cnn"), help="default: lenet for the digit sets, cnn otherwise")
    f.add_argument("--epochs", type=positive_int, help="default: enough for about 2,000 (lenet) or 1,500 (cnn) steps")
    f.add_argument("--batch-size", type=positive_int, default=128)
    f.add_argument("--seed", type=non_negative_int, default=0)
    f.add_argument("--out", type=Path, help="file to write (default: <cache>/extractors/<arch>-<data>.safetensors)")
    f.add_argument("--device", default="cpu", help="cpu or cuda")
    f.add_argument("--download", action="store_true", help="fetch the data set if missing (needs internet)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=run_fit)

    a = actions.add_parser("list", help="the extractors in the cache folder, with their test accuracy")
    a.set_defaults(func=run_list)


def run_fit(args: argparse.Namespace) -> int:
    from dcgan.metrics.fit import fit

    path, meta = fit(
        args.data, root=args.data_root, arch=args.arch, epochs=args.epochs, out=args.out,
        batch_size=args.batch_size, seed=args.seed, device=args.device, download=args.download,
        progress=not args.quiet,
    )  # fmt: skip
    accuracy = float(meta["test_accuracy"])
    print(
        f"{meta['name']}: test accuracy {accuracy:.2%} on {int(meta['test_images']):,} {args.data} test images "
        f"after {meta['epochs']} epochs ({meta['seconds']} s). Wrote {path}"
    )
    if args.out is not None:
        print(f"Use it with --features {path}")
    else:
        print(f"Use it with --features {meta['name']}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from dcgan.metrics.extractors import available, extractor_dir, load_extractor_file

    found = available()
    if not found:
        print(f"No extractors in {extractor_dir()}; make one with `dcgan extractor fit --data fashion-mnist`.")
        return 0
    print(f"{'name':<24}{'test accuracy':>14}  {'epochs':>6}  file")
    for path in found:
        meta = load_extractor_file(path).meta
        print(f"{path.stem:<24}{float(meta.get('test_accuracy', 'nan')):>14.2%}  {meta.get('epochs', '?'):>6}  {path}")
    return 0
