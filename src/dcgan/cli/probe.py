"""`dcgan probe`: D's features through a linear L2-SVM, with random-D and raw-pixel baselines (paper section 5)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dcgan.cli.common import non_negative_int, positive_int


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def register(sub: Any) -> None:
    from dcgan.data import registry
    from dcgan.probe import DEFAULT_C, FEATURE_SETS

    labelled = [d.name for d in registry.entries() if d.labelled and d.separate_test]

    p = sub.add_parser(
        "probe",
        help="classify images with D's features and a linear L2-SVM (paper section 5)",
        description="D's conv features, max-pooled to a grid, through a linear L2-SVM; C is chosen on a "
        "validation split. Baselines in the same run: a random D of the same shape, and raw pixels.",
    )
    p.add_argument("run", type=Path, metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--data", help=f"{', '.join(labelled)}, or a FOLDER with train/ and test/ "
                   "sub-folders of class folders (default: the run's training data)")  # fmt: skip
    p.add_argument("--data-root", metavar="DIR", help="where the standard data sets live")
    p.add_argument("--features", type=_names, default=FEATURE_SETS, metavar="LIST",
                   help=f"feature sets to probe (default {','.join(FEATURE_SETS)})")  # fmt: skip
    p.add_argument(
        "--layers", type=_int_list, metavar="I,J,...", help="D's conv blocks to read, 0 = first (default all)"
    )
    p.add_argument("--grid", type=positive_int, default=4, help="max-pool each map to GRID x GRID (paper: 4)")
    p.add_argument("--labels-per-class", type=positive_int, metavar="N", help="also run the few-label protocol")
    p.add_argument("--draws", type=positive_int, default=10, help="few-label draws (default 10)")
    p.add_argument("--no-full", action="store_true", help="skip the full-label protocol")
    p.add_argument("--val-size", type=positive_int, default=10_000, help="validation images for choosing C")
    p.add_argument("--C", type=_float_list, default=DEFAULT_C, metavar="C1,C2,...",
                   help=f"SVM C values to try (default {','.join(f'{c:g}' for c in DEFAULT_C)})")  # fmt: skip
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="feature extraction precision (default auto: bf16 only where it is measured faster)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=500, help="images per extraction batch")
    p.add_argument("--max-iter", type=positive_int, default=300, help="L-BFGS iterations per fit at most")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seeds the splits, draws and random D")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached features")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the settings and results as JSON")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write the table as Markdown")
    p.add_argument("--quiet", action="store_true", help="print only the table")
    p.set_defaults(func=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    from dcgan.probe import ProbeSettings, probe

    settings = ProbeSettings(
        data=args.data, data_root=args.data_root, features=args.features, layers=args.layers, grid=args.grid,
        full=not args.no_full, labels_per_class=args.labels_per_class, draws=args.draws, val_size=args.val_size,
        C_grid=args.C, precision=args.precision, batch_size=args.batch_size, seed=args.seed, max_iter=args.max_iter,
        use_cache=not args.no_cache, device=args.device,
    )  # fmt: skip
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    report = probe(args.run, settings, log=log)
    print(report.table())
    if args.markdown:
        _write(args.markdown, report.markdown() + "\n")
    if args.json:
        _write(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


def _write(path: Path, text: str) -> None:
    from dcgan.errors import ConfigError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise ConfigError(f"Could not write {path} ({exc.strerror or exc}).") from exc
