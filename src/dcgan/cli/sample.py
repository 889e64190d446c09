"""`dcgan sample` and `dcgan info`: draw images from a run folder or checkpoint, or describe one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dcgan.cli.common import non_negative_int, positive_int
from dcgan.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw samples from a trained generator")
    p.add_argument("run", type=Path, metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--n", type=positive_int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs, grid.png and z.npy")
    p.add_argument("--seed", type=non_negative_int, default=0, help="the same seed gives the same images")
    p.add_argument("--nrow", type=positive_int, help="images per grid row (default: square)")
    p.add_argument("--sheet", action="store_true", help="also write sheet.png: the grid with each image's number")
    p.add_argument("--class", dest="class_", metavar="NAME|ID",
                   help="a class-conditional run: draw every sample in this class (a name or an id)")  # fmt: skip
    p.add_argument("--class-sheet", type=positive_int, nargs="?", const=8, metavar="ROWS",
                   help="a class-conditional run: also write classes.png, ROWS latents (default 8) each drawn in "
                   "every class: one row per z, one column per class")  # fmt: skip
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if an EMA copy exists")
    p.add_argument("--snapshots", type=positive_int, metavar="K",
                   help="draw from a mixture of the run's newest K snapshots of G (default: as many as the run kept "
                   "with --snapshots; 1: the checkpoint's G alone); --sheet draws with the checkpoint's G, as the "
                   "section-6 tools its numbers are for do")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=run_sample)

    p = sub.add_parser("info", help="print a checkpoint's config and training state")
    p.add_argument("checkpoint", type=Path, metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_info)


def run_sample(args: argparse.Namespace) -> int:
    from dcgan.mixture import drawn_by
    from dcgan.models import resolve_class
    from dcgan.run import Run
    from dcgan.sample import write_samples

    run = Run.open(args.run, device=args.device)
    # A numbered sheet names z's for the section-6 tools, which draw them with the checkpoint's G: so does the sheet.
    generator = run.sampler(ema=not args.no_ema, snapshots=1 if args.sheet else args.snapshots)
    label = None if args.class_ is None else resolve_class(generator, args.class_)
    if args.class_sheet and not generator.num_classes:
        raise ConfigError(
            "--class-sheet draws one column per class, and this generator is unconditional: it was not trained "
            "with --conditional."
        )
    write_samples(generator, args.n, args.out, seed=args.seed, nrow=args.nrow, label=label)
    if args.sheet:
        from dcgan.latent import numbered_sheet
        from dcgan.sample import generate, latents, sample_labels

        z = latents(args.n, generator.nz, generator.prior, args.seed)
        images = generate(generator, z, labels=sample_labels(generator, args.n, label), plan="auto")
        numbered_sheet(images, args.nrow).save(args.out / "sheet.png")
    what = f" of class {generator.classes[label]}" if label is not None else ""
    print(
        f"Wrote {args.n} samples{what} from {run.path}{drawn_by(generator)} (seed {args.seed}) to {args.out}; grid: "
        f"{args.out / 'grid.png'}"
    )
    if args.class_sheet:
        from dcgan.sample import class_sheet, save_grid

        images, per_row = class_sheet(generator, rows=args.class_sheet, seed=args.seed)
        save_grid(images, args.out / "classes.png", nrow=per_row)
        print(f"Class sheet, one row per z and one column per class: {args.out / 'classes.png'}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from dcgan.run import Run

    info = Run.open(args.checkpoint).describe()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    for key, value in info.items():
        if key != "config":
            print(f"{key:>22}: {value}")
    print("                config:")
    for key, value in sorted(info["config"].items()):
        print(f"{key:>22}: {value}")
    return 0
