"""Where a DCGAN training step's convolution time goes, layer by layer: torch's kernels against dcgan's own paths.

For every conv layer of G and D (batch 128, ngf = ndf = 64 and 3 image channels unless given, channels_last;
bf16 autocast or fp32) this times one forward + backward (input and weight gradients) with torch's own kernel
(oneDNN on CPUs), with `dcgan.gemm_conv`'s matrix-product path and with its Winograd F(2x2, 2x2) path (each forced
on every layer it can take, whatever its map size, so that every column is measured; the stride-1 layers at the
ends have no Winograd form and run their matrix product in that column), and on the path dcgan's rule picks
(D's first layer, whose input needs a gradient here, takes torch's forward pass with the GEMM path's input
gradient: "image"), interleaved and best of `--repeats`, and sets the achieved rate of the rule's choice (counted
in the direct convolution's FLOPs) against a plain matrix product of the same precision measured in the same run.
`dcgan.gemm_conv`'s per-precision limits (`MAX_GEMM_SIDE`, `MAX_WINOGRAD_SIDE`, `MIN_WINOGRAD_CHANNELS`,
`IMAGE_CHANNELS`) are chosen from this table.

    python benchmarks/conv_layers.py                  # 64x64, the paper's setup, bf16
    python benchmarks/conv_layers.py --precision fp32 # the CPUs without AMX or AVX-512-bf16
    python benchmarks/conv_layers.py --size 32 --channels 1 --width 32 --precision fp32  # the default job
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from peak import describe, product_rates
from torch import nn

from dcgan import gemm_conv
from dcgan.models import Discriminator, Generator
from dcgan.train import keep_freed_memory


def layer_inputs(
    size: int, batch: int, channels: int = 3, width: int = 64
) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(name, conv module, input shape) for every conv layer of G and D at `size` (ngf = ndf = `width`)."""
    g, d = Generator(size, channels, 100, width), Discriminator(size, channels, width)
    layers = []
    side, channels = 1, 100
    for i, block in enumerate(g.blocks):
        conv = block[0]
        layers.append((f"G.blocks[{i}] {channels}->{conv.out_channels} @{side}", conv, (batch, channels, side, side)))
        side, channels = (4 if i == 0 else side * 2), conv.out_channels
    side, channels = size, d.blocks[0][0].in_channels
    for i, block in enumerate(d.blocks):
        conv = block[0]
        layers.append((f"D.blocks[{i}] {channels}->{conv.out_channels} @{side}", conv, (batch, channels, side, side)))
        side, channels = side // 2, conv.out_channels
    layers.append((f"D.head {channels}->1 @4", d.head, (batch, channels, 4, 4)))
    return layers


def conv_flops(module: nn.Module, shape: tuple[int, ...]) -> float:
    """FLOPs of the forward pass (transposed convs counted on their output: the same work)."""
    from torch.utils.flop_counter import FlopCounterMode

    gemm_conv.use_gemm_conv(False)
    with FlopCounterMode(display=False) as counter:
        module(torch.randn(shape))
    gemm_conv.use_gemm_conv(True)
    return float(counter.get_total_flops())


#: The ways a layer can run (the first three forced on every layer they can take, then dcgan's own rule).
MODES = ("torch", "gemm", "winograd", "rule")


@contextmanager
def forced(mode: str) -> Iterator[None]:
    """Run every layer the mode can take on it: torch's kernel, the GEMM path, or Winograd (stride-2 layers); or
    ("rule") each on the path `dcgan.gemm_conv` picks for it."""
    if mode == "rule":
        yield
        return
    gemm_limits, winograd_limits = dict(gemm_conv.MAX_GEMM_SIDE), dict(gemm_conv.MAX_WINOGRAD_SIDE)
    min_channels = gemm_conv.MIN_WINOGRAD_CHANNELS
    dtypes = (torch.float32, torch.bfloat16, torch.float16)
    gemm_conv.use_gemm_conv(mode != "torch")
    gemm_conv.MAX_GEMM_SIDE.update({d: (1 << 16 if mode == "gemm" else 0) for d in dtypes})
    gemm_conv.MAX_WINOGRAD_SIDE.update({d: 1 << 16 for d in dtypes})
    gemm_conv.MIN_WINOGRAD_CHANNELS = 1
    image_channels, gemm_conv.IMAGE_CHANNELS = gemm_conv.IMAGE_CHANNELS, 0
    try:
        yield
    finally:
        gemm_conv.MAX_GEMM_SIDE.clear()
        gemm_conv.MAX_GEMM_SIDE.update(gemm_limits)
        gemm_conv.MAX_WINOGRAD_SIDE.clear()
        gemm_conv.MAX_WINOGRAD_SIDE.update(winograd_limits)
        gemm_conv.MIN_WINOGRAD_CHANNELS = min_channels
        gemm_conv.IMAGE_CHANNELS = image_channels
        gemm_conv.use_gemm_conv(True)


def fwd_bwd_seconds(module: nn.Module, shape: tuple[int, ...], repeats: int, dtype: torch.dtype) -> dict[str, float]:
    """Best forward+backward time of each of `MODES`, interleaved."""
    module = module.to(memory_format=torch.channels_last)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    best = dict.fromkeys(MODES, float("inf"))
    for i, mode in itertools.product(range(repeats + 1), MODES):
        with forced(mode):
            start = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.bfloat16):
                y = module(x)
            y.backward(torch.ones_like(y))
            if i:  # the first round warms up
                best[mode] = min(best[mode], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--channels", type=int, default=3, help="image channels (1 for digits)")
    parser.add_argument("--width", type=int, default=64, help="ngf = ndf")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    keep_freed_memory()  # as in training
    torch.manual_seed(0)
    rates = product_rates(dtype, 2048, 4096, 512, repeats=args.repeats * 2)
    peak = max(rates.values())
    print(
        f"{args.precision} GEMM 2048x4096x512, the best of torch's two product libraries (peak.py): {describe(rates)}; "
        f"{torch.get_num_threads()} threads; "
        f"batch {args.batch}; {args.size}x{args.size}x{args.channels}, ngf = ndf = {args.width}\n"
    )
    print(
        "| layer | GFLOP fwd | torch kernel ms | GEMM path ms | Winograd ms | dcgan's rule ms | it uses "
        "| its TFLOP/s (direct FLOPs) | of GEMM peak |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    totals = dict.fromkeys(MODES, 0.0)
    total_flops = 0.0
    for name, module, shape in layer_inputs(args.size, args.batch, args.channels, args.width):
        flops = 3 * conv_flops(module, shape)  # forward, input gradient, weight gradient
        seconds = fwd_bwd_seconds(module, shape, args.repeats, dtype)
        probe = torch.empty(shape, dtype=dtype, requires_grad=True)  # as timed: the input needs its gradient
        used = gemm_conv._path(module, probe) or "torch"  # type: ignore[arg-type]
        for mode in MODES:
            totals[mode] += seconds[mode]
        total_flops += flops
        rate = flops / seconds["rule"]
        times = " | ".join(f"{seconds[mode] * 1e3:.1f}" for mode in MODES)
        label = {"torch": "torch", "gemm": "GEMM", "winograd": "Winograd", "image": "image"}[used]
        print(f"| {name} | {flops / 3e9:.3f} | {times} | {label} | {rate / 1e12:.2f} | {rate / peak:.0%} |")
    rate = total_flops / totals["rule"]
    times = " | ".join(f"{totals[mode] * 1e3:.0f}" for mode in MODES)
    print(f"| all layers | {total_flops / 3e9:.2f} | {times} | | {rate / 1e12:.2f} | {rate / peak:.0%} |")


if __name__ == "__main__":
    main()
