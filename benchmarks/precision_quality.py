"""Quality guard for the fast default: fp32 against bf16 at equal images seen, on Fashion-MNIST.

Trains the same configuration (same seeds, same data order, same number of steps) once per precision and
seed, then scores each final generator with FID and KID under the offline Fashion-MNIST LeNet against the test
split. Differences between seeds of one precision show the noise; the table says whether bf16 is worse than
fp32 by more than that.

    dcgan extractor fit --data fashion-mnist          # once: the offline feature extractor
    python benchmarks/precision_quality.py             # 1 epoch, seeds 0 and 1, 32x32, ngf = ndf = 32
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dcgan.config import build_config
from dcgan.data import load_images
from dcgan.metrics import evaluate
from dcgan.run import load_generator
from dcgan.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    parser.add_argument("--width", type=int, default=32, help="ngf = ndf")
    parser.add_argument("--n", type=int, default=10000, help="samples per evaluation")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()

    data = load_images("fashion-mnist", image_size=32)
    out = args.out or Path(tempfile.mkdtemp(prefix="dcgan-precision-"))
    results: dict[str, list[dict[str, float]]] = {"fp32": [], "bf16": []}
    for precision in results:
        for seed in args.seeds:
            config = build_config(
                None, data="fashion-mnist", image_size=32, ngf=args.width, ndf=args.width, epochs=args.epochs,
                seed=seed, precision=precision, log_every=100, sample_every=10**6, checkpoint_every=10**6,
            )  # fmt: skip
            run = out / f"{precision}-seed{seed}"
            start = time.perf_counter()
            train(config, run, data=data, progress=False)
            seconds = time.perf_counter() - start
            scores = evaluate(
                load_generator(run), data="fashion-mnist", split="test", metrics=["fid", "kid"], n=args.n,
                features="lenet-fashion-mnist",
            ).values  # fmt: skip
            scores["seconds"] = seconds
            results[precision].append(scores)
            print(f"  {precision} seed {seed}: {scores}", flush=True)

    key_fid, key_kid = (f"fid{args.n // 1000}k", f"kid{args.n // 1000}k")
    print(f"\n{args.epochs} epoch(s) of Fashion-MNIST at 32x32, ngf = ndf = {args.width}, batch 128; {args.n} samples")
    print(
        "| precision | "
        + " | ".join(f"seed {s} {key_fid}" for s in args.seeds)
        + f" | mean {key_fid} | mean {key_kid} | train s |"
    )
    print("|---|" + "---:|" * (len(args.seeds) + 3))
    for precision, rows in results.items():
        fids = [r[key_fid] for r in rows]
        print(
            f"| {precision} | " + " | ".join(f"{f:.2f}" for f in fids) + f" | {statistics.mean(fids):.2f} | "
            f"{statistics.mean(r[key_kid] for r in rows):.4f} | {statistics.mean(r['seconds'] for r in rows):.0f} |"
        )
    spread = max(max(r[key_fid] for r in rows) - min(r[key_fid] for r in rows) for rows in results.values())
    gap = statistics.mean(r[key_fid] for r in results["bf16"]) - statistics.mean(r[key_fid] for r in results["fp32"])
    verdict = "no worse beyond seed noise" if gap <= spread else "WORSE than fp32 beyond seed noise"
    print(
        f"\nbf16 - fp32 mean FID: {gap:+.2f}; largest spread between seeds of one precision: {spread:.2f} -> bf16 is {verdict}"
    )


if __name__ == "__main__":
    main()
