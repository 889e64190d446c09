"""What every feature extractor is: uint8 images in, (features, logits) out, and a fingerprint of its weights.

Its own module so that the extractors (`dcgan.metrics.extractors`, `dcgan.metrics.inception`) build on it
without importing each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dcgan.errors import ConfigError
from dcgan.plan.inference import applied, in_layout, inference_plan
from dcgan.plan.plans import ExecutionPlan


class Features(NamedTuple):
    features: torch.Tensor
    logits: torch.Tensor | None


class FeatureExtractor(nn.Module):
    """Base class: uint8 images -> (features, logits). Subclasses define `embed(x)` on prepared float input.

    Attributes:
        name: how `--features` and the reference cache call it (e.g. `lenet-fashion-mnist`).
        input_size, in_channels: what the network expects; `prepare` converts to this.
        feature_dim, num_classes: the sizes of its two outputs.
        fingerprint: identifies the weights (a hash of the file), so cached reference features follow them.
        meta: what was saved with it (test accuracy, training data, ...), as strings.
    """

    arch: str = "base"
    #: Largest batch one forward pass takes, whatever the caller asks (Inception's 299px activations are large).
    max_batch: int = 1024
    input_size: int
    in_channels: int
    feature_dim: int
    num_classes: int

    def __init__(self) -> None:
        super().__init__()
        self.name = type(self).__name__.lower()
        self.fingerprint = "untrained"
        self.meta: dict[str, str] = {}

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, S, S) -> float in [-1, 1] with the extractor's channels; resized by `resize`."""
        x = images.to(self.device).float() / 127.5 - 1
        if x.shape[1] != self.in_channels:
            if self.in_channels == 3:
                x = x.expand(-1, 3, -1, -1)
            else:  # ITU-R 601 luma, as PIL's convert("L")
                weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
                x = (x * weights).sum(dim=1, keepdim=True)
        return self.resize(x)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.input_size and x.shape[-2] == self.input_size:
            return x
        return F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images -> (features (N, feature_dim), logits (N, num_classes))."""
        return self.embed(self.prepare(images))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def plan(self, images: torch.Tensor) -> ExecutionPlan:
        """How `extract` runs on this machine: the layout (and convolution path) measured fastest on a few of
        `images` (`dcgan.plan.inference`), always in fp32: metrics are compared across machines and runs, and the
        reference features cached, so bf16's rounding (3 significant digits, where FID's parity test holds 1e-5)
        must not enter them wherever bf16 happens to be faster."""
        work = f"{self.name} features"
        return inference_plan(self, [images], work=work, call=lambda m, x: m(x)[0], forced={"precision": "fp32"}).plan

    @torch.no_grad()
    def extract(self, images: torch.Tensor, *, batch_size: int = 256, logits: bool = False) -> Features:
        """Features (and optionally logits) of uint8 images, in batches, in eval mode, under `plan`; returned on
        the CPU."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            got = f"{images.dtype} {tuple(images.shape)}"
            raise ConfigError(f"{self.name} expects uint8 images (N, 1 or 3, H, W), got {got}.")
        was_training = self.training
        self.eval()
        feats, outs = [], []
        plan = self.plan(images) if len(images) else None
        with applied(self, plan):
            for part in images.split(min(batch_size, self.max_batch)):
                f, y = self(in_layout(part, plan) if plan is not None else part)
                feats.append(f.float().cpu())
                if logits:
                    outs.append(y.float().cpu())
        self.train(was_training)
        empty = torch.empty(0, self.feature_dim)
        return Features(torch.cat(feats) if feats else empty, torch.cat(outs) if logits and outs else None)


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
