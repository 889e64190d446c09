"""The metric formulas against independent NumPy/SciPy computations, and the properties that make them useful."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from dcgan.errors import ConfigError
from dcgan.metrics import (
    class_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from dcgan.metrics.registry import count_name, parse_metrics, value_name


def _correlated(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0, mixing_seed: int = 0) -> np.ndarray:
    """n draws of a correlated Gaussian (its correlations fixed by mixing_seed), scaled and shifted."""
    mixing = np.random.default_rng(mixing_seed).normal(size=(d, d)) / np.sqrt(d)
    return np.random.default_rng(seed).normal(size=(n, d)) @ mixing * scale + shift


def _fid_scipy(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


@pytest.mark.parametrize(("shift", "scale"), [(0.0, 1.0), (0.3, 1.0), (0.0, 1.7), (1.2, 0.5)])
def test_frechet_distance_matches_scipy(shift: float, scale: float) -> None:
    a = _correlated(600, 16, seed=1)
    b = _correlated(500, 16, seed=2, shift=shift, scale=scale, mixing_seed=1)
    ours = frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    assert ours == pytest.approx(_fid_scipy(a.astype(np.float32), b.astype(np.float32)), rel=1e-5, abs=1e-6)


def test_frechet_distance_is_zero_for_the_same_set_and_symmetric() -> None:
    a = torch.from_numpy(_correlated(300, 8, seed=3)).float()
    b = torch.from_numpy(_correlated(300, 8, seed=4, shift=0.5)).float()
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def _mmd2(x: np.ndarray, y: np.ndarray, unbiased: bool) -> float:
    """Squared MMD, cubic polynomial kernel (x.y/d + 1)^3, written out independently."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m = len(x)
    if unbiased:
        xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    else:
        xx, yy = kxx.mean(), kyy.mean()
    return float(xx + yy - 2 * kxy.mean())


def test_kid_on_one_full_subset_equals_the_unbiased_mmd() -> None:
    x, y = _correlated(120, 6, seed=5), _correlated(120, 6, seed=6, shift=0.4)
    mean, std = kernel_inception_distance(torch.from_numpy(x), torch.from_numpy(y), subsets=1, subset_size=120)
    assert mean == pytest.approx(_mmd2(x, y, unbiased=True), rel=1e-9)
    assert std == 0.0


def test_kid_is_unbiased_on_equal_distributions_where_the_biased_estimate_is_not() -> None:
    rng = np.random.default_rng(7)
    ours, biased = [], []
    for _ in range(100):
        x, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
        ours.append(kernel_inception_distance(torch.from_numpy(x), torch.from_numpy(y), subsets=1, subset_size=40)[0])
        biased.append(_mmd2(x, y, unbiased=False))
    se = np.std(ours) / np.sqrt(len(ours))
    assert abs(np.mean(ours)) < 3 * se  # expectation 0
    assert np.mean(biased) > 10 * np.std(biased) / np.sqrt(len(biased))  # clearly positive


def test_kid_grows_with_the_gap_between_distributions() -> None:
    x = torch.from_numpy(_correlated(400, 8, seed=8))
    ys = [torch.from_numpy(_correlated(400, 8, seed=9, shift=s)) for s in (0, 0.5, 1)]
    values = [kernel_inception_distance(x, y, subsets=20, subset_size=200)[0] for y in ys]
    assert values[0] < values[1] < values[2]
    assert abs(values[0]) < values[1] / 5  # same distribution: near 0


def _is_numpy(logits: np.ndarray) -> float:
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    marginal = p.mean(0)
    return float(np.exp((p * (np.log(p) - np.log(marginal))).sum(1).mean()))


def test_inception_score_matches_numpy_and_its_bounds() -> None:
    logits = np.random.default_rng(10).normal(scale=3, size=(200, 7))
    assert inception_score(torch.from_numpy(logits), splits=1)[0] == pytest.approx(_is_numpy(logits), rel=1e-9)
    confident = torch.full((500, 10), -30.0)
    confident[torch.arange(500), torch.arange(500) % 10] = 30.0
    assert inception_score(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-3)  # all classes, each sure: the max
    one_class = torch.full((500, 10), -30.0)
    one_class[:, 3] = 30.0
    assert inception_score(one_class)[0] == pytest.approx(1.0, abs=1e-3)  # mode collapse: the minimum
    assert inception_score(torch.zeros(50, 10))[0] == pytest.approx(1.0)  # no confidence: the minimum too


def _pr_brute(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    def radii(a: np.ndarray) -> np.ndarray:
        return np.array([np.sort(np.linalg.norm(a - p, axis=1))[k] for p in a])

    def inside(points: np.ndarray, centres: np.ndarray, r: np.ndarray) -> float:
        return float(np.mean([np.any(np.linalg.norm(centres - p, axis=1) <= r) for p in points]))

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_precision_recall_matches_a_brute_force_computation() -> None:
    real, fake = _correlated(150, 5, seed=11), _correlated(150, 5, seed=12, shift=0.8, scale=0.7)
    ours = precision_recall(torch.from_numpy(real), torch.from_numpy(fake))
    assert ours == pytest.approx(_pr_brute(real, fake), abs=1e-12)


def test_precision_recall_separate_quality_from_coverage() -> None:
    rng = np.random.default_rng(13)
    modes = np.array([[-6.0, 0.0], [6.0, 0.0]])
    real = torch.from_numpy(modes[rng.integers(0, 2, 1000)] + rng.normal(size=(1000, 2)))
    collapsed = torch.from_numpy(modes[0] + rng.normal(size=(1000, 2)))  # one of two modes, realistic
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.9 and 0.35 < recall < 0.65
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, real + 100) == (0.0, 0.0)


def test_metric_names_carry_the_sample_count() -> None:
    assert [count_name(n) for n in (10_000, 50_000, 2000, 2500, 64)] == ["10k", "50k", "2k", "2500", "64"]
    assert value_name("kid_std", 10_000) == "kid10k_std"
    assert [m.name for m in parse_metrics("fid, KID,pr")] == ["fid", "kid", "pr"]
    with pytest.raises(ConfigError, match="Unknown metric"):
        parse_metrics("fid,fod")


def test_class_statistics_separate_confidence_from_class_coverage() -> None:
    # Confident and even: one-hot-like logits cycling through ten classes.
    sure = torch.full((1000, 10), -20.0)
    sure[torch.arange(1000), torch.arange(1000) % 10] = 20.0
    confidence, entropy = class_statistics(sure)
    assert confidence == pytest.approx(1.0, abs=1e-6) and entropy == pytest.approx(np.log(10), abs=1e-6)
    # Confident but one class only (a collapsed generator): confidence stays, the class entropy drops to 0.
    confidence, entropy = class_statistics(sure[::10])
    assert confidence == pytest.approx(1.0, abs=1e-6) and entropy == pytest.approx(0.0, abs=1e-6)
    # Undecided samples (flat logits): the lowest confidence, 1 / classes.
    confidence, entropy = class_statistics(torch.zeros(100, 10))
    assert confidence == pytest.approx(0.1) and entropy == pytest.approx(np.log(10))
    # Half the samples confident, half undecided: the mean top-class probability is halfway.
    confidence, _ = class_statistics(torch.cat([sure[:100], torch.zeros(100, 10)]))
    assert confidence == pytest.approx(0.55, abs=1e-6)
    with pytest.raises(ConfigError):
        class_statistics(torch.zeros(10))
    assert [m.name for m in parse_metrics("classes")] == ["classes"]
