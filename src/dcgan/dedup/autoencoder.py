"""The paper's semantic hash (section 4.1.1): a 3072-128-3072 denoising, dropout-regularised ReLU autoencoder.

It is fit on 32x32 downsampled centre crops. Its code layer, binarised by thresholding the ReLU activations
(a unit is on when it fires), is a 128-bit hash: images whose hashes collide are near-duplicates, found in
linear time with a dictionary. Saved as safetensors (no pickle), its shape in the file's metadata.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dcgan.errors import CheckpointError
from dcgan.plan.inference import inference_plan, running
from dcgan.plan.plans import ExecutionPlan

FORMAT = "dcgan-dedup-autoencoder/1"
CROP = 32  # the paper's 32x32 centre crops: 3 x 32 x 32 = 3072 inputs for colour images


class HashAutoencoder(nn.Module):
    """x (N, C, 32, 32) uint8 -> 128 ReLU code units -> reconstruction; `hash` binarises the code.

    Inputs are scaled to [-1, 1], centred on the training set's mean image and, with `normalize`, on each
    image's own mean and contrast, so a slightly brighter or flatter copy lands on the same code.
    Training corrupts the input with Gaussian noise (denoising) and drops code units (dropout).
    """

    mean: torch.Tensor

    def __init__(
        self,
        channels: int = 3,
        size: int = CROP,
        code_bits: int = 128,
        *,
        dropout: float = 0.5,
        noise: float = 0.2,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if code_bits % 8:
            raise ValueError("code_bits must be a multiple of 8 (codes are packed into bytes)")
        self.channels, self.size, self.code_bits = channels, size, code_bits
        self.noise, self.normalize = noise, normalize
        n = channels * size * size
        self.encoder = nn.Linear(n, code_bits)
        self.decoder = nn.Linear(code_bits, n)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mean", torch.zeros(n))

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, S, S) -> the float vectors (N, C*S*S) the encoder sees."""
        return self.standardize(images.float() / 127.5 - 1)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (N, C, S, S) -> vectors (N, C*S*S), per image normalised, minus the data mean."""
        x = x.reshape(x.shape[0], -1)
        if self.normalize:
            x = x - x.mean(1, keepdim=True)
            x = x / (x.std(1, keepdim=True) + 0.05)  # + eps: a flat image stays flat instead of exploding
        return x - self.mean

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The ReLU code layer (N, code_bits) for input vectors from `inputs`."""
        return F.relu(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct input vectors; in training mode from a noisy copy, through dropout on the code."""
        if self.training and self.noise > 0:
            x = x + self.noise * torch.randn_like(x)
        return self.decoder(self.dropout(self.encode(x)))

    @torch.no_grad()
    def hash(self, images: torch.Tensor, plan: ExecutionPlan | None = None) -> np.ndarray:
        """uint8 images (N, C, S, S) -> packed hashes (N, code_bits // 8) uint8: bit k is set when unit k fires.

        `plan` (`hash_plan`'s) sets the precision; None: fp32.
        """
        device = self.mean.device
        with running(plan, device) if plan is not None else contextlib.nullcontext():
            code = self.encode(self.inputs(images.to(device)))
        return np.packbits((code > 0).cpu().numpy(), axis=1)

    def hash_plan(self) -> ExecutionPlan:
        """The precision hashing is fastest in on this machine, timed on a few random crops (`dcgan.plan.inference`;
        the code layer is a matrix product: no layout or convolution path to choose). fp32 unless bf16 is measured
        faster; in bf16 a unit whose input rounds across zero flips its bit, which `--radius` (4 bits by default)
        absorbs."""
        crops = torch.randint(0, 256, (8, self.channels, self.size, self.size), dtype=torch.uint8,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
        call = lambda m, x: m.encode(m.inputs(x))
        return inference_plan(self, [crops.to(self.mean.device)], work="dedup hash", call=call).plan


def train_autoencoder(
    images: np.ndarray | torch.Tensor,
    *,
    steps: int = 3000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    **model_options: float | bool | int,
) -> HashAutoencoder:
    """Fit a `HashAutoencoder` to uint8 images (N, C, 32, 32) with Adam on the denoising reconstruction loss.

    Args:
        images: the training images (a random sample of the data set is enough; the paper's crops are 32x32).
        steps: optimiser steps (each a batch of `batch_size` images drawn with replacement).
        batch_size: images per step.
        lr: Adam's learning rate.
        seed: fixes the initial weights and the batches.
        device: "cpu" or "cuda".
        progress: show a progress bar.
        **model_options: passed to `HashAutoencoder` (code_bits, dropout, noise, normalize).

    Returns:
        The trained autoencoder, in eval mode.
    """
    from tqdm import tqdm

    data = torch.as_tensor(np.asarray(images))
    if data.ndim != 4 or data.shape[0] == 0:
        raise ValueError("train_autoencoder needs a non-empty (N, C, S, S) uint8 array")
    torch.manual_seed(seed)
    model = HashAutoencoder(int(data.shape[1]), int(data.shape[2]), **model_options).to(device)  # type: ignore[arg-type]
    with torch.no_grad():
        model.mean.zero_()
        total = torch.zeros_like(model.mean)
        for part in data.split(4096):
            total += model.inputs(part.to(device)).sum(0)
        model.mean.copy_(total / len(data))
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc="training the hash autoencoder", leave=False, disable=not progress):
        batch = data[torch.randint(0, data.shape[0], (batch_size,), generator=g)].to(device).float() / 127.5 - 1
        x = model.standardize(batch)
        loss = F.mse_loss(model(x), x)  # model(x) reconstructs from a noisy x in training mode
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def save_autoencoder(model: HashAutoencoder, path: str | Path) -> Path:
    """Write the weights and shape as safetensors (loadable without unpickling anything)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "channels": str(model.channels),
        "size": str(model.size),
        "code_bits": str(model.code_bits),
        "normalize": str(int(model.normalize)),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_autoencoder(path: str | Path, device: str = "cpu") -> HashAutoencoder:
    """Read an autoencoder written by `save_autoencoder`, in eval mode.

    Raises:
        CheckpointError: the file is missing, not safetensors, or not a dedup autoencoder.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"--model {path}: no such file.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"--model {path} is not a safetensors file ({exc}).") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"--model {path} is not a dedup autoencoder (written by `dcgan dedup`).")
    try:
        shape = int(meta["channels"]), int(meta["size"]), int(meta["code_bits"])
        model = HashAutoencoder(*shape, normalize=meta.get("normalize", "1") == "1").to(device)
        model.load_state_dict(tensors)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"--model {path} is damaged ({type(exc).__name__}).") from exc
    return model.eval()


def bit_entropy(codes: np.ndarray) -> float:
    """Bits of information a set of packed hashes carries, summed over units (each unit's on/off entropy)."""
    p = np.unpackbits(codes, axis=1).mean(0)
    p = p[(p > 0) & (p < 1)]
    return float(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)).sum()) if len(p) else 0.0
