"""A regularised linear L2-SVM (squared hinge, one-vs-rest), fitted by full-batch L-BFGS in float32 torch.

Why hand-written rather than scikit-learn's `LinearSVC`: liblinear copies its input to float64 (11.5 GB for
the paper's 50,000 x 28,672 CIFAR-10 features, on a 24 GB machine) and fits the one-vs-rest problems one after
the other on a single core. Here all classes share each pass over the data (one (n, d) @ (d, K) matmul on every
core), the feature matrix is never copied (per-feature standardisation is folded into the weights, and a large
subset of rows is selected by a 0/1 mask rather than by indexing), and float32 is plenty for a regularised
convex problem. `tests/probe/test_probe.py` checks that it reaches scikit-learn's solution on a small problem.

For each class k, with y_ik = +1 when x_i is of class k and -1 otherwise, and x standardised, it minimises
LinearSVC's objective

    0.5 * ||w_k||^2 + C * sum_i max(0, 1 - y_ik * (w_k . x_i + b_k))^2

except that the intercept b_k is not penalised (LinearSVC penalises it as the weight of a constant feature).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dcgan.errors import DataError

#: Rows are gathered into a copy when they are fewer than this fraction of the matrix, else masked in place.
GATHER_BELOW = 0.5
#: Working memory of a block of rows, in bytes (the feature matrix itself is never copied whole).
CHUNK_BYTES = 128 << 20
#: Problems with fewer feature values than this are fitted on one thread: their matmuls take microseconds, and
#: OpenMP's per-operation barriers, not arithmetic, dominate (several times slower on a busy 2-core machine).
SINGLE_THREAD_BELOW = 1 << 20


@contextlib.contextmanager
def _threads_for(values: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    if values < SINGLE_THREAD_BELOW and previous > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class Standardizer:
    """Per-feature mean and scale (standard deviation; 1 for constant features)."""

    mean: torch.Tensor
    scale: torch.Tensor


def as_tensor(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A float32 tensor sharing memory with `features` where possible (no copy for float32 arrays)."""
    if isinstance(features, torch.Tensor):
        return features.float()
    array = np.asarray(features, dtype=np.float32)
    if not array.flags.writeable:  # a read-only memory map; torch warns on those but never writes here
        array = np.array(array)
    return torch.from_numpy(array)


def _row_index(n: int, rows: Sequence[int] | np.ndarray | torch.Tensor | None) -> torch.Tensor:
    return torch.arange(n) if rows is None else torch.as_tensor(np.asarray(rows), dtype=torch.int64)


def fit_standardizer(
    features: np.ndarray | torch.Tensor, rows: Sequence[int] | np.ndarray | None = None
) -> Standardizer:
    """Mean and standard deviation of each feature over `rows` (all rows for None), accumulated in float64."""
    x = as_tensor(features)
    index = _row_index(x.shape[0], rows)
    chunk = max(1, CHUNK_BYTES // (8 * x.shape[1]))  # float64 rows per block
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for part in index.split(chunk):
        block = x[part].double()
        total += block.sum(0)
        squares += (block * block).sum(0)
    n = max(len(index), 1)
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(0).sqrt()
    scale = torch.where(std > 1e-6 * std.max().clamp_min(1e-12), std, torch.ones_like(std))
    return Standardizer(mean.float(), scale.float())


@dataclass
class LinearSVM:
    """A fitted one-vs-rest linear SVM, with weights in the space of the raw (unstandardised) features."""

    weight: torch.Tensor  # (d, K)
    bias: torch.Tensor  # (K,)
    classes: torch.Tensor  # (K,) the label of each column
    C: float
    iterations: int
    std_weight: torch.Tensor  # (d, K) the weights on standardised features, for warm starts
    std_bias: torch.Tensor  # (K,)

    def decision_function(
        self, features: np.ndarray | torch.Tensor, rows: Sequence[int] | np.ndarray | None = None
    ) -> torch.Tensor:
        """Scores (n, K) of `rows` of `features` (all rows for None): one column per class."""
        x = as_tensor(features)
        index = _row_index(x.shape[0], rows)
        chunk = max(1, CHUNK_BYTES // (4 * x.shape[1]))
        return torch.cat([x[part] @ self.weight + self.bias for part in index.split(chunk)])

    def predict(
        self, features: np.ndarray | torch.Tensor, rows: Sequence[int] | np.ndarray | None = None
    ) -> torch.Tensor:
        """The class with the highest score, for each row."""
        return self.classes[self.decision_function(features, rows).argmax(1)]

    def accuracy(
        self,
        features: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        rows: Sequence[int] | np.ndarray | None = None,
    ) -> float:
        """Fraction of `rows` (all for None) whose predicted class is their label."""
        y = torch.as_tensor(np.asarray(labels))
        y = y if rows is None else y[_row_index(len(y), rows)]
        return float((self.predict(features, rows) == y).double().mean())


def fit_svm(
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    C: float,
    *,
    rows: Sequence[int] | np.ndarray | None = None,
    standardizer: Standardizer | None = None,
    init: LinearSVM | None = None,
    max_iter: int = 300,
    tol: float = 1e-5,
) -> LinearSVM:
    """Fit the L2-SVM on `rows` of `features` (n, d) with their `labels` (n,).

    Args:
        features: float32 array or tensor; never copied unless `rows` picks out fewer than half of it.
        labels: integer class of every row of `features`.
        C: LinearSVC's regularisation constant (larger = weaker regularisation).
        rows: the training rows (all for None).
        standardizer: per-feature mean and scale applied before the SVM (fitted on `rows` when None).
        init: a previous fit to start from (e.g. at the neighbouring C), which saves iterations.
        max_iter: L-BFGS iterations at most.
        tol: stop when every gradient entry of the (n-normalised) objective is below this.
    """
    if not C > 0:
        raise DataError(f"C must be positive, got {C}.")
    x = as_tensor(features)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    index = _row_index(x.shape[0], rows)
    if len(index) == 0:
        raise DataError("The SVM has no training rows.")
    classes = torch.unique(y_all[index])
    if len(classes) < 2:
        raise DataError(f"The SVM needs at least two classes among its training rows, got {classes.tolist()}.")
    scaler = standardizer or fit_standardizer(x, index.numpy())

    mask: torch.Tensor | None = None
    if len(index) < GATHER_BELOW * x.shape[0]:
        x, y = x[index], y_all[index]
    else:
        y = y_all
        mask = torch.zeros(x.shape[0], 1)
        mask[index] = 1.0
    n_train = len(index)
    # targets[i, k] = +1 if row i is of class k else -1; rows of unseen classes are -1 everywhere.
    targets = torch.where(y[:, None] == classes[None, :], 1.0, -1.0)

    d, k = x.shape[1], len(classes)
    same_classes = init is not None and torch.equal(init.classes, classes)
    w = (init.std_weight.clone() if same_classes and init else torch.zeros(d, k)).requires_grad_(True)
    b = (init.std_bias.clone() if same_classes and init else torch.zeros(k)).requires_grad_(True)
    shift = scaler.mean / scaler.scale
    inv_scale = (1.0 / scaler.scale)[:, None]
    penalty = 0.5 / (C * n_train)

    def objective() -> torch.Tensor:
        # (x - mean) / scale @ w + b, without materialising the standardised matrix.
        scores = x @ (w * inv_scale) + (b - shift @ w)
        slack = (1.0 - targets * scores).clamp_min(0.0)
        if mask is not None:
            slack = slack * mask
        return (slack * slack).sum() / n_train + penalty * (w * w).sum()

    optimizer = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-10, history_size=20,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with _threads_for(x.numel()):
        optimizer.step(closure)
    iterations = int(optimizer.state[optimizer._params[0]].get("n_iter", 0))
    with torch.no_grad():
        weight = (w * inv_scale).detach()
        bias = (b - shift @ w).detach()
    return LinearSVM(weight, bias, classes, float(C), iterations, w.detach(), b.detach())


def objective_value(model: LinearSVM, features: np.ndarray, labels: np.ndarray, standardizer: Standardizer) -> float:
    """LinearSVC's objective (without the intercept penalty) of `model` on standardised `features`, in float64."""
    x = (torch.as_tensor(features, dtype=torch.float64) - standardizer.mean.double()) / standardizer.scale.double()
    targets = torch.where(torch.as_tensor(labels)[:, None] == model.classes[None, :], 1.0, -1.0).double()
    w, b = model.std_weight.double(), model.std_bias.double()
    slack = (1.0 - targets * (x @ w + b)).clamp_min(0.0)
    return float(0.5 * (w * w).sum() + model.C * (slack * slack).sum())
