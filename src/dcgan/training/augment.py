"""Differentiable augmentation of what D sees (DiffAugment; Zhao et al., 2020, "Differentiable Augmentation for
Data-Efficient GAN Training").

On a small data set D learns the training images themselves after a few dozen epochs, and G then loses the
rarest kinds of image first. `--augment` passes every image D sees, real and fake, through the same random
transformations: D cannot tell them apart by what the transformation did, and because each transformation is
differentiable G's gradient flows through it, so G still learns the un-augmented images (the augmentation is not
in G's samples). The weight update is the paper's; only D's inputs change.

Policies (comma-separated, applied in this order):
- `color`: brightness +-0.5, saturation x0-2, contrast x0.5-1.5, each drawn per image;
- `translation`: shift by up to 1/8 of the side each way, the uncovered border filled with 0 (mid grey);
- `cutout`: a square of half the side, anywhere, set to 0.

Written here rather than taken from a library: kornia's or torchvision's random transforms draw from the global
random state and are not all differentiable with respect to the image; these draw from a generator the trainer
seeds from the run's seed and the step, so a resumed run augments exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str | None) -> tuple[str, ...]:
    """`"translation,cutout"` -> ("translation", "cutout"); "", "none" or None -> (). Raises ValueError on an
    unknown name."""
    if not text or text.strip().lower() == "none":
        return ()
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"--augment takes a comma-separated choice of {', '.join(POLICIES)} (or none), got {text!r}.")
    return tuple(name for name in POLICIES if name in names)  # always applied in the same order


def _uniform(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """One uniform [0, 1) number per image, shaped to broadcast over it, in x's dtype and device."""
    return torch.rand(x.shape[0], 1, 1, 1, generator=rng).to(x.device, x.dtype)


def color(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    x = x + (_uniform(x, rng) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform(x, rng) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, rng) + 0.5) + mean


def translation(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), generator=rng).to(x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=rng).to(x.device)
    # Output pixel (i, j) reads input pixel (i + dy, j + dx) of the image padded by one zero pixel; reads past the
    # edge land on that padding.
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp_(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp_(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # N, H+2, W+2, C
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=rng).to(x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=rng).to(x.device) - cw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


TRANSFORMS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "color": color, "translation": translation, "cutout": cutout,
}  # fmt: skip


def augment(x: torch.Tensor, policy: tuple[str, ...], rng: torch.Generator) -> torch.Tensor:
    """x (N, C, H, W, in [-1, 1]) through each of `policy`'s transformations, drawn per image from `rng` (a CPU
    generator); differentiable in x. An empty policy returns x itself."""
    for name in policy:
        x = TRANSFORMS[name](x, rng)
    return x


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The augmentations' random stream for one step of one rank: fixed by the run's seed, the step and the rank,
    so a resumed run draws what an uninterrupted one would have."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + rank + 17)
