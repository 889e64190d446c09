"""D's features for a linear probe (paper section 5.1), and the raw-pixel baseline.

The paper "use[s] the discriminator's convolutional features from all layers, maxpooling each layers
representation to produce a 4 x 4 spatial grid. These features are then flattened and concatenated". Before
extracting, the batchnorm statistics are recomputed on the probe's training images: the running averages that
training leaves behind mix real and generated batches, and a probe should normalise the images it is given.

Features are computed in batches under no_grad, under the inference plan measured fastest for D's features on the
device (`features_plan`, `dcgan.plan.inference`): its layout and convolution path, and with `precision="auto"` bf16
autocast where that is faster than float32 (several times faster on CPUs with AMX, 3x slower on CPUs that emulate
bfloat16). They are cached on disk under `dcgan.data.cache.cache_dir() / "probe"`, keyed by a hash of D's weights
and every setting that changes them, so a second probe of the same checkpoint skips extraction.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dcgan.data.cache import cache_dir
from dcgan.errors import ConfigError
from dcgan.models import Discriminator
from dcgan.plan.inference import MEASURE_BATCH, applied, in_layout, inference_plan
from dcgan.plan.plans import ExecutionPlan

#: "auto": whichever of fp32 and bf16 `features_plan` measures faster on the device.
PRECISIONS = ("auto", "fp32", "bf16")
#: Bumped when the feature recipe changes, so stale cache entries are never reused.
RECIPE_VERSION = 1


def to_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1], D's input range in training."""
    return pixels.to(torch.float32).div_(127.5).sub_(1)


def _d_input(pixels: torch.Tensor, device: torch.device, plan: ExecutionPlan) -> torch.Tensor:
    return in_layout(to_input(pixels.to(device)), plan)


def map_sizes(d: Discriminator) -> list[tuple[int, int]]:
    """(channels, side) of the map after each of D's conv blocks, from the first to the last."""
    sizes, side = [], d.image_size
    for block in d.blocks:
        conv = block[0]  # type: ignore[index]
        side //= 2
        sizes.append((int(conv.out_channels), side))
    return sizes


def check_layers(d: Discriminator, layers: Sequence[int] | None, grid: int) -> list[int]:
    """The block indices to read (all of them for None), validated against D and the pooling grid."""
    sizes = map_sizes(d)
    chosen = list(range(len(sizes))) if layers is None else [int(i) for i in layers]
    if not chosen:
        raise ConfigError("--layers needs at least one layer index.")
    for i in chosen:
        if not 0 <= i < len(sizes):
            raise ConfigError(f"Layer {i} does not exist: this discriminator has layers 0 to {len(sizes) - 1}.")
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"--layers lists a layer twice: {chosen}.")
    if grid < 1:
        raise ConfigError(f"--grid must be at least 1, got {grid}.")
    for i in chosen:
        if sizes[i][1] < grid:
            raise ConfigError(
                f"--grid {grid} is larger than layer {i}'s {sizes[i][1]}x{sizes[i][1]} map; use --grid {sizes[i][1]} "
                "or leave that layer out with --layers."
            )
    return sorted(chosen)


def feature_dim(d: Discriminator, layers: Sequence[int] | None = None, grid: int = 4) -> int:
    """Length of the concatenated feature vector: sum of channels x grid x grid over the chosen layers."""
    sizes = map_sizes(d)
    return sum(sizes[i][0] * grid * grid for i in check_layers(d, layers, grid))


def features_plan(d: Discriminator, precision: str = "auto", device: str | torch.device = "cpu") -> ExecutionPlan:
    """How D's features run on `device`: `precision` ("auto": the faster of fp32 and bf16), and the layout and
    convolution path, as measured fastest for `d.features` on a few random images (`dcgan.plan.inference_plan`,
    cached per machine)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    device = torch.device(device)
    on_device = d if next(d.parameters()).device == device else copy.deepcopy(d).to(device)
    pixels = torch.randint(0, 256, (MEASURE_BATCH, d.channels, d.image_size, d.image_size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    forced = {} if precision == "auto" else {"precision": precision}
    call = lambda m, x: m.features(x)[-1]
    return inference_plan(on_device, [to_input(pixels).to(device)], work="D features", call=call, forced=forced).plan


def resolve_precision(precision: str, d: Discriminator, device: str | torch.device) -> str:
    """ "fp32" or "bf16": `precision` itself, or for "auto" the one `features_plan` measures faster for `d`."""
    return precision if precision != "auto" else features_plan(d, precision, device).precision


def _batches(images: torch.Tensor, batch_size: int) -> list[tuple[int, torch.Tensor]]:
    return [(start, images[start : start + batch_size]) for start in range(0, images.shape[0], batch_size)]


@torch.no_grad()
def recompute_batchnorm(
    d: Discriminator,
    images: torch.Tensor,
    *,
    batch_size: int = 500,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
) -> None:
    """Replace D's batchnorm running statistics by their average over `images` (uint8), then set eval mode.

    The running statistics are reset and the images forwarded in train mode with `momentum=None`, which makes
    each layer keep the cumulative (equal-weight) average of the batch means and variances.
    """
    device = torch.device(device)
    norms = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        d.eval()
        return
    plan = features_plan(d, precision, device)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    d.train()
    try:
        with applied(d, plan):
            for _, batch in _batches(images, batch_size):
                d.blocks(_d_input(batch, device, plan))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        d.eval()


@torch.no_grad()
def extract_features(
    d: Discriminator,
    images: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
    grid: int = 4,
    batch_size: int = 500,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """D's features of uint8 `images` (N, C, S, S) as a float32 array (N, feature_dim).

    Each chosen block's map is max-pooled to `grid` x `grid` (adaptive max pooling), flattened channel-major
    and the layers are concatenated from the first to the last. D is used as it is (call
    `recompute_batchnorm` first for the paper's recipe) and left in eval mode.
    """
    device = torch.device(device)
    chosen = check_layers(d, layers, grid)
    d.eval()
    plan = features_plan(d, precision, device)
    out = np.empty((images.shape[0], feature_dim(d, chosen, grid)), dtype=np.float32)
    with applied(d, plan):
        for start, batch in _batches(images, batch_size):
            maps = d.features(_d_input(batch, device, plan))
            # Max pooling commutes with rounding, so pooling in bfloat16 before widening loses nothing.
            pooled = [F.adaptive_max_pool2d(maps[i], grid).float().flatten(1) for i in chosen]
            out[start : start + batch.shape[0]] = torch.cat(pooled, 1).cpu().numpy()
            if progress is not None:
                progress(start + batch.shape[0], images.shape[0])
    return out


def pixel_features(images: torch.Tensor) -> np.ndarray:
    """The raw-pixel baseline: each image's pixels in [-1, 1], flattened, as float32 (N, C*S*S)."""
    return to_input(images).flatten(1).numpy()


def weights_digest(module: nn.Module) -> str:
    """A hash of a module's parameters: two modules with equal weights share cached features.

    Buffers (batchnorm running statistics) are left out: the probe recomputes them from the data.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(module.named_parameters()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(*parts: object) -> str:
    text = json.dumps([RECIPE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_path(key: str) -> Path:
    return cache_dir() / "probe" / f"{key}.npy"


def load_cached(key: str) -> np.ndarray | None:
    """A cached float32 feature array, or None when absent or unreadable."""
    try:
        return np.load(cache_path(key), allow_pickle=False)
    except (OSError, ValueError):
        return None


def store_cached(key: str, features: np.ndarray) -> None:
    """Save features atomically; a failure (read-only home, full disk) only costs the next run a re-extraction."""
    path = cache_path(key)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, features, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
