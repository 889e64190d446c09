"""Perceptual-hash baselines for the autoencoder hash: dHash and pHash, 64 bits each, on grey 32x32 crops.

dHash (Krawetz): shrink to 9x8 grey, one bit per horizontally adjacent pair (is the left pixel brighter?).
pHash: 32x32 grey, 2-D DCT, one bit per coefficient of the lowest 8x8 frequencies (above their median?).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)


def _grey(images: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    x = torch.as_tensor(np.asarray(images)).float()
    if x.shape[1] == 3:
        x = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x[:, 0].numpy()


def dhash(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 images (N, C, H, W) -> packed 64-bit difference hashes (N, 8) uint8."""
    grey = _grey(images, (8, 9))
    return np.packbits((grey[:, :, 1:] > grey[:, :, :-1]).reshape(len(grey), 64), axis=1)


def phash(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 images (N, C, H, W) -> packed 64-bit DCT hashes (N, 8) uint8."""
    from scipy.fft import dctn  # here, not at the top: importing scipy.fft costs every dcgan command half a second

    grey = _grey(images, (32, 32))
    low = dctn(grey, type=2, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(grey), 64)
    median = np.median(low[:, 1:], axis=1, keepdims=True)  # the DC term (overall brightness) left out
    return np.packbits(low > median, axis=1)
