"""dcgan.gemm_conv: DCGAN's convolutions as matrix products give torch's results, and are used where they win."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcgan import gemm_conv
from dcgan.models import Discriminator, Generator

# (kind, in channels, out channels, input side, stride, padding): every shape a DCGAN layer has.
LAYERS = [
    ("t", 10, 16, 1, 1, 0),  # G's input layer, 1x1 -> 4x4
    ("t", 16, 8, 4, 2, 1),  # G, 4x4 -> 8x8 (GEMM + col2im)
    ("t", 16, 8, 8, 2, 1),  # G, 8x8 -> 16x16 (sub-pixel product)
    ("t", 16, 1, 8, 2, 1),  # G's last layer to one image channel, 8x8 -> 16x16 (GEMM + col2im: few outputs)
    ("c", 8, 16, 16, 2, 1),  # D, 16x16 -> 8x8
    ("c", 3, 8, 8, 2, 1),  # D, 8x8 -> 4x4, with a bias (D's input layer has no batchnorm)
    ("c", 16, 1, 4, 1, 0),  # D's head, 4x4 -> 1x1
]


def _pair(kind: str, cin: int, cout: int, stride: int, pad: int, bias: bool) -> tuple[nn.Module, nn.Module]:
    torch_cls, ours_cls = (
        (nn.ConvTranspose2d, gemm_conv.ConvTranspose2d) if kind == "t" else (nn.Conv2d, gemm_conv.Conv2d)
    )
    reference = torch_cls(cin, cout, 4, stride, pad, bias=bias)
    ours = ours_cls(cin, cout, 4, stride, pad, bias=bias)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def _run(module: nn.Module, x: torch.Tensor, grad: torch.Tensor | None, bf16: bool) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        y = module(x)
    if grad is None:
        grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    (y.to(dtype) * grad.to(dtype)).sum().backward()
    out = [y.to(dtype), x.grad] + [p.grad for p in module.parameters()]
    module.zero_grad()
    return out


@pytest.fixture
def gemm_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records which GEMM-path and Winograd autograd functions ran."""
    calls: list[str] = []
    for name in ("_ConvS2", "_ConvTransposeS2", "_WinogradConvS2", "_WinogradConvTransposeS2", "_ImageConvS2"):
        fn = getattr(gemm_conv, name)
        monkeypatch.setattr(fn, "apply", lambda *a, _f=fn.apply, _n=name: calls.append(_n) or _f(*a))
    yield calls
    gemm_conv.use_gemm_conv(True)


@pytest.fixture
def torch_kernel_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records each call of torch's own convolution kernels, which the GEMM path exists to avoid."""
    calls: list[str] = []
    for name in ("conv2d", "conv_transpose2d"):
        original = getattr(F, name)
        monkeypatch.setattr(F, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    yield calls
    gemm_conv.use_gemm_conv(True)


def _assert_path_switch(ours: nn.Module, x: torch.Tensor, calls: list[str], bf16: bool) -> None:
    """`ours` ran without torch's kernels (the GEMM path); with the path off it runs them, once a forward."""
    assert not calls, f"the GEMM path called torch's {calls}"
    gemm_conv.use_gemm_conv(False)
    _run(ours, x, None, bf16)
    assert len(calls) == 1, "with use_gemm_conv(False) the layer runs torch's kernel"
    gemm_conv.use_gemm_conv(True)


def _force(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Every stride-2 layer on the GEMM path, or on the Winograd path, in fp32."""
    monkeypatch.setitem(gemm_conv.MAX_GEMM_SIDE, torch.float32, 8 if path == "gemm" else 0)
    monkeypatch.setitem(gemm_conv.MAX_WINOGRAD_SIDE, torch.float32, 64)
    monkeypatch.setattr(gemm_conv, "MIN_WINOGRAD_CHANNELS", 1)
    monkeypatch.setattr(gemm_conv, "IMAGE_CHANNELS", 0)  # no image-side rule ahead of Winograd's


@pytest.mark.parametrize("layer", LAYERS, ids=lambda x: f"{x[0]}{x[1]}-{x[2]}@{x[3]}")
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("path", ["gemm", "winograd"])
def test_matches_torch_in_fp32(
    layer: tuple,
    bias: bool,
    channels_last: bool,
    path: str,
    torch_kernel_calls: list[str],
    gemm_calls: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _force(monkeypatch, path)
    kind, cin, cout, side, stride, pad = layer
    torch.manual_seed(0)
    reference, ours = _pair(kind, cin, cout, stride, pad, bias)
    x = torch.randn(3, cin, side, side)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = _run(reference, x, None, False)
    assert torch_kernel_calls, "the spy sees torch's kernel"
    exact = _run(copy.deepcopy(reference).double(), x.double(), None, False)
    torch_kernel_calls.clear()
    got = _run(ours, x, None, False)
    if path == "gemm":
        for a, b in zip(expected, got, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    else:  # Winograd's transforms add before they multiply: as close to the exact result as torch's kernel is
        for a, b, e in zip(expected, got, exact, strict=True):
            assert b.dtype == a.dtype
            assert (b - e).abs().max() <= 4 * (a - e).abs().max() + 1e-6
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    if stride == 2:
        assert gemm_calls == [
            ("_Winograd" if path == "winograd" else "_") + ("ConvTransposeS2" if kind == "t" else "ConvS2")
        ]
    _assert_path_switch(ours, x, torch_kernel_calls, False)


@pytest.mark.parametrize("layer", LAYERS, ids=lambda x: f"{x[0]}{x[1]}-{x[2]}@{x[3]}")
def test_matches_torch_under_bf16_autocast(layer: tuple, torch_kernel_calls: list[str]) -> None:
    kind, cin, cout, side, stride, pad = layer
    torch.manual_seed(0)
    reference, ours = _pair(kind, cin, cout, stride, pad, True)
    x = torch.randn(4, cin, side, side).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        assert ours(x).dtype == torch.bfloat16, "the same output dtype as torch's conv under autocast"
    expected = _run(reference, x, None, True)
    torch_kernel_calls.clear()
    for a, b in zip(expected, _run(ours, x, None, True), strict=True):
        assert b.dtype == a.dtype
        assert ((a - b).norm() / a.norm()).item() < 1e-2, "within bf16 rounding of torch's result"
    _assert_path_switch(ours, x, torch_kernel_calls, True)


def test_takes_the_gemm_path_only_on_small_maps(gemm_calls: list[str]) -> None:
    """Maps up to 8x8 on the low side in bf16 and up to 4x4 in fp32 (the measured limits, `MAX_GEMM_SIDE`)."""
    conv, transposed = gemm_conv.Conv2d(8, 8, 4, 2, 1), gemm_conv.ConvTranspose2d(8, 8, 4, 2, 1)
    with torch.autocast("cpu", torch.bfloat16):
        conv(torch.randn(2, 8, 16, 16))  # output 8x8: GEMM
        transposed(torch.randn(2, 8, 16, 16))  # input 16x16: torch's kernel (no Winograd in bf16)
    assert gemm_calls == ["_ConvS2"]
    conv(torch.randn(2, 8, 16, 16))  # fp32, output 8x8: torch's kernel (8 channels: too few for Winograd)
    conv(torch.randn(2, 8, 8, 8))  # fp32, output 4x4: GEMM
    transposed(torch.randn(2, 8, 4, 4))  # fp32, input 4x4: GEMM
    transposed(torch.randn(2, 8, 8, 8))  # fp32, input 8x8: torch's kernel
    assert gemm_calls == ["_ConvS2", "_ConvS2", "_ConvTransposeS2"]
    gemm_conv.use_gemm_conv(False)
    conv(torch.randn(2, 8, 8, 8))
    assert gemm_calls == ["_ConvS2", "_ConvS2", "_ConvTransposeS2"], "use_gemm_conv(False) switches the path off"


def test_takes_the_winograd_path_on_larger_maps_in_fp32(gemm_calls: list[str]) -> None:
    """Above `MAX_GEMM_SIDE`, up to `MAX_WINOGRAD_SIDE`, with enough channels and whole 2x2 output tiles."""
    wide = gemm_conv.MIN_WINOGRAD_CHANNELS
    conv, transposed = gemm_conv.Conv2d(wide, wide, 4, 2, 1), gemm_conv.ConvTranspose2d(wide, wide, 4, 2, 1)
    conv(torch.randn(2, wide, 16, 16))  # output 8x8
    transposed(torch.randn(2, wide, 8, 8))  # input 8x8
    assert gemm_calls == ["_WinogradConvS2", "_WinogradConvTransposeS2"]
    gemm_calls.clear()
    conv(torch.randn(2, wide, 20, 20))  # output 10x10: five tiles a side
    conv(torch.randn(2, wide, 18, 18))  # output 9x9: no whole tiles, torch's kernel
    with torch.autocast("cpu", torch.bfloat16):
        conv(torch.randn(2, wide, 16, 16))  # bf16 output 8x8: GEMM
        conv(torch.randn(2, wide, 32, 32))  # bf16 output 16x16: torch's kernel
    narrow = gemm_conv.Conv2d(wide // 2, wide, 4, 2, 1)
    narrow(torch.randn(2, wide // 2, 16, 16))  # too few input channels: torch's kernel
    assert gemm_calls == ["_WinogradConvS2", "_ConvS2"]
    limit = gemm_conv.MAX_WINOGRAD_SIDE[torch.float32]
    gemm_calls.clear()
    conv(torch.randn(1, wide, 4 * limit, 4 * limit))  # output above the limit: torch's kernel
    assert gemm_calls == []


#: fp32 against torch's kernels: the sums run in another order, and on the AMD EPYC (AVX-512-bf16) a few of
#: hundreds of elements differ by 1.3-1.4e-5; a wrong kernel misses 3e-5 by orders of magnitude.
FP32_ATOL = 3e-5


@pytest.mark.parametrize("channels", [1, 3])
def test_image_side_layers_in_fp32(channels: int, gemm_calls: list[str], torch_kernel_calls: list[str]) -> None:
    """Above `MAX_GEMM_SIDE`, G's last layer (to a few image channels) takes the GEMM path, and D's first takes
    torch's forward with the GEMM path's input gradient when that gradient is needed (G's step) and torch's kernels
    when it is not (D's step); each gives torch's outputs and gradients."""
    torch.manual_seed(0)
    last = _pair("t", 16, channels, 2, 1, False)
    first = _pair("c", channels, 16, 2, 1, False)
    x_last, x_first = torch.randn(3, 16, 16, 16), torch.randn(3, channels, 32, 32)
    for (reference, ours), x in ((last, x_last), (first, x_first)):
        expected = _run(reference, x, None, False)
        for a, b in zip(expected, _run(ours, x, None, False), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=FP32_ATOL)
        reference.requires_grad_(False)  # G's step: D frozen, only the input's gradient
        ours.requires_grad_(False)
        expected = _run(reference, x, None, False)
        for a, b in zip(expected, _run(ours, x, None, False), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=FP32_ATOL)
    assert gemm_calls == ["_ConvTransposeS2", "_ConvTransposeS2", "_ImageConvS2", "_ImageConvS2"]
    torch_kernel_calls.clear()
    first[1].requires_grad_(True)
    first[1](x_first).sum().backward()  # D's step: the input needs no gradient
    with torch.autocast("cpu", torch.bfloat16):  # measured in fp32 only
        last[1](x_last)
        first[1](x_first.requires_grad_(True))
    assert gemm_calls == ["_ConvTransposeS2", "_ConvTransposeS2", "_ImageConvS2", "_ImageConvS2"]
    assert torch_kernel_calls == ["conv2d", "conv_transpose2d", "conv2d"]


@pytest.mark.parametrize("path", ["gemm", "winograd"])
def test_whole_models_match_torch_kernels_in_fp32(
    path: str, gemm_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """G and D at 64x64 (every layer kind, each path) give torch's outputs and gradients: the GEMM path to 1e-5,
    Winograd as close to the exact (float64) result as torch's kernels are, within a factor of 4."""
    _force(monkeypatch, path)  # GEMM: the sub-pixel product at 8x8 inputs as well; Winograd: every stride-2 layer
    results = []
    for enabled, dtype in ((False, torch.float32), (True, torch.float32), (False, torch.float64)):
        gemm_conv.use_gemm_conv(enabled)
        torch.manual_seed(0)
        g, d = Generator(64, 3, nz=16, ngf=8), Discriminator(64, 3, ndf=8)
        g, d = g.to(dtype, memory_format=torch.channels_last), d.to(dtype, memory_format=torch.channels_last)
        logits = d(g(torch.rand(4, 16, dtype=dtype) * 2 - 1))
        logits.sum().backward()
        results.append([logits.detach()] + [p.grad for p in (*g.parameters(), *d.parameters())])
    assert any(("Winograd" in call) == (path == "winograd") for call in gemm_calls), f"the {path} path ran"
    for a, b, exact in zip(*results, strict=True):
        if path == "gemm":
            torch.testing.assert_close(b, a, rtol=1e-4, atol=FP32_ATOL)
        else:
            assert (b.double() - exact).abs().max() <= 4 * (a.double() - exact).abs().max() + 1e-6


def test_tracing_uses_torch_kernels(gemm_calls: list[str]) -> None:
    """Exports (TorchScript, ONNX) see plain convolutions."""
    g = Generator(16, 1, nz=8, ngf=8).eval()
    traced = torch.jit.trace(g, torch.rand(2, 8), check_trace=False)
    assert not gemm_calls
    assert "PythonOp" not in str(traced.graph)
    z = torch.rand(3, 8)
    torch.testing.assert_close(traced(z), g(z))
