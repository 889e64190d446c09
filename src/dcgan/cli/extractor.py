"""`dcgan extractor fit|list`: train and list the domain classifiers whose features the metrics use offline."""

from __future__ import annotations

import argparse
import json
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
        help="train a domain classifier (LeNet for digits, small CNN for CIFAR-10 and photographs) and save it with "
        "its accuracy",
    )
    f.add_argument(
        "--data",
        required=True,
        help=f"{', '.join(fittable)}, or a labelled folder (one subfolder per class, or --labels-from-name); "
        "where there is no test split, --holdout of the images is held out to measure it",
    )
    f.add_argument(
        "--labels-from-name",
        metavar="gender|race|age",
        help="read a folder's labels from UTKFace-style file names (AGE_GENDER_RACE_...); the extractor is named "
        "<arch>-<folder>-<field>, e.g. cnn-utkface64-gender",
    )
    f.add_argument(
        "--holdout", type=float, default=0.15, help="share held out (seeded by --seed) without a test split (0.15)"
    )
    f.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        help="move each class's logit so the held-out images (or the test split) are read in their labelled "
        "proportions, as coverage and --balance-groups count them (default: on where images are held out)",
    )
    f.add_argument("--data-root", help="where the data set lives")
    f.add_argument("--arch", choices=("lenet", "cnn"), help="default: lenet for the digit sets, cnn otherwise")
    f.add_argument("--epochs", type=positive_int, help="default: enough for about 2,000 (lenet) or 1,500 (cnn) steps")
    f.add_argument("--batch-size", type=positive_int, default=128)
    f.add_argument("--seed", type=non_negative_int, default=0)
    f.add_argument(
        "--members",
        type=positive_int,
        default=1,
        help="fit N classifiers (seeds --seed, --seed + 1, ...) and save them as one that reads their mean class "
        "probability, named <name>-xN: a coverage reading less tied to one seed's quirks on generated images (1)",
    )
    f.add_argument("--out", type=Path, help="file to write (default: <cache>/extractors/<name>.safetensors)")
    f.add_argument("--device", default="cpu", help="cpu or cuda")
    f.add_argument("--download", action="store_true", help="fetch the data set if missing (needs internet)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=run_fit)

    a = actions.add_parser("list", help="the extractors in the cache folder, with their (held-out) test accuracy")
    a.set_defaults(func=run_list)


def run_fit(args: argparse.Namespace) -> int:
    from dcgan.metrics.fit import fit

    path, meta = fit(
        args.data, root=args.data_root, arch=args.arch, epochs=args.epochs, out=args.out,
        batch_size=args.batch_size, seed=args.seed, device=args.device, download=args.download,
        progress=not args.quiet, labels_from_name=args.labels_from_name, holdout=args.holdout,
        calibrate=args.calibrate, members=args.members,
    )  # fmt: skip
    accuracy = float(meta["test_accuracy"])
    if meta["measured_on"] == "test split":
        on = f"test accuracy {accuracy:.2%} on {int(meta['test_images']):,} {args.data} test images"
    else:
        on = f"held-out accuracy {accuracy:.2%} on {int(meta['test_images']):,} images ({meta['measured_on']})"
    classes = ", ".join(json.loads(meta["classes"]))
    what = f"{args.members} classifiers (seeds {meta['member_seeds']}), each after" if args.members > 1 else "after"
    print(
        f"{meta['name']}: {on}, classes {classes}, {what} {meta['epochs']} epochs ({meta['seconds']} s). Wrote {path}"
    )
    if "heldout_read" in meta:
        names = json.loads(meta["classes"])
        read = lambda key: ", ".join(
            f"{n} {r:.2f}x" if r is not None else f"{n} -" for n, r in zip(names, json.loads(meta[key]), strict=True)
        )
        print(
            "Each class's share as read over its labelled share, on images it did not train on: calibrated "
            f"{read('heldout_read')} (cross-fitted on two halves; before: {read('uncalibrated_read')}, accuracy "
            f"{float(meta['uncalibrated_accuracy']):.2%})."
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
    rows = []
    for path in found:
        meta = load_extractor_file(path).meta
        classes = json.loads(meta["classes"]) if "classes" in meta else []
        rows.append(
            (path.stem, f"{float(meta.get('test_accuracy', 'nan')):.2%}", meta.get("measured_on", "test split"),
             str(len(classes) or "?"), meta.get("epochs", "?") + (f" x{meta['members']}" if "members" in meta else ""),
             str(path))
        )  # fmt: skip
    header = ("name", "accuracy", "measured on", "classes", "epochs", "file")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]),
                 row[3].rjust(widths[3]), row[4].rjust(widths[4]), row[5]]  # fmt: skip
        print("  ".join(cells))
    return 0
