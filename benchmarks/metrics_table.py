"""FID, KID and precision/recall of several generators against one data set, as a Markdown table.

Each row is `LABEL=PATH` (a run folder or checkpoint); `--untrained RUN|PRESET` adds a row for a freshly
initialised generator of that run's (or preset's) architecture, and `--real-test` a row for the data set's real test images (the floor
a perfect generator would reach with this many samples). Every row uses the same extractor, reference split,
sample count and seed.

    python benchmarks/metrics_table.py --data fashion-mnist --untrained /work/runs/fashion32 --real-test \\
        "1 epoch=/work/runs/fashion32/checkpoints/step-00000468.pt" "5 epochs=/work/runs/fashion32"
"""

from __future__ import annotations

import argparse
import time

import torch

from dcgan.config import PRESETS, build_config
from dcgan.data import load_images, native_channels
from dcgan.metrics import evaluate, evaluate_images, load_features
from dcgan.models import Generator
from dcgan.run import Run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rows", nargs="*", metavar="LABEL=PATH", help="a run folder or checkpoint, with its row label")
    p.add_argument("--data", required=True)
    p.add_argument("--data-root")
    p.add_argument("--features", help="default: the data set's domain extractor")
    p.add_argument("--metrics", default="fid,kid,pr")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--split", default="train", help="reference split (default train)")
    p.add_argument(
        "--untrained", metavar="RUN|PRESET", help="add a freshly initialised G of this run's or preset's shape"
    )
    p.add_argument("--real-test", action="store_true", help="add the real test split as a row")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    extractor = load_features(args.features, args.data)
    common = dict(data=args.data, root=args.data_root, metrics=args.metrics, features=extractor, split=args.split)
    rows: list[tuple[str, str, dict[str, float]]] = []
    size, channels = 32, native_channels(args.data)

    def add(label: str, step: str, values: dict[str, float], started: float) -> None:
        rows.append((label, step, values))
        print(f"  {label}: {values} ({time.perf_counter() - started:.0f} s)", flush=True)

    if args.untrained:
        if args.untrained in PRESETS:
            config, channels = build_config(args.untrained), native_channels(args.data)
        else:
            run = Run.open(args.untrained)
            config, channels = run.config, run.channels
        size, channels = config.image_size, config.channels or channels
        torch.manual_seed(config.seed)
        g = Generator(size, channels, config.nz, config.ngf, prior=config.prior)
        started = time.perf_counter()
        add("untrained G", "0", evaluate(g, n=args.n, seed=args.seed, **common).values, started)
    for row in args.rows:
        label, _, path = row.partition("=")
        run = Run.open(path)
        g = run.generator()
        size, channels = g.image_size, g.channels
        started = time.perf_counter()
        add(label, str(run.step), evaluate(g, n=args.n, seed=args.seed, **common).values, started)
    if args.real_test:
        test = load_images(args.data, root=args.data_root, image_size=size, channels=channels, split="test")
        started = time.perf_counter()
        add(f"real {args.data} test images", "-", evaluate_images(test.images[: args.n], **common).values, started)

    names = [k for k in rows[0][2] if not k.endswith("_std")] if rows else []
    accuracy = extractor.meta.get("test_accuracy")
    print(f"\nReference: {args.data} {args.split} split; features: {extractor.name}"
          + (f" (test accuracy {float(accuracy):.2%})" if accuracy else "") + f"; seed {args.seed}.\n")  # fmt: skip
    print("| model | step | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for label, step, values in rows:
        print(f"| {label} | {step} | " + " | ".join(_fmt(k, values) for k in names) + " |")


def _fmt(key: str, values: dict[str, float]) -> str:
    value = values.get(key)
    if value is None:
        return "-"
    if key.startswith("kid"):
        return f"{value:.4f} ± {values.get(key + '_std', 0):.4f}"
    return f"{value:.3f}" if key.startswith(("precision", "recall")) else f"{value:.2f}"


if __name__ == "__main__":
    main()
