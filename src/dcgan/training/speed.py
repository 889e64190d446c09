"""Speed settings that depend on the machine: the built-in precision rule, and glibc's handling of freed memory."""

from __future__ import annotations

import ctypes
import os

import torch

from dcgan.errors import ConfigError


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 on GPUs that have it (else fp16) and on CPUs with AMX/AVX-512-bf16 (else fp32).

    A rule of thumb: what a run uses when its execution plan is not measured (`dcgan.plan.default_plan`). A measured
    plan (`dcgan.plan`) replaces it, since on some CPUs the rule is not the fastest. Any other value is checked
    (bf16 needs a GPU that has it) and returned.
    """
    if precision != "auto":
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("--precision bf16 needs a GPU that supports bfloat16; use fp16 or auto.")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    fast = (
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    )
    return "bf16" if fast else "fp32"


def keep_freed_memory() -> bool:
    """Stop glibc from handing large freed blocks back to the OS; returns whether it took effect.

    A training step allocates and frees the same large temporaries every time (im2col buffers, activations).
    By default glibc serves each from a fresh mmap and unmaps it on free, so every step page-faults hundreds
    of megabytes back in; on this project's 2-core CPU that was a quarter of the GEMM layers' time. Keeping
    freed memory in the heap trades a flat resident size (the peak step's) for that. `DCGAN_MALLOPT=0` opts
    out. Linux with glibc only; elsewhere this does nothing.
    """
    if os.environ.get("DCGAN_MALLOPT", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
