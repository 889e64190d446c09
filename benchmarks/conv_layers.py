"""Where a DCGAN training step's convolution time goes, layer by layer: torch's kernels against dcgan's GEMM path.

For every conv layer of G and D (batch 128, ngf = ndf = 64, channels_last; bf16 autocast or fp32) this times
one forward + backward (input and weight gradients) with torch's own kernel (oneDNN on CPUs) and with
`dcgan.gemm_conv`'s matrix-product path (forced on every layer, whatever its map size, so that both columns are
measured), interleaved and best of `--repeats`, and sets the achieved rate of the path dcgan uses against a
plain matrix product of the same precision measured in the same run. `dcgan.gemm_conv`'s per-precision map
limits (`MAX_GEMM_SIDE`) are chosen from this table.

    python benchmarks/conv_layers.py                  # 64x64, the paper's setup, bf16
    python benchmarks/conv_layers.py --precision fp32 # the CPUs without AMX or AVX-512-bf16
    python benchmarks/conv_layers.py --size 32
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from torch import nn

from dcgan import gemm_conv
from dcgan.models import Discriminator, Generator
from dcgan.train import keep_freed_memory


def layer_inputs(size: int, batch: int) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(name, conv module, input shape) for every conv layer of G and D at `size`."""
    g, d = Generator(size, 3, 100, 64), Discriminator(size, 3, 64)
    layers = []
    side, channels = 1, 100
    for i, block in enumerate(g.blocks):
        conv = block[0]
        layers.append((f"G.blocks[{i}] {channels}->{conv.out_channels} @{side}", conv, (batch, channels, side, side)))
        side, channels = (4 if i == 0 else side * 2), conv.out_channels
    side, channels = size, 3
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


def fwd_bwd_seconds(module: nn.Module, shape: tuple[int, ...], repeats: int, dtype: torch.dtype) -> dict[bool, float]:
    """Best forward+backward time with the GEMM path off (False) and on (True, on any map size), interleaved."""
    module = module.to(memory_format=torch.channels_last)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    best = {False: float("inf"), True: float("inf")}
    limits = dict(gemm_conv.MAX_GEMM_SIDE)
    gemm_conv.MAX_GEMM_SIDE.update({name: 1 << 16 for name in limits})
    try:
        for i, gemm in itertools.product(range(repeats + 1), (False, True)):
            gemm_conv.use_gemm_conv(gemm)
            start = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.bfloat16):
                y = module(x)
            y.backward(torch.ones_like(y))
            if i:  # the first round warms up
                best[gemm] = min(best[gemm], time.perf_counter() - start)
    finally:
        gemm_conv.MAX_GEMM_SIDE.update(limits)
        gemm_conv.use_gemm_conv(True)
    return best


def gemm_peak(repeats: int, dtype: torch.dtype) -> float:
    a, b = torch.randn(2048, 4096, dtype=dtype), torch.randn(4096, 512, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048 * 4096 * 512 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    keep_freed_memory()  # as in training
    torch.manual_seed(0)
    peak = gemm_peak(args.repeats * 2, dtype)
    print(
        f"{args.precision} GEMM 2048x4096x512: {peak / 1e12:.2f} TFLOP/s; {torch.get_num_threads()} threads; "
        f"batch {args.batch}\n"
    )
    print("| layer | GFLOP fwd | torch kernel ms | GEMM path ms | dcgan uses | its TFLOP/s | of GEMM peak |")
    print("|---|---:|---:|---:|---|---:|---:|")
    totals = {False: 0.0, True: 0.0, "used": 0.0}
    total_flops = 0.0
    for name, module, shape in layer_inputs(args.size, args.batch):
        flops = 3 * conv_flops(module, shape)  # forward, input gradient, weight gradient
        seconds = fwd_bwd_seconds(module, shape, args.repeats, dtype)
        used = gemm_conv._gemm_applies(module, torch.empty(shape, dtype=dtype))  # type: ignore[arg-type]
        totals[False] += seconds[False]
        totals[True] += seconds[True]
        totals["used"] += seconds[used]
        total_flops += flops
        rate = flops / seconds[used]
        print(
            f"| {name} | {flops / 3e9:.2f} | {seconds[False] * 1e3:.0f} | {seconds[True] * 1e3:.0f} "
            f"| {'GEMM' if used else 'torch'} | {rate / 1e12:.2f} | {rate / peak:.0%} |"
        )
    rate = total_flops / totals["used"]
    print(
        f"| all layers | {total_flops / 3e9:.2f} | {totals[False] * 1e3:.0f} | {totals[True] * 1e3:.0f} "
        f"| {totals['used'] * 1e3:.0f} ms | {rate / 1e12:.2f} | {rate / peak:.0%} |"
    )


if __name__ == "__main__":
    main()
