"""How long the metrics take on this machine: the training-loop evaluator and a full `evaluate`.

Times, for a freshly initialised DCGAN generator of the given preset's shape: extracting the features of the
whole train split (what the first evaluation against a data set pays, once), building a `TrainingEvaluator`
from the cached reference and calling it for each metric at `--n` samples, and `evaluate` with all four
metrics at `--full-n` samples.

    OMP_NUM_THREADS=1 python benchmarks/metrics_speed.py --preset fashion32 --n 2000
"""

from __future__ import annotations

import argparse
import time

import torch

from dcgan.config import build_config
from dcgan.data import native_channels
from dcgan.metrics import TrainingEvaluator, evaluate, load_features, reference_features
from dcgan.models import Generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="fashion32")
    p.add_argument("--data-root")
    p.add_argument("--features", help="default: the data set's domain extractor")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--full-n", type=int, default=10_000)
    args = p.parse_args()

    config = build_config(args.preset)
    channels = config.channels or native_channels(config.data)
    torch.manual_seed(0)
    g = Generator(config.image_size, channels, config.nz, config.ngf)
    extractor = load_features(args.features, config.data)
    print(f"{args.preset}: {config.data} at {config.image_size}px, features {extractor.name}, "
          f"{torch.get_num_threads()} torch thread(s)")  # fmt: skip
    kwargs = dict(root=args.data_root, image_size=config.image_size, channels=channels, features=extractor)
    start = time.perf_counter()
    import torchmetrics.image.fid  # noqa: F401  (a one-off cost per process, paid by the first FID/KID/IS)

    print(f"import torchmetrics: {time.perf_counter() - start:.1f} s")
    ref = dict(root=args.data_root, image_size=config.image_size, channels=channels)
    start = time.perf_counter()
    reference = reference_features(extractor, config.data, use_cache=False, **ref)  # type: ignore[arg-type]
    print(f"reference features of {reference.count:,} {config.data} images: {time.perf_counter() - start:.1f} s")
    reference_features(extractor, config.data, **ref)  # type: ignore[arg-type]  (fills the cache if empty)
    for metric in ("fid", "kid", "is"):
        start = time.perf_counter()
        evaluator = TrainingEvaluator(config.data, metric=metric, n=args.n, **kwargs)  # type: ignore[arg-type]
        built = time.perf_counter() - start
        start = time.perf_counter()
        values = evaluator(g)
        print(f"{metric}: TrainingEvaluator() {built:.1f} s (cached reference), call {time.perf_counter() - start:.1f} s"
              f" -> {values}")  # fmt: skip
    start = time.perf_counter()
    result = evaluate(g, data=config.data, root=args.data_root, n=args.full_n, features=extractor)
    print(f"evaluate(fid,kid,is,pr, n={args.full_n}): {time.perf_counter() - start:.1f} s")
    print(result.table())


if __name__ == "__main__":
    main()
