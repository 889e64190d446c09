"""The probe's two protocols: all labels (the paper's CIFAR-10 table) and few labels (its SVHN table).

Both hold a validation split out of the training images to choose C, and touch the test images only to
report the accuracy of the one model (per draw) that the validation split chose.

- full labels: fit on the training images outside the validation split for every C, keep the C with the best
  validation accuracy, refit on the whole training split with it, report test accuracy.
- few labels: draw N labelled images per class from the training images outside the validation split, choose C
  on the validation split, report test accuracy; repeat for several draws and report the mean and 1.96 x the
  standard deviation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dcgan.errors import DataError
from dcgan.probe.svm import LinearSVM, Standardizer, fit_standardizer, fit_svm

#: C values tried, smallest first. Features are standardised, so one grid suits every feature set; the best C
#: shrinks as the number of labelled images grows (C multiplies a sum over them), hence the wide range.
DEFAULT_C = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: The search stops once a C's validation accuracy falls this far below the best so far: accuracy rises and
#: then falls with C, and the larger the C the longer the fit takes. Plateaus within the margin are searched on.
STOP_BELOW = 0.01


@dataclass
class ProtocolResult:
    """Test accuracy of one features x protocol pairing, per draw, with the C chosen for each."""

    protocol: str  # "full" or "few"
    labels_per_class: int | None
    accuracies: list[float]
    chosen_C: list[float]
    validation: list[dict[str, float]] = field(default_factory=list)  # per draw: C -> validation accuracy
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def ci95(self) -> float:
        """1.96 x the sample standard deviation over draws (0 for a single draw)."""
        return 0.0 if len(self.accuracies) < 2 else float(1.96 * np.std(self.accuracies, ddof=1))


def validation_split(labels: np.ndarray, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rest, validation): sorted indices into the training split, `size` of them (random) for validation."""
    n = len(labels)
    if not 0 < size < n:
        raise DataError(f"The validation split must hold between 1 and {n - 1} of the {n} training images, got {size}.")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[size:]), np.sort(order[:size])


def draw_labelled(labels: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """`per_class` indices of each class drawn without replacement from `pool` (indices into `labels`), sorted."""
    labels = np.asarray(labels)
    chosen = []
    for c in np.unique(labels[pool]):
        candidates = pool[labels[pool] == c]
        if len(candidates) < per_class:
            raise DataError(
                f"Class {c} has only {len(candidates)} training images outside the validation split, "
                f"fewer than --labels-per-class {per_class}."
            )
        chosen.append(rng.choice(candidates, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def choose_C(
    train: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    val: np.ndarray,
    grid: Sequence[float],
    *,
    standardizer: Standardizer | None = None,
    max_iter: int = 300,
    log: Callable[[str], None] | None = None,
) -> tuple[float, LinearSVM, dict[str, float]]:
    """Fit on `rows` at each C of `grid` (warm-starting from the previous C) and keep the best on `val`.

    Ties go to the smaller C (the stronger regularisation). The search stops early once a C scores `STOP_BELOW`
    under the best so far. Returns the C, its model and the validation accuracy of every C tried.
    """
    scaler = standardizer or fit_standardizer(train, rows)
    scores: dict[str, float] = {}
    best: tuple[float, float, LinearSVM] | None = None
    previous = None
    for C in sorted(grid):
        start = time.perf_counter()
        model = fit_svm(train, labels, C, rows=rows, standardizer=scaler, init=previous, max_iter=max_iter)
        scores[f"{C:g}"] = accuracy = model.accuracy(train, labels, val)
        if log:
            log(
                f"    C={C:g}: {model.iterations} iterations, {time.perf_counter() - start:.0f} s, validation {accuracy:.2%}"
            )
        if best is None or accuracy > best[1]:
            best = (C, accuracy, model)
        elif accuracy < best[1] - STOP_BELOW:
            break
        previous = model
    assert best is not None
    return best[0], best[2], scores


def full_labels(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    *,
    val_size: int = 10_000,
    grid: Sequence[float] = DEFAULT_C,
    seed: int = 0,
    max_iter: int = 300,
    log: Callable[[str], None] | None = None,
) -> ProtocolResult:
    """Choose C on a validation split of the training images, refit on all of them, report test accuracy."""
    start = time.perf_counter()
    rest, val = validation_split(train_labels, val_size, seed)
    scaler = fit_standardizer(train, rest)
    C, model, scores = choose_C(train, train_labels, rest, val, grid, standardizer=scaler, max_iter=max_iter, log=log)
    if log:
        log(f"  full labels: refitting on all {len(train_labels):,} training images with C={C:g}")
    final = fit_svm(train, train_labels, C, standardizer=scaler, init=model, max_iter=max_iter)
    accuracy = final.accuracy(test, test_labels)
    return ProtocolResult("full", None, [accuracy], [C], [scores], time.perf_counter() - start)


def few_labels(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    *,
    per_class: int,
    draws: int = 10,
    val_size: int = 10_000,
    grid: Sequence[float] = DEFAULT_C,
    seed: int = 0,
    max_iter: int = 300,
    log: Callable[[str], None] | None = None,
) -> ProtocolResult:
    """For each draw: `per_class` labels per class from outside the validation split, C chosen on it, test accuracy."""
    start = time.perf_counter()
    if draws < 1:
        raise DataError(f"--draws must be at least 1, got {draws}.")
    rest, val = validation_split(train_labels, val_size, seed)
    # Feature scaling uses no labels, so it may look at every training image outside the validation split.
    scaler = fit_standardizer(train, rest)
    rng = np.random.default_rng(seed + 1)
    accuracies, chosen, tables = [], [], []
    for draw in range(draws):
        rows = draw_labelled(train_labels, rest, per_class, rng)
        C, model, scores = choose_C(train, train_labels, rows, val, grid, standardizer=scaler, max_iter=max_iter)
        accuracies.append(model.accuracy(test, test_labels))
        chosen.append(C)
        tables.append(scores)
        if log:
            log(f"  draw {draw + 1}/{draws}: C={C:g}, test accuracy {accuracies[-1]:.2%}")
    return ProtocolResult("few", per_class, accuracies, chosen, tables, time.perf_counter() - start)
