"""Where a 64x64 DCGAN training step spends its time: each conv layer's forward+backward against the GEMM peak.

For every layer of G and D at the paper's 64x64 setup (batch 128, ngf = ndf = 64) this times the layer's
forward and backward in bf16 (autocast, channels_last) and fp32, converts to achieved TFLOP/s with the layer's
exact FLOP count, and sets that against a plain matrix product of the same FLOPs measured in the same run. The
gap between the two columns is what a faster convolution kernel could still win.

    python benchmarks/conv_layers.py
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from dcgan.models import Discriminator, Generator


def best_time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def layer_inputs(batch: int) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    g, d = Generator(64, 3, 100, 64), Discriminator(64, 3, 64)
    layers = []
    size, channels = 1, 100
    for i, block in enumerate(g.blocks):
        conv = block[0]
        layers.append(
            (f"G.blocks[{i}] {conv.in_channels}->{conv.out_channels} @{size}", conv, (batch, channels, size, size))
        )
        size, channels = (4 if i == 0 else size * 2), conv.out_channels
    size, channels = 64, 3
    for i, block in enumerate(d.blocks):
        conv = block[0]
        layers.append(
            (f"D.blocks[{i}] {conv.in_channels}->{conv.out_channels} @{size}", conv, (batch, channels, size, size))
        )
        size, channels = size // 2, conv.out_channels
    layers.append((f"D.head {d.head.in_channels}->1 @4", d.head, (batch, channels, 4, 4)))
    return layers


def conv_flops(module: nn.Module, shape: tuple[int, ...]) -> float:
    """Forward multiply-adds x 2 (transposed convs counted on their output, the same work)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(shape)
    with FlopCounterMode(display=False) as counter:
        module(x)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    a = torch.randn(2048, 4096, dtype=torch.bfloat16)
    b = torch.randn(4096, 512, dtype=torch.bfloat16)
    peak = 2 * 2048 * 4096 * 512 / best_time(lambda: a @ b, args.repeats * 2)
    print(f"bf16 GEMM 2048x4096x512: {peak / 1e12:.2f} TFLOP/s; {torch.get_num_threads()} threads\n")
    print("| layer | GFLOP fwd | bf16 fwd+bwd ms | bf16 TFLOP/s | of GEMM peak | fp32 fwd+bwd ms |")
    print("|---|---:|---:|---:|---:|---:|")
    total_bf16 = total_fp32 = total_flops = 0.0
    for name, module, shape in layer_inputs(args.batch):
        flops = conv_flops(module, shape)
        timings = {}
        for precision in ("bf16", "fp32"):
            m = module.to(memory_format=torch.channels_last)
            x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_(True)

            def step(m=m, x=x, precision=precision) -> None:  # type: ignore[no-untyped-def]
                with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                    y = m(x)
                F.mse_loss(y.float(), torch.zeros_like(y, dtype=torch.float32)).backward()

            timings[precision] = best_time(step, args.repeats)
        rate = 3 * flops / timings["bf16"]  # backward is two products of the forward's size
        total_bf16 += timings["bf16"]
        total_fp32 += timings["fp32"]
        total_flops += 3 * flops
        print(
            f"| {name} | {flops / 1e9:.2f} | {timings['bf16'] * 1e3:.0f} | {rate / 1e12:.2f} | {rate / peak:.0%} "
            f"| {timings['fp32'] * 1e3:.0f} |"
        )
    print(
        f"| all conv layers | {total_flops / 3e9:.2f} | {total_bf16 * 1e3:.0f} | {total_flops / total_bf16 / 1e12:.2f} "
        f"| {total_flops / total_bf16 / peak:.0%} | {total_fp32 * 1e3:.0f} |"
    )


if __name__ == "__main__":
    main()
