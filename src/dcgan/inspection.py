"""Looking inside a trained DCGAN (paper sections 6.2 and 6.3.1): dropping G's filters ("forgetting to draw",
Figure 6), finding the filters that draw an object, and guided backpropagation of D's features (Figure 5).

Layers are addressed by their index in `G.blocks` / `D.blocks`; a layer's filters are its output channels.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dcgan.errors import ConfigError, DataError
from dcgan.models import Discriminator, Generator
from dcgan.sample import generate

# ----------------------------------------------------------------------------------------------- dropping filters


def num_filters(model: Generator | Discriminator, layer: int) -> int:
    """Output channels of `model.blocks[layer]`; raises ConfigError for a layer that is not a hidden layer."""
    last = len(model.blocks) - (2 if isinstance(model, Generator) else 1)  # G's last block draws the image
    if not 0 <= layer <= last:
        raise ConfigError(f"--layer must be from 0 to {last} for this model, got {layer}.")
    return out_channels(model.blocks[layer])


def out_channels(block: nn.Module) -> int:
    """The channel count a block's (transposed) convolution produces."""
    conv = next(m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    return int(conv.out_channels)


def parse_filters(text: str, count: int) -> list[int]:
    """Filter indices from text like "3,7,10-12" or "all"; each must be below `count`.

    Raises:
        ConfigError: an item is not a number or range, or is out of range.
    """
    if text.strip().lower() == "all":
        return list(range(count))
    chosen: set[int] = set()
    for item in (part.strip() for part in text.split(",")):
        lo, _, hi = item.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ConfigError(f"Filter item {item!r} is not a number or a range like 10-12.")
        start, stop = int(lo), int(hi or lo)
        if start > stop or stop >= count:
            raise ConfigError(f"Filter item {item!r} is out of range: this layer has filters 0 to {count - 1}.")
        chosen.update(range(start, stop + 1))
    return sorted(chosen)


def block_output(generator: Generator, layer: int) -> nn.Module:
    """The module whose output is `G.blocks[layer]`'s: the block's last layer (its activation). A hook goes there
    rather than on the block, because a G with class-conditional batchnorm runs its blocks layer by layer (the
    norm takes the labels too), so hooks on the block itself would never fire."""
    return list(generator.blocks[layer].children())[-1]


@contextmanager
def filters_dropped(generator: Generator, layer: int, filters: Sequence[int]) -> Iterator[Generator]:
    """Inside the block, `generator` runs with the given filters of `G.blocks[layer]` zeroed at every position."""
    count = num_filters(generator, layer)
    if any(not 0 <= f < count for f in filters):
        raise ConfigError(f"Filters must be from 0 to {count - 1} for layer {layer}.")
    device = next(generator.parameters()).device
    keep = torch.ones(1, count, 1, 1, device=device)
    keep[:, list(filters)] = 0
    handle = block_output(generator, layer).register_forward_hook(
        lambda module, inputs, output: output * keep.to(output.dtype)
    )
    try:
        yield generator
    finally:
        handle.remove()


def drop_filters(generator: Generator, z: torch.Tensor, layer: int, filters: Sequence[int]) -> torch.Tensor:
    """G(z) with the given filters of layer `layer` zeroed at every spatial position (images in [-1, 1])."""
    with filters_dropped(generator, layer, filters):
        return generate(generator, z)


def layer_activations(generator: Generator, z: torch.Tensor, layer: int) -> torch.Tensor:
    """The output of `G.blocks[layer]` for each z: (n, filters, h, w), on the CPU."""
    num_filters(generator, layer)
    captured: list[torch.Tensor] = []
    handle = block_output(generator, layer).register_forward_hook(
        lambda m, i, out: captured.append(out.detach().float().cpu())
    )
    try:
        generate(generator, z)
    finally:
        handle.remove()
    return torch.cat(captured)


# ----------------------------------------------------------------------------------------------- finding filters


def read_boxes(path: str | Path, image_size: int) -> tuple[int | None, dict[int, np.ndarray]]:
    """A boxes file -> (its seed or None, {sheet number: (size, size) bool mask of the marked pixels}).

    The file is JSON: `{"seed": 0, "boxes": {"12": [[x0, y0, x1, y1], ...]}, "masks": {"40": "mask40.png"}}`.
    Boxes are in pixels of the generated image (x right, y down, x1 and y1 exclusive); a mask is an image file
    (relative to the JSON file) whose bright pixels mark the object. Either key may be left out.

    Raises:
        DataError: the file is missing, not JSON, or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"No such boxes file: {path}.")
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}).") from exc
    if not isinstance(spec, dict) or not (spec.get("boxes") or spec.get("masks")):
        raise DataError(f'{path} must be a JSON object with "boxes" (and/or "masks") keyed by sheet number.')
    seed = spec.get("seed")
    if seed is not None and (not isinstance(seed, int) or seed < 0):
        raise DataError(f'{path}: "seed" must be an integer of 0 or more.')
    masks: dict[int, np.ndarray] = {}
    for key, boxes in (spec.get("boxes") or {}).items():
        mask = masks.setdefault(_sheet_number(key, path), np.zeros((image_size, image_size), dtype=bool))
        if not isinstance(boxes, list):
            raise DataError(f"{path}: the boxes of sample {key} must be a list of [x0, y0, x1, y1].")
        for box in boxes:
            ok = isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
            if not ok or not (0 <= box[0] < box[2] <= image_size and 0 <= box[1] < box[3] <= image_size):
                raise DataError(f"{path}: box {box} of sample {key} is not [x0, y0, x1, y1] inside 0..{image_size}.")
            x0, y0, x1, y1 = (round(v) for v in box)
            mask[y0:y1, x0:x1] = True
    for key, name in (spec.get("masks") or {}).items():
        number = _sheet_number(key, path)
        masks[number] = masks.get(number, np.zeros((image_size, image_size), dtype=bool)) | _read_mask(
            path.parent / str(name), image_size
        )
    return seed, masks


def _sheet_number(key: str, path: Path) -> int:
    if not str(key).isdigit():
        raise DataError(f"{path}: {key!r} is not a sheet number.")
    return int(key)


def _read_mask(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L").resize((size, size), Image.Resampling.NEAREST)) > 127
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"Mask {path} cannot be read as an image ({type(exc).__name__}).") from exc


@dataclass
class FilterSearch:
    """The filters whose activation predicts "inside the boxes", strongest first, and how well the fit did."""

    layer: int
    filters: list[int]  # positive weight, sorted by weight, largest first
    weights: np.ndarray  # (filters,) logistic-regression weight of every filter (standardised activations)
    accuracy: float  # balanced accuracy of the fit on its own positions
    positives: int  # activation positions inside the boxes
    negatives: int


def find_filters(generator: Generator, z: torch.Tensor, masks: torch.Tensor, layer: int, seed: int = 0) -> FilterSearch:
    """Fit a logistic regression on layer `layer`'s activations: positions inside the masks vs outside.

    Args:
        generator: the trained G.
        z: (n, nz) the latents of the marked samples.
        masks: (n, size, size) bool, True on the object; a position of the activation map counts as inside when
            the pixel at its centre does.
        layer: index into `G.blocks`.
        seed: for the solver.

    Returns:
        The filters with positive weight (the paper's "window" filters), strongest first.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    acts = layer_activations(generator, z, layer)  # (n, c, h, w)
    _, c, h, w = acts.shape
    size = masks.shape[-1]
    rows = ((torch.arange(h) + 0.5) * size / h).long()
    cols = ((torch.arange(w) + 0.5) * size / w).long()
    labels = masks.bool()[:, rows][:, :, cols].reshape(-1).numpy()  # (n * h * w,)
    if labels.all() or not labels.any():
        raise ConfigError("The boxes must cover part, but not all, of the marked samples at this layer's resolution.")
    x = acts.permute(0, 2, 3, 1).reshape(-1, c).numpy()
    x = StandardScaler().fit_transform(x)
    model = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed).fit(x, labels)
    weights = model.coef_[0]
    order = [int(i) for i in np.argsort(-weights) if weights[i] > 0]
    accuracy = float(balanced_accuracy_score(labels, model.predict(x)))
    return FilterSearch(layer, order, weights, accuracy, int(labels.sum()), int((~labels).sum()))


# ----------------------------------------------------------------------------------------------- guided backprop


class _GuidedLeakyReLU(torch.autograd.Function):
    """Forward: LeakyReLU. Backward: only positive gradients, only where the forward input was positive."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return F.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0).to(grad.dtype), None


class GuidedActivation(nn.Module):
    """Stands in for a ReLU (slope 0) or LeakyReLU in a guided-backprop copy of a network."""

    def __init__(self, slope: float = 0.0) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GuidedLeakyReLU.apply(x, self.slope)  # type: ignore[no-any-return]


def guided_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every ReLU and LeakyReLU replaced by its guided version."""
    clone = copy.deepcopy(model).eval()
    for module in list(clone.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.LeakyReLU):
                setattr(module, name, GuidedActivation(child.negative_slope))
            elif isinstance(child, nn.ReLU):
                setattr(module, name, GuidedActivation(0.0))
    return clone


def guided_gradient(
    model: nn.Module, x: torch.Tensor, objective: Callable[[nn.Module, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """d objective / d x through a guided copy of `model` (Springenberg et al., 2015); objective gives (n,)."""
    guided = guided_copy(model).requires_grad_(False)
    x = x.detach().clone().requires_grad_(True)
    objective(guided, x).sum().backward()
    assert x.grad is not None
    return x.grad.detach()


def feature_strength(discriminator: Discriminator, images: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """Each feature's strongest response per image: spatial max of `D.blocks[layer]`'s output, (n, channels)."""
    with torch.no_grad():
        return discriminator.features(images)[layer].flatten(2).amax(2).float()


@dataclass
class GuidedBackprop:
    """For each chosen feature: its top-activating images and their guided-backprop gradients."""

    features: list[int]
    indices: torch.Tensor  # (features, top) index into the candidate images
    strengths: torch.Tensor  # (features, top)
    gradients: torch.Tensor  # (features, top, C, S, S)


def guided_backprop(
    discriminator: Discriminator, images: torch.Tensor, features: Sequence[int], top: int = 4, layer: int = -1
) -> GuidedBackprop:
    """For each feature (channel of `D.blocks[layer]`, the last conv layer by default), the `top` images that
    excite it most and the guided-backprop gradient of its strongest response with respect to each image."""
    channels = out_channels(discriminator.blocks[layer])
    if any(not 0 <= f < channels for f in features):
        raise ConfigError(f"Features must be from 0 to {channels - 1} for this discriminator layer.")
    if not 1 <= top <= images.shape[0]:
        raise ConfigError(f"--top must be from 1 to the number of candidate samples ({images.shape[0]}).")
    discriminator.eval()
    strength = feature_strength(discriminator, images, layer)
    values, indices = strength[:, list(features)].topk(top, dim=0)  # (top, features)
    grads = []
    for j, feature in enumerate(features):
        chosen = images[indices[:, j]]

        def objective(model: nn.Module, x: torch.Tensor, feature: int = feature) -> torch.Tensor:
            return model.features(x)[layer][:, feature].flatten(1).amax(1)  # type: ignore[operator]

        grads.append(guided_gradient(discriminator, chosen, objective))
    return GuidedBackprop(list(features), indices.T, values.T, torch.stack(grads))


def gradient_images(gradients: torch.Tensor) -> torch.Tensor:
    """Gradients -> viewable images in [-1, 1]: each centred and scaled by its own spread (0.2 per std)."""
    flat = gradients.flatten(1)
    centred = flat - flat.mean(1, keepdim=True)
    scaled = centred / (centred.std(1, keepdim=True) + 1e-12) * 0.2
    return scaled.clamp(-1, 1).reshape(gradients.shape)
