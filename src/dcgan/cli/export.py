"""`dcgan export`: the generator of a run as ONNX, TorchScript or safetensors, for serving elsewhere."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    from dcgan.export import FORMATS

    p = sub.add_parser("export", help="write the generator as ONNX, TorchScript or safetensors")
    p.add_argument("run", type=Path, metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--format", choices=FORMATS, required=True, help="onnx, torchscript or safetensors")
    p.add_argument("--out", type=Path, required=True, help="the file to write")
    p.add_argument("--no-ema", action="store_true", help="export the raw generator even if an EMA copy exists")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from dcgan.export import export_generator
    from dcgan.run import Run

    run = Run.open(args.run)
    generator = run.generator(ema=not args.no_ema)
    out = export_generator(generator, args.format, args.out)
    size = out.stat().st_size / 2**20
    labels = ""
    if generator.num_classes:
        names = ", ".join(generator.classes[:12]) + (", ..." if generator.num_classes > 12 else "")
        labels = f" and labels (batch,) int64 class ids 0 to {generator.num_classes - 1} ({names})"
    print(
        f"Wrote the generator of {run.path} as {args.format} to {out} ({size:.1f} MB): "
        f"z (batch, {generator.nz}) {generator.prior}{labels} -> images (batch, {generator.channels}, "
        f"{generator.image_size}, {generator.image_size}) in [-1, 1]."
    )
    return 0
