"""The CPU's matrix-product peak, as the best of the two libraries torch computes products with.

Shared by `train_speed.py` and `conv_layers.py`, which import it from this folder (a script's own folder is on its
import path), to set achieved rates against a limit.

torch multiplies fp32 matrices with MKL (`a @ b`) and convolves with oneDNN, and on some CPUs the two differ by 2x:
MKL takes its AVX2 code on AMD processors, so on a 2-core AMD EPYC with full-width AVX-512 (family 26, model 2) an
fp32 `a @ b` ran at 0.21 TFLOP/s while oneDNN's 1x1 convolution, the same product, ran at 0.43, and torch's own
convolutions of a 64x64 training step were already past "100%" of the first. Whichever library a layer uses, the
limit is what the CPU can do, so the peak is the best of the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _matmul(a: torch.Tensor, b: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: a @ b


def _onednn(a: torch.Tensor, b: torch.Tensor) -> Callable[[], torch.Tensor]:
    """a (m, k) read without a copy as one channels_last image of m pixels and k channels, b (k, n) as n 1x1
    filters: oneDNN's convolution is then its GEMM; the (1, n, m, 1) result, channels_last, is a @ b's memory."""
    m, k = a.shape
    x = a.view(1, m, 1, k).permute(0, 3, 1, 2)
    w = b.t().contiguous().view(b.shape[1], k, 1, 1)
    return lambda: F.conv2d(x, w)[0, :, :, 0].t()


#: name -> given an (m, k) and a (k, n) matrix, a call that returns their product
PRODUCTS: dict[str, Callable[[torch.Tensor, torch.Tensor], Callable[[], torch.Tensor]]] = {
    "torch.matmul": _matmul,
    "oneDNN 1x1 conv": _onednn,
}


def product_rates(dtype: torch.dtype, m: int = 2048, k: int = 4096, n: int = 512, repeats: int = 5) -> dict[str, float]:
    """Best FLOP/s of an (m, k) x (k, n) product in `dtype` with each library, right now. Where a product would take
    over a second (bf16 on an AVX2 CPU runs about 1 GFLOP/s, 150x below fp32), the sizes shrink to keep it near
    0.2 s; a rate that slow is the same at any size this large."""
    rates = {}
    for name, prepare in PRODUCTS.items():
        probe = prepare(torch.randn(256, 256, dtype=dtype), torch.randn(256, 256, dtype=dtype))
        probe()
        start = time.perf_counter()
        probe()
        rate = 2 * 256**3 / (time.perf_counter() - start)
        scale = min(1.0, (0.2 * rate / (2 * m * k * n)) ** (1 / 3))
        mm, kk, nn = (max(256, 256 * round(x * scale / 256)) for x in (m, k, n))
        product = prepare(torch.randn(mm, kk, dtype=dtype), torch.randn(kk, nn, dtype=dtype))
        product()
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            best = max(best, 2 * mm * kk * nn / (time.perf_counter() - start))
        rates[name] = best
    return rates


def describe(rates: dict[str, float]) -> str:
    """ "0.43 TFLOP/s (torch.matmul 0.21, oneDNN 1x1 conv 0.43)"."""
    parts = ", ".join(f"{name} {rate / 1e12:.2f}" for name, rate in rates.items())
    return f"{max(rates.values()) / 1e12:.2f} TFLOP/s ({parts})"
