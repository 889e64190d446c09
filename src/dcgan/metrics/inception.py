"""The FID Inception network: Inception-v3 as in TensorFlow's 2015-12-05 graph, with its standard weights.

FID, KID and IS figures are only comparable with published ones when they come from this exact network: the
`pt_inception-2015-12-05-6726825d.pth` weights (the TF graph ported to PyTorch by pytorch-fid) and TF's
pooling quirks. The network is torchvision's `Inception3` layout (1,008 classes, no auxiliary head) with the
pooling branch of each mixed block patched to do what TF did. Input: bilinear resize to 299x299, values in
[-1, 1]; features: the 2,048 pooled activations; logits: the final layer without its bias (as in the
original Inception Score code).

The weights are read with `torch.load(weights_only=True)` from a path you give, else the torch hub cache
(`~/.cache/torch/hub/checkpoints/`, or `$TORCH_HOME/hub/checkpoints/`), else downloaded when asked.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.models import inception as tv

from dcgan.errors import CheckpointError
from dcgan.metrics.feature_extractor import FeatureExtractor, file_fingerprint

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
#: torch hub's convention: the file name carries the first hex digits of its SHA-256.
WEIGHTS_SHA256_PREFIX = "6726825d"


class _TFPoolBranch:
    """Mixin for torchvision's Inception blocks: TF's average pooling ignores the zero padding, and the last block
    max-pools; the pool branch is recomputed that way (a 1x1 conv, cheap next to the rest of the block)."""

    max_pool = False

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = super()._forward(x)  # type: ignore[misc]
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        outputs[-1] = self.branch_pool(pooled)  # type: ignore[attr-defined]
        return outputs


class _BlockA(_TFPoolBranch, tv.InceptionA):
    pass


class _BlockC(_TFPoolBranch, tv.InceptionC):
    pass


class _BlockE(_TFPoolBranch, tv.InceptionE):
    pass


class _BlockEMax(_TFPoolBranch, tv.InceptionE):
    max_pool = True


def fid_inception_v3() -> tv.Inception3:
    """The FID Inception network with random weights, in the state-dict layout of the standard weights file."""
    net = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = _BlockA(192, pool_features=32)
    net.Mixed_5c = _BlockA(256, pool_features=64)
    net.Mixed_5d = _BlockA(288, pool_features=64)
    net.Mixed_6b = _BlockC(768, channels_7x7=128)
    net.Mixed_6c = _BlockC(768, channels_7x7=160)
    net.Mixed_6d = _BlockC(768, channels_7x7=160)
    net.Mixed_6e = _BlockC(768, channels_7x7=192)
    net.Mixed_7b = _BlockE(1280)
    net.Mixed_7c = _BlockEMax(2048)
    return net


class InceptionExtractor(FeatureExtractor):
    """The FID Inception as a `FeatureExtractor`: 2,048 pool features and 1,008 bias-free logits."""

    arch = "inception"
    max_batch = 64
    input_size, in_channels, feature_dim, num_classes = 299, 3, 2048, 1008

    def __init__(self, net: tv.Inception3 | None = None) -> None:
        super().__init__()
        self.name = "inception"
        self.net = net if net is not None else fid_inception_v3()

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        # pytorch-fid's resize: plain bilinear, no antialiasing (DCGAN images are upsampled anyway).
        return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        for layer in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1,
                      n.Conv2d_4a_3x3, n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b,
                      n.Mixed_6c, n.Mixed_6d, n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c, n.avgpool):  # fmt: skip
            x = layer(x)
        features = x.flatten(1)
        return features, features @ n.fc.weight.T


def hub_weights_path() -> Path:
    """Where torch hub keeps the weights: `<torch hub dir>/checkpoints/pt_inception-2015-12-05-6726825d.pth`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def _missing_message(path: Path) -> str:
    return (
        f"The FID Inception weights are not at {path}. Put {WEIGHTS_FILE} there (from {WEIGHTS_URL}), "
        "pass --features /path/to/that.pth, add --download when online, "
        "or use an offline domain extractor (dcgan extractor fit)."
    )


def _download(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(WEIGHTS_URL, str(path), hash_prefix=WEIGHTS_SHA256_PREFIX, progress=True)
    except Exception as exc:  # URLError, timeouts, hash mismatch: all mean "no weights"
        reason = f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"Downloading {WEIGHTS_URL} failed ({reason}); are you offline?") from exc


def load_inception(
    path: str | Path | None = None, *, device: str | torch.device = "cpu", download: bool = False
) -> InceptionExtractor:
    """The FID Inception extractor with weights from `path`, else the torch hub cache (downloaded if asked).

    Raises:
        CheckpointError: the file is missing (the message says where to put it), unreadable, holds pickled
            objects other than tensors, or does not fit the network.
    """
    file = Path(path).expanduser() if path is not None else hub_weights_path()
    if not file.is_file():
        if path is None and download:
            _download(file)
        else:
            raise CheckpointError(_missing_message(file))
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"Refusing to load {file}: it holds Python objects other than tensors.") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{file} is truncated or corrupt ({type(exc).__name__}).") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} is not an Inception state dict.")
    net = fid_inception_v3()
    # Files saved before BatchNorm counted its batches lack `num_batches_tracked`; nothing else may be missing.
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise CheckpointError(f"{file} does not fit the FID Inception network (tensor shapes differ).") from exc
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{file} does not fit the FID Inception network "
            f"({len(missing)} missing and {len(result.unexpected_keys)} unexpected tensors)."
        )
    extractor = InceptionExtractor(net)
    digest = file_fingerprint(file)
    extractor.fingerprint = digest[:16]
    standard = digest.startswith(WEIGHTS_SHA256_PREFIX)
    extractor.meta = {"file": str(file), "standard_weights": "yes" if standard else "no"}
    if not standard:
        warnings.warn(
            f"{file} is not the standard FID Inception file (its SHA-256 does not start with "
            f"{WEIGHTS_SHA256_PREFIX}); its figures are not comparable with published ones.",
            stacklevel=2,
        )
    return extractor.to(device).eval()
