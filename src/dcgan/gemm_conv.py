"""DCGAN's convolutions as single matrix products, for CPUs.

Every DCGAN layer is one of four shapes: a 4x4 convolution with stride 2 and padding 1 (D), its transpose (G),
and the 4x4 "projection" layers at the ends (G's first layer on a 1x1 input, D's head on a 4x4 map), which are
plain matrix products. On this project's CPUs (AMX bf16) oneDNN runs the stride-2 layers' backward pass at a
fifth to a third of what a matrix product of the same FLOPs reaches (`benchmarks/conv_layers.py`), and the
backward pass is two thirds of a training step. Written as matrix products (im2col + one GEMM for a
convolution, a sub-pixel product for its transpose and for its input gradient), with the data in channels_last
order so that every gathered run is a contiguous row of channels, the same layers run 1.5-3x faster
(`benchmarks/conv_layers.py`). That is the reason this file exists rather than `F.conv2d`.

On CPUs without AMX, in fp32, the layers are bound by the multiplications themselves (oneDNN and the GEMM path
both reach 75-95% of a matrix product's rate), so the only way to be faster is to do fewer: the stride-2 layers
with larger maps take Winograd's F(2x2, 2x2) algorithm, which computes the same convolution (to fp32 rounding)
with 9/16 of the multiplications, in the forward pass and in both gradients (see the section below).

`Conv2d` and `ConvTranspose2d` below are drop-in subclasses of torch's: same parameters, same state dict, same
results; they take the GEMM path only where it is known to win (CPU tensors, the shapes above) and otherwise
call torch's own kernel. `use_gemm_conv(False)` turns the path off process-wide (like `torch.backends` flags); `gemm_conv_path(False)`
turns it off for a while in the calling thread only (an inference plan's choice, which a web server's workers and
a training loop in the same process must not see).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_weight

#: What the path computes with, part of the execution-plan cache's key (`dcgan.plan.cache`): a plan measured
#: with an older version is measured again. 1: GEMM and sub-pixel products; 2: Winograd F(2x2, 2x2) added; 3: the
#: image-side layers (`IMAGE_CHANNELS`) off torch's kernels in fp32.
KERNELS = 3

_enabled = True
#: The calling thread's choice (None: the process-wide switch).
_scoped: ContextVar[bool | None] = ContextVar("dcgan_gemm_conv", default=None)


def use_gemm_conv(enabled: bool) -> bool:
    """Turn the GEMM path on or off for every `Conv2d`/`ConvTranspose2d` in this module (default on).

    Returns the previous setting, so that a caller that changes it for a while (training) can put it back.
    """
    global _enabled
    previous, _enabled = _enabled, enabled
    return previous


@contextmanager
def gemm_conv_path(enabled: bool) -> Iterator[None]:
    """Take the GEMM path (or torch's kernels) in this thread while the block runs; other threads, and the
    process-wide switch `use_gemm_conv`, are left alone."""
    token = _scoped.set(enabled)
    try:
        yield
    finally:
        _scoped.reset(token)


def _gemm_enabled() -> bool:
    scoped = _scoped.get()
    return _enabled if scoped is None else scoped


# ------------------------------------------------------------------------ im2col / col2im, stride 2, 4x4
def _im2col(xh: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B*H/2*W/2, 16*C): the 4x4 stride-2 padding-1 windows, ordered (kh, kw, c)."""
    b, h, w, c = xh.shape
    xp = F.pad(xh, (0, 0, 1, 1, 1, 1))
    hp, wp = h + 2, w + 2
    windows = xp.as_strided((b, h // 2, w // 2, 4, 4, c), (hp * wp * c, 2 * wp * c, 2 * c, wp * c, c, 1))
    return windows.reshape(b * (h // 2) * (w // 2), 16 * c)


def _col2im(cols: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """The adjoint of `_im2col`: (B*H/2*W/2, 16*C) -> (B, H, W, C), overlapping windows summed in fp32.

    Kernel row kh = 2a + p lands on padded row 2(i + a) + p, so the 16 taps fall into 4 shifted adds of
    whole (p, q) parity blocks.
    """
    c = cols.shape[1] // 16
    ho, wo = h // 2, w // 2
    taps = cols.view(b, ho, wo, 2, 2, 2, 2, c)  # (b, i, j, a, p, a', q, c)
    out = torch.zeros(b, ho + 1, 2, wo + 1, 2, c, dtype=torch.float32, device=cols.device)
    for a in (0, 1):
        for a2 in (0, 1):
            out[:, a : a + ho, :, a2 : a2 + wo] += taps[:, :, :, a, :, a2].permute(0, 1, 3, 2, 4, 5)
    return out.view(b, h + 2, w + 2, c)[:, 1:-1, 1:-1].to(cols.dtype).contiguous()


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """An NCHW-shaped tensor as a contiguous (B, H, W, C) one (free when x is channels_last)."""
    return x.permute(0, 2, 3, 1).contiguous()


def _nchw_view(xh: torch.Tensor) -> torch.Tensor:
    """A contiguous (B, H, W, C) tensor as an NCHW-shaped channels_last tensor, without a copy."""
    return xh.permute(0, 3, 1, 2)


def _matrix(weight: torch.Tensor) -> torch.Tensor:
    """A (A, B, 4, 4) kernel as an (A, 16*B) matrix with columns in (kh, kw, b) order, matching `_im2col`."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def _kernel(matrix: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of `_matrix`: an (A, 16*B) matrix back to an (A, B, 4, 4) kernel."""
    a, b, kh, kw = shape
    return matrix.view(a, kh, kw, b).permute(0, 3, 1, 2)


def _strided_product(cols: torch.Tensor, weight: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """conv2d(x, weight, stride=2, padding=1) from x's `_im2col` (x of shape (B, H, W, C)), an (O, C, 4, 4)
    weight -> (B, H/2, W/2, O)."""
    return (cols @ _matrix(weight).t()).view(b, h // 2, w // 2, -1)


#: `_subpixel_product` takes GEMM + col2im when the output has at most 1/this of the input's channels.
FEW_OUTPUT_CHANNELS = 8


def _subpixel_product(xh: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """conv_transpose2d(x, weight, stride=2, padding=1) for (B, H, W, C) x and a (C, O, 4, 4) weight.

    Output pixel 2u + p (padded coordinates) takes kernel rows 2a + p from input rows u - a, a in {0, 1}: each
    of the four output phases (p, q) is a 2x2 stride-1 convolution of the input, and all four are one product
    of the input's 2x2 windows (B*(H+1)*(W+1), 4C) with a (4C, 4O) rearranged kernel, followed by an
    interleave of the phases. Unlike GEMM + col2im this needs no scatter-add, but it computes the (H+1)x(W+1)
    window grid for an HxW input: at 4x4 inputs that is 56% more work than needed, and GEMM + col2im wins there.
    GEMM + col2im also wins where the output has far fewer channels than the input (G's last layer to the image,
    D's first layer's input gradient): the windows gathered here are 4C wide for each 4O-wide row of products,
    and gathering 4 x 32 channels to make 4 one-channel outputs took 3/4 of such a layer's time.
    """
    b, h, w, c = xh.shape
    o = weight.shape[1]
    if h * w <= 16 or o * FEW_OUTPUT_CHANNELS <= c:
        return _col2im(xh.reshape(b * h * w, c) @ _matrix(weight), b, 2 * h, 2 * w)
    xp = F.pad(xh, (0, 0, 1, 1, 1, 1))
    s = xp.stride()
    windows = xp.as_strided((b, h + 1, w + 1, 2, 2, c), (s[0], s[1], s[2], s[1], s[2], 1))
    # weight[c, o, 2a + p, 2a' + q] at row (t, t', c) = (1 - a, 1 - a', c), column (p, q, o)
    kernel = weight.reshape(c, o, 2, 2, 2, 2).flip(2, 4).permute(2, 4, 0, 3, 5, 1).reshape(4 * c, 4 * o)
    phases = (windows.reshape(-1, 4 * c) @ kernel).view(b, h + 1, w + 1, 2, 2, o)
    # padded row 2u + p is output row 2u + p - 1: even output rows are phase 1 of windows 0..h-1, odd rows phase 0
    # of windows 1..h (likewise columns), so each output phase is one copy of a slice, the border never written
    y = torch.empty(b, h, 2, w, 2, o, dtype=phases.dtype, device=phases.device)
    for p in (0, 1):
        for q in (0, 1):
            y[:, :, p, :, q].copy_(phases[:, p : h + p, q : w + q, 1 - p, 1 - q])
    return y.view(b, 2 * h, 2 * w, o)


class _ConvS2(torch.autograd.Function):
    """y = conv2d(x, w, stride=2, padding=1) for 4x4 kernels, x and y channels_last."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        xh = _nhwc(x)
        cols = _im2col(xh)
        ctx.save_for_backward(cols if ctx.needs_input_grad[1] else None, weight)
        return _nchw_view(_strided_product(cols, weight, *xh.shape[:3]))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        cols, weight = ctx.saved_tensors
        gh = _nhwc(grad)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _nchw_view(_subpixel_product(gh, weight))
        if ctx.needs_input_grad[1]:
            grad_w = _kernel(gh.view(-1, weight.shape[0]).t() @ cols, weight.shape)
        return grad_x, grad_w


class _ConvTransposeS2(torch.autograd.Function):
    """y = conv_transpose2d(x, w, stride=2, padding=1) for 4x4 kernels, x and y channels_last."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        xh = _nhwc(x)
        ctx.save_for_backward(xh if ctx.needs_input_grad[1] else None, weight)
        return _nchw_view(_subpixel_product(xh, weight))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        xh, weight = ctx.saved_tensors
        gh = _nhwc(grad)
        cols = _im2col(gh)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # the adjoint of a transposed convolution is the convolution itself
            grad_x = _nchw_view(_strided_product(cols, weight, *gh.shape[:3]))
        if ctx.needs_input_grad[1]:
            grad_w = _kernel(xh.reshape(-1, weight.shape[0]).t() @ cols, weight.shape)
        return grad_x, grad_w


class _ImageConvS2(torch.autograd.Function):
    """D's first layer (a few image channels in) when its input needs a gradient (G's step): torch's kernel for the
    forward pass and the weight gradient, where oneDNN is fast, and the GEMM path's sub-pixel product (GEMM +
    col2im, see `_subpixel_product`) for the input gradient, which oneDNN computes 2-3x slower."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight)
        return F.conv2d(x, weight, stride=2, padding=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _nchw_view(_subpixel_product(_nhwc(grad), weight))
        if ctx.needs_input_grad[1]:
            grad_w = conv2d_weight(x, weight.shape, grad, stride=2, padding=1)
        return grad_x, grad_w


# ------------------------------------------------------------------------ Winograd F(2x2, 2x2), fp32
# A 4x4 stride-2 padding-1 convolution is a 2x2 stride-1 convolution of the padded input's space-to-depth
# (4C channels at half the resolution): kernel row kh = 2a + p takes padded rows 2(i + a) + p. Winograd's
# F(2x2, 2x2) computes each 2x2 tile of that convolution's output from a 3x3 tile of its input with 9 products
# instead of 16: in one dimension y0 = d0 g0 + d1 g1, y1 = d1 g0 + d2 g1 are (d0 - d1) g0 + d1 (g0 + g1) and
# d1 (g0 + g1) + (d2 - d1) g1. So the layer becomes 9 matrix products (one per tile position) of 9/16 of the
# direct FLOPs, between transforms that only add and subtract, which keeps it exact to fp32 rounding. A
# transposed convolution is the adjoint of a convolution, so the same three transforms and their adjoints give
# G's layers and every gradient: each pass of a training step does 9/16 of the multiplications.
def _tiles(h: int, w: int) -> tuple[int, int]:
    """The number of 2x2 output tiles of the low-resolution side, per dimension, of an HxW high-res map."""
    return h // 4, w // 4


def _winograd_input(xh: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (9, B*H/4*W/4, 4C): B^T d B for every 3x3 tile d of the padded space-to-depth input,
    B^T = [[1, -1, 0], [0, 1, 0], [0, -1, 1]], channels in (p, q, c) order."""
    b, h, w, c = xh.shape
    th, tw = _tiles(h, w)
    xp = F.pad(xh, (0, 0, 1, 1, 1, 1)).view(b, h // 2 + 1, 2, w // 2 + 1, 2, c)  # (b, u, p, v, q, c)
    even, odd = xp[:, 0::2], xp[:, 1::2]  # tile t reads rows 2t, 2t + 1, 2t + 2
    rows = torch.empty(3, b, th, 2, w // 2 + 1, 2, c, dtype=xh.dtype, device=xh.device)
    torch.sub(even[:, :-1], odd, out=rows[0])
    rows[1].copy_(odd)
    torch.sub(even[:, 1:], odd, out=rows[2])
    even, odd = rows[:, :, :, :, 0::2], rows[:, :, :, :, 1::2]
    u = torch.empty(3, 3, b, th, tw, 2, 2, c, dtype=xh.dtype, device=xh.device)
    cols = u.permute(0, 1, 2, 3, 5, 4, 6, 7)  # (row pos, col pos, b, t, p, t', q, c)
    torch.sub(even[..., :-1, :, :], odd, out=cols[:, 0])
    cols[:, 1].copy_(odd)
    torch.sub(even[..., 1:, :, :], odd, out=cols[:, 2])
    return u.view(9, b * th * tw, 4 * c)


def _winograd_input_adjoint(du: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """The adjoint of `_winograd_input`: (9, B*H/4*W/4, 4C) -> (B, H, W, C), overlapping tile edges summed."""
    c = du.shape[-1] // 4
    th, tw = _tiles(h, w)
    cols = du.view(3, 3, b, th, tw, 2, 2, c).permute(0, 1, 2, 3, 5, 4, 6, 7)
    rows = torch.empty(3, b, th, 2, w // 2 + 1, 2, c, dtype=du.dtype, device=du.device)
    even, odd = rows[:, :, :, :, 0::2], rows[:, :, :, :, 1::2]
    even[..., :1, :, :].copy_(cols[:, 0, ..., :1, :, :])
    torch.add(cols[:, 0, ..., 1:, :, :], cols[:, 2, ..., :-1, :, :], out=even[..., 1:-1, :, :])
    even[..., -1:, :, :].copy_(cols[:, 2, ..., -1:, :, :])
    torch.sub(cols[:, 1], cols[:, 0], out=odd)
    odd -= cols[:, 2]
    xp = torch.empty(b, h // 2 + 1, 2, w // 2 + 1, 2, c, dtype=du.dtype, device=du.device)
    even, odd = xp[:, 0::2], xp[:, 1::2]
    even[:, :1].copy_(rows[0, :, :1])
    torch.add(rows[0, :, 1:], rows[2, :, :-1], out=even[:, 1:-1])
    even[:, -1:].copy_(rows[2, :, -1:])
    torch.sub(rows[1], rows[0], out=odd)
    odd -= rows[2]
    return xp.view(b, h + 2, w + 2, c)[:, 1:-1, 1:-1].contiguous()


def _winograd_output(m: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """(9, B*H/4*W/4, O) -> (B, H/2, W/2, O): A^T m A for every tile, A^T = [[1, 1, 0], [0, 1, 1]]."""
    o = m.shape[-1]
    th, tw = _tiles(h, w)
    mv = m.view(3, 3, b, th, tw, o)
    rows = torch.empty(2, 3, b, th, tw, o, dtype=m.dtype, device=m.device)
    torch.add(mv[0], mv[1], out=rows[0])
    torch.add(mv[1], mv[2], out=rows[1])
    y = torch.empty(b, th, 2, tw, 2, o, dtype=m.dtype, device=m.device)
    yv = y.permute(2, 4, 0, 1, 3, 5)  # (r, c, b, t, t', o)
    torch.add(rows[:, 0], rows[:, 1], out=yv[:, 0])
    torch.add(rows[:, 1], rows[:, 2], out=yv[:, 1])
    return y.view(b, h // 2, w // 2, o)


def _winograd_output_adjoint(gh: torch.Tensor) -> torch.Tensor:
    """The adjoint of `_winograd_output`: (B, H/2, W/2, O) -> (9, B*H/4*W/4, O)."""
    b, hl, wl, o = gh.shape
    th, tw = hl // 2, wl // 2
    yv = gh.view(b, th, 2, tw, 2, o).permute(2, 4, 0, 1, 3, 5)  # (r, c, b, t, t', o)
    rows = torch.empty(2, 3, b, th, tw, o, dtype=gh.dtype, device=gh.device)
    rows[:, 0].copy_(yv[:, 0])
    torch.add(yv[:, 0], yv[:, 1], out=rows[:, 1])
    rows[:, 2].copy_(yv[:, 1])
    m = torch.empty(3, 3, b, th, tw, o, dtype=gh.dtype, device=gh.device)
    m[0].copy_(rows[0])
    torch.add(rows[0], rows[1], out=m[1])
    m[2].copy_(rows[1])
    return m.view(9, b * th * tw, o)


def _winograd_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A convolution's (O, C, 4, 4) weight -> (9, 4C, O): G g G^T per tap pair, G = [[1, 0], [1, 1], [0, 1]]."""
    o, c = weight.shape[:2]
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=weight.dtype, device=weight.device)
    return torch.einsum("xa,yb,ocapbq->xypqco", g, g, weight.view(o, c, 2, 2, 2, 2)).reshape(9, 4 * c, o)


def _winograd_kernel_adjoint(dv: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The adjoint of `_winograd_kernel`: (9, 4C, O) -> an (O, C, 4, 4) weight gradient."""
    o, c = shape[:2]
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=dv.dtype, device=dv.device)
    return torch.einsum("xa,yb,xypqco->ocapbq", g, g, dv.view(3, 3, 2, 2, c, o)).reshape(shape)


def _winograd_weight_grad(u: torch.Tensor, m: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The (O, C, 4, 4) weight gradient from the transformed high-resolution side u, (9, T, 4C), and the
    transformed low-resolution gradient or input m, (9, T, O): one product per tile position, summed over tiles."""
    return _winograd_kernel_adjoint(torch.bmm(u.transpose(1, 2), m), shape)


class _WinogradConvS2(torch.autograd.Function):
    """y = conv2d(x, w, stride=2, padding=1) for 4x4 kernels by Winograd F(2x2, 2x2); x and y channels_last."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        xh = _nhwc(x)
        u, v = _winograd_input(xh), _winograd_kernel(weight)
        ctx.save_for_backward(u if ctx.needs_input_grad[1] else None, v)
        ctx.shapes = xh.shape[:3], weight.shape
        return _nchw_view(_winograd_output(torch.bmm(u, v), *xh.shape[:3]))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        u, v = ctx.saved_tensors
        (b, h, w), shape = ctx.shapes
        dm = _winograd_output_adjoint(_nhwc(grad))
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _nchw_view(_winograd_input_adjoint(torch.bmm(dm, v.transpose(1, 2)), b, h, w))
        if ctx.needs_input_grad[1]:
            grad_w = _winograd_weight_grad(u, dm, shape)
        return grad_x, grad_w


class _WinogradConvTransposeS2(torch.autograd.Function):
    """y = conv_transpose2d(x, w, stride=2, padding=1) for 4x4 kernels by Winograd F(2x2, 2x2): the adjoint of
    `_WinogradConvS2` with w, a (C_in, C_out, 4, 4) weight, read as a convolution's (O, C, 4, 4)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        xh = _nhwc(x)
        b, hl, wl, _ = xh.shape
        m, v = _winograd_output_adjoint(xh), _winograd_kernel(weight)
        ctx.save_for_backward(m if ctx.needs_input_grad[1] else None, v)
        ctx.shapes = (b, 2 * hl, 2 * wl), weight.shape
        return _nchw_view(_winograd_input_adjoint(torch.bmm(m, v.transpose(1, 2)), b, 2 * hl, 2 * wl))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        m, v = ctx.saved_tensors
        (b, h, w), shape = ctx.shapes
        u = _winograd_input(_nhwc(grad))
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _nchw_view(_winograd_output(torch.bmm(u, v), b, h, w))
        if ctx.needs_input_grad[1]:
            grad_w = _winograd_weight_grad(u, m, shape)
        return grad_x, grad_w


# ------------------------------------------------------------------------ when to take the GEMM path
#: A stride-2 layer takes the GEMM path when its low-resolution side is at most this many pixels a side, per
#: compute dtype. Measured with `benchmarks/conv_layers.py` at 32x32 and 64x64: in bf16 (AMX) oneDNN is 1.1-3x
#: slower than the GEMM path up to 8x8 (its backward kernels are poor for small maps with many channels); on
#: larger maps with few channels oneDNN is 1.3-1.8x faster than im2col, whose copies then cost more than its
#: products save. In fp32 (a CPU without AMX) the GEMM path wins 2x at 4x4 and ties at 8x8 for the paper's
#: 64x64 widths (torch's kernel slightly ahead on G's 256->128), and for the default job's narrow model timed in
#: one process a 4x4 limit beat 8x8 (0.202 s against 0.233 s a step); a whole run from the command line did not
#: show that gain (0.234 s against 0.229 s with torch's kernels), so 4 is the layer table's choice (docs/speed.md).
MAX_GEMM_SIDE: dict[torch.dtype, int] = {torch.bfloat16: 8, torch.float16: 8, torch.float32: 4}


#: A stride-2 layer whose low-resolution side is larger than `MAX_GEMM_SIDE` takes the Winograd path when that
#: side is at most this many pixels and both of its channel counts are at least `MIN_WINOGRAD_CHANNELS`, per
#: compute dtype; fp32 only (in bf16 its additions would round the transformed tiles). Its transforms are memory
#: passes over tensors 2.25x the size of the layer's input, so it pays only where the products dominate: on the
#: 2-core Xeon without AMX (`benchmarks/conv_layers.py --precision fp32`) it beat torch's kernels by 11-37% on the
#: paper's 64x64 G 256->128 and D 128->256 (8x8 and 16x16 maps) in two runs, swung between +12% and -14% on
#: G's 128->64, tied or lost at 32x32 maps, and lost by 5-10% on the 64-wide 32x32 model's 128->64 and 64->128.
#: Whole 64x64 steps (ngf = ndf = 64, batch 128): 2.24 s with these limits, 2.40 s with a 32 limit, 2.44 s
#: without Winograd (docs/speed.md).
MAX_WINOGRAD_SIDE: dict[torch.dtype, int] = {torch.float32: 16}
MIN_WINOGRAD_CHANNELS = 128


#: A layer with at most this many channels on one side is an image-side layer (D's first, G's last): in fp32 G's
#: last layer takes the GEMM path (GEMM + col2im) at any size, and D's first takes `_ImageConvS2` when its input
#: needs a gradient. oneDNN's kernels for a few channels are far below its rate elsewhere: on the 2-core Xeon
#: without AMX (fwd + both gradients, batch 128) G's 32->1 at 16x16 took 12.4 ms against the GEMM path's 8.0 (its
#: forward pass 9.8 against 3.4) and 64->3 at 32x32 62.6 against 58.6 (forward 43.9 against 24.8); D's 1->32 at
#: 32x32 took 11.3 ms for the forward pass and input gradient against 6.7, 3->64 at 64x64 58.6 against 45.4,
#: while its forward pass and weight gradient alone (D's step, whose input needs no gradient) are faster with
#: oneDNN (2.8 against 4.8 ms, 20.7 against 29.0).
IMAGE_CHANNELS = 4


def _path(module: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor) -> str | None:
    """ "gemm", "winograd", "image" (`_ImageConvS2`) or None (torch's own kernel) for this layer on this input."""
    if not (
        _gemm_enabled()
        and x.device.type == "cpu"
        and x.dim() == 4
        and module.kernel_size == (4, 4)
        and module.groups == 1
        and module.dilation == (1, 1)
        and module.padding_mode == "zeros"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.compiler.is_compiling()
        and not torch.onnx.is_in_onnx_export()
    ):
        return None
    transposed = isinstance(module, nn.ConvTranspose2d)
    if transposed and module.output_padding != (0, 0):
        return None
    h, w = x.shape[2], x.shape[3]
    if module.stride == (1, 1) and module.padding == (0, 0):  # G's 1x1 -> 4x4 input layer or D's 4x4 -> 1x1 head
        return "gemm" if (h, w) == ((1, 1) if transposed else (4, 4)) else None
    if module.stride != (2, 2) or module.padding != (1, 1) or h % 2 or w % 2:
        return None
    dtype = _compute_dtype(x)
    low = max((h, w) if transposed else (h // 2, w // 2))
    if low <= MAX_GEMM_SIDE.get(dtype, 8):
        return "gemm"
    if dtype == torch.float32 and transposed and module.out_channels <= IMAGE_CHANNELS:
        return "gemm"
    if dtype == torch.float32 and not transposed and module.in_channels <= IMAGE_CHANNELS:
        return "image" if x.requires_grad and torch.is_grad_enabled() else None
    whole_tiles = transposed or (h % 4, w % 4) == (0, 0)  # 2x2 output tiles cover the low-resolution side
    if (
        whole_tiles
        and low <= MAX_WINOGRAD_SIDE.get(dtype, 0)
        and min(module.in_channels, module.out_channels) >= MIN_WINOGRAD_CHANNELS
    ):
        return "winograd"
    return None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype torch's own conv would compute in here: autocast's on the CPU, else the input's."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype


def _add_bias(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return y if bias is None else y + bias.to(y.dtype).view(1, -1, 1, 1)


class Conv2d(nn.Conv2d):
    """`nn.Conv2d` that runs DCGAN's 4x4 layers as matrix products on the CPU (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        path = _path(self, x)
        if path is None:
            return super().forward(x)
        dtype = _compute_dtype(x)
        with torch.autocast("cpu", enabled=False):
            x, weight = x.to(dtype), self.weight.to(dtype)
            if self.stride == (2, 2):
                kernel = {"winograd": _WinogradConvS2, "image": _ImageConvS2}.get(path, _ConvS2)
                y = kernel.apply(x, weight)
            else:  # a 4x4 map to 1x1: each image is one row of 16*C features
                y = (_nhwc(x).flatten(1) @ _matrix(weight).t()).view(x.shape[0], -1, 1, 1)
            return _add_bias(y, self.bias)


class ConvTranspose2d(nn.ConvTranspose2d):
    """`nn.ConvTranspose2d` that runs DCGAN's 4x4 layers as matrix products on the CPU."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        path = None if output_size is not None else _path(self, x)
        if path is None:
            return super().forward(x, output_size)
        dtype = _compute_dtype(x)
        with torch.autocast("cpu", enabled=False):
            x, weight = x.to(dtype), self.weight.to(dtype)
            if self.stride == (2, 2):
                y = (_WinogradConvTransposeS2 if path == "winograd" else _ConvTransposeS2).apply(x, weight)
            else:  # a 1x1 input to 4x4: z times a (C_in, 4*4*C_out) matrix
                rows = x.reshape(x.shape[0], -1) @ _matrix(weight)
                y = _nchw_view(rows.view(x.shape[0], 4, 4, weight.shape[1]))
            return _add_bias(y, self.bias)
