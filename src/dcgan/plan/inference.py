"""The precision forward-only work (probe features, ...) uses on a device: bf16 only where it is measured faster."""

from __future__ import annotations

import math
import time

import torch

_INFERENCE: dict[str, str] = {}


def inference_precision(device: str | torch.device = "cpu") -> str:
    """ "fp32" or "bf16" for forward-only work on `device` (the probe's features, ...): bf16 only where a matrix
    product in bf16 is measured at least 10% faster than in fp32 here, once per process (about 0.1 s).

    AMX CPUs and modern GPUs run bf16 2-10x faster; CPUs without native bf16 emulate it 3x slower.
    """
    device = torch.device(device)
    if device.type not in _INFERENCE:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            _INFERENCE[device.type] = "fp32"
        else:
            fast = _matmul_seconds(torch.bfloat16, device) < 0.9 * _matmul_seconds(torch.float32, device)
            _INFERENCE[device.type] = "bf16" if fast else "fp32"
    return _INFERENCE[device.type]


def _matmul_seconds(dtype: torch.dtype, device: torch.device, n: int = 512, repeats: int = 3) -> float:
    a = torch.rand(n, n, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    best = math.inf
    for i in range(repeats + 1):
        start = time.perf_counter()
        (a @ a).sum().item()
        if i:  # the first is a warm-up
            best = min(best, time.perf_counter() - start)
    return best
