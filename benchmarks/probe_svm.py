"""Memory and speed of the probe's L2-SVM at the paper's scale: 50,000 x 28,672 float32 features, 10 classes.

Builds a synthetic feature matrix of that shape (class means in a random 64-dimensional subspace plus noise, so
the problem is neither trivial nor hopeless), fits `dcgan.probe.fit_svm` for a fixed number of L-BFGS
iterations on 40,000 masked rows (as the full-label protocol's C search does), and prints the peak resident
memory, the time per iteration and the accuracy on the held-out rows. For comparison it prints what
scikit-learn's LinearSVC would have to allocate (its float64 copy of the same matrix), and, with --sklearn N,
times LinearSVC and fit_svm on the first N rows of a smaller matrix.

    python benchmarks/probe_svm.py                          # the paper's 50,000 x 28,672
    python benchmarks/probe_svm.py --n 10000 --d 7168 --iters 30 --sklearn 10000
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
import torch

from dcgan.probe import fit_standardizer, fit_svm


def synthetic(n: int, d: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    basis = torch.randn(64, d, generator=g) * (0.4 / d**0.5)  # per-feature class signal well below the noise
    means = torch.randn(classes, 64, generator=g) @ basis
    x = torch.empty(n, d)
    for start in range(0, n, 2048):  # in blocks, so the only big allocation is x itself
        part = slice(start, start + 2048)
        x[part] = torch.randn(x[part].shape, generator=g).add_(means[labels[part]]).relu_()
    return x, labels


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=28_672)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--iters", type=int, default=20, help="L-BFGS iterations (a real fit takes 100-500)")
    parser.add_argument("--C", type=float, default=1e-3)
    parser.add_argument("--sklearn", type=int, default=0, help="also time LinearSVC on this many rows")
    args = parser.parse_args()

    start = time.perf_counter()
    x, y = synthetic(args.n, args.d, args.classes, seed=0)
    made = time.perf_counter() - start
    rows, held = np.arange(int(args.n * 0.8)), np.arange(int(args.n * 0.8), args.n)
    print(f"features: {args.n:,} x {args.d:,} float32 = {x.numel() * 4 / 2**30:.2f} GiB (built in {made:.0f} s); "
          f"LinearSVC's float64 copy alone would be {x.numel() * 8 / 2**30:.2f} GiB")  # fmt: skip
    base = peak_gib()
    start = time.perf_counter()
    scaler = fit_standardizer(x, rows)
    model = fit_svm(x, y, args.C, rows=rows, standardizer=scaler, max_iter=args.iters, tol=0)
    seconds = time.perf_counter() - start
    print(f"fit_svm: {model.iterations} L-BFGS iterations on {len(rows):,} rows in {seconds:.0f} s "
          f"({seconds / max(model.iterations, 1):.1f} s/iteration, {torch.get_num_threads()} threads); "
          f"held-out accuracy {model.accuracy(x, y, held):.2%}")  # fmt: skip
    print(f"peak resident memory: {peak_gib():.2f} GiB (after building the features: {base:.2f} GiB)")

    if args.sklearn:
        from sklearn.svm import LinearSVC

        small, labels = x[: args.sklearn].numpy(), y[: args.sklearn].numpy()
        small = (small - scaler.mean.numpy()) / scaler.scale.numpy()
        for name, fit in (
            ("LinearSVC", lambda: LinearSVC(C=args.C, dual=False, tol=1e-4).fit(small, labels)),
            ("fit_svm", lambda: fit_svm(small, labels, args.C, max_iter=500)),
        ):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit()
            print(f"{name} on {args.sklearn:,} x {args.d:,}: {time.perf_counter() - start:.1f} s to convergence")


if __name__ == "__main__":
    main()
