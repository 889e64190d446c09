"""The DCGAN generator and discriminator (paper section 3), for any power-of-two size from 16 to 256.

Both are plain `nn.Sequential` stacks of `Block`s so that later tools (filter ablation, guided backprop,
feature probes) can address a layer by its index: `G.blocks[i]` and `D.blocks[i]`.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from dcgan.config import PRIORS
from dcgan.gemm_conv import Conv2d, ConvTranspose2d

#: Channel multipliers stop growing here: a 256x256 G starts at ngf * 8 channels, not ngf * 32.
MAX_MULTIPLIER = 8


def num_stages(image_size: int) -> int:
    """Number of stride-2 stages between the 4x4 core and the image: log2(size) - 2."""
    if image_size < 16 or image_size > 256 or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two from 16 to 256, got {image_size}")
    return int(math.log2(image_size)) - 2


def _multipliers(image_size: int) -> list[int]:
    """Width multipliers from the widest (4x4) layer down to the last hidden layer, e.g. [8, 4, 2, 1] for 64."""
    stages = num_stages(image_size)
    return [min(2 ** (stages - 1 - i), MAX_MULTIPLIER) for i in range(stages)]


class Block(nn.Sequential):
    """A (transposed) convolution, optional batchnorm, and an activation: one DCGAN layer."""


def _g_block(cin: int, cout: int, first: bool) -> Block:
    stride, pad = (1, 0) if first else (2, 1)
    return Block(
        ConvTranspose2d(cin, cout, 4, stride, pad, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Generator(nn.Module):
    """z (N, nz) -> images (N, channels, size, size) in [-1, 1].

    Fractionally-strided convolutions only; batchnorm and ReLU on every layer but the output, which is Tanh.
    `prior` ("uniform" on [-1, 1], the paper's, or "normal") is part of the model: z must come from it.
    """

    def __init__(
        self, image_size: int = 64, channels: int = 3, nz: int = 100, ngf: int = 64, prior: str = "uniform"
    ) -> None:
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
        self.image_size, self.channels, self.nz, self.ngf = image_size, channels, nz, ngf
        #: The latent prior G was trained with: what its samples, sheets and evaluations draw z from.
        self.prior = prior
        widths = [ngf * m for m in _multipliers(image_size)]
        layers: list[nn.Module] = [_g_block(nz, widths[0], first=True)]
        layers += [_g_block(a, b, first=False) for a, b in itertools.pairwise(widths)]
        layers.append(Block(ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=True), nn.Tanh()))
        self.blocks = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(z.reshape(z.shape[0], self.nz, 1, 1))


def _d_block(cin: int, cout: int, batchnorm: bool) -> Block:
    layers: list[nn.Module] = [Conv2d(cin, cout, 4, 2, 1, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return Block(*layers)


class Discriminator(nn.Module):
    """images (N, channels, size, size) -> logits (N,); D's probability is `torch.sigmoid(logits)`.

    Strided convolutions only, no pooling and no fully connected layer; batchnorm on every layer but the
    input one; LeakyReLU(0.2).
    """

    def __init__(self, image_size: int = 64, channels: int = 3, ndf: int = 64) -> None:
        super().__init__()
        self.image_size, self.channels, self.ndf = image_size, channels, ndf
        widths = [ndf * m for m in reversed(_multipliers(image_size))]
        layers: list[nn.Module] = [_d_block(channels, widths[0], batchnorm=False)]
        layers += [_d_block(a, b, batchnorm=True) for a, b in itertools.pairwise(widths)]
        self.blocks = nn.Sequential(*layers)
        self.head = Conv2d(widths[-1], 1, 4, 1, 0, bias=True)
        init_weights(self)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activation map after each conv block, from the first (largest) to the last (4x4)."""
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor, parts: int = 1) -> torch.Tensor:
        """Logits for `x`. With `parts` > 1, x is that many equal batches stacked along the batch (training: the
        real batch, then the fake one), and each batchnorm layer normalises every part on its own, updating its
        running statistics once per part in order, so the logits, their gradients and the statistics are those of
        `parts` separate calls; the other layers act per image. One call instead of several means one backward
        pass and, under DDP, one gradient all-reduce."""
        if parts == 1:
            return self.head(self.blocks(x)).flatten()
        if x.shape[0] % parts:
            raise ValueError(f"a batch of {x.shape[0]} images does not split into {parts} equal parts")
        for block in self.blocks:
            for layer in block.children():
                x = _per_part(layer, x, parts) if isinstance(layer, nn.modules.batchnorm._BatchNorm) else layer(x)
        return self.head(x).flatten()


def _per_part(norm: nn.Module, x: torch.Tensor, parts: int) -> torch.Tensor:
    """`norm` applied to each of `parts` equal slices of the batch on its own, in order, then joined again.

    The slices are views (no copy in), and the module itself runs on each, so its running statistics get one
    momentum update per part, exactly as separate calls give, and a SyncBatchNorm still syncs each part.
    """
    return torch.cat([norm(part) for part in x.chunk(parts)])


@torch.no_grad()
def recalibrate_batchnorm(
    generator: Generator, prior: str | None = None, batches: int = 8, batch_size: int = 128, seed: int = 0
) -> Generator:
    """Re-estimate G's batchnorm statistics for its current weights, in place; returns G in eval mode.

    During training G only ever runs in train mode, where batchnorm uses each batch's own statistics, and its
    running averages trail weights that move every step; in eval mode those stale averages give visibly worse
    samples than the weights can draw. A cumulative average over `batches` fresh batches of latents (a fixed
    seed, so the result is reproducible) matches them to the weights again.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    device = next(generator.parameters()).device
    noise = torch.Generator(device).manual_seed(seed)
    generator.train()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    for _ in range(batches):
        generator(sample_prior(batch_size, generator.nz, prior or generator.prior, noise, device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return generator.eval()


def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: conv weights N(0, 0.02); batchnorm scales N(1, 0.02); biases zero."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def sample_prior(
    n: int, nz: int, prior: str, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Draw n latent vectors from the paper's prior: uniform on [-1, 1] or a standard normal."""
    if prior == "uniform":
        return torch.rand(n, nz, generator=generator, device=device) * 2 - 1
    if prior == "normal":
        return torch.randn(n, nz, generator=generator, device=device)
    raise ValueError(f"unknown prior {prior!r}")
