"""Bring images of any size and mode to the training shape: square, `size` pixels, 1 or 3 channels, uint8."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def pil_to_array(image: Any, size: int, channels: int) -> np.ndarray:
    """Resize the shorter side to `size` (antialiased), centre-crop a square, convert mode -> (C, size, size)."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    w, h = image.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    array = np.array(image, dtype=np.uint8)  # a copy: Pillow's own buffer is read-only, which torch warns about
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """(N, C, H, W) uint8 with C in {1, 3} -> the requested channel count (ITU-R 601 luma for RGB -> grey)."""
    have = images.shape[1]
    if have == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=1)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(1, 3, 1, 1)
    return np.clip((images.astype(np.float32) * weights).sum(1, keepdims=True) + 0.5, 0, 255).astype(np.uint8)


def resize_batch(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """Square (N, C, H, W) uint8 -> (N, C, size, size), antialiased bilinear; a no-op at the same size."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if images.shape[-1] != images.shape[-2]:
        raise ValueError("resize_batch takes square images; crop first")
    out = np.empty((images.shape[0], images.shape[1], size, size), dtype=np.uint8)
    for start in range(0, images.shape[0], chunk):
        part = torch.from_numpy(np.array(images[start : start + chunk])).float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = part.round().clamp(0, 255).to(torch.uint8).numpy()
    return out
