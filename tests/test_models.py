"""The paper's architecture guidelines (section 3), checked on the built modules at every supported size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from dcgan.checkpoint import list_checkpoints, load_discriminator
from dcgan.data import ImageData
from dcgan.models import Discriminator, Generator, num_stages, sample_prior
from dcgan.train import train
from tests.conftest import shapes_data, tiny_config

SIZES = [16, 32, 64, 128, 256]


def _modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not isinstance(m, (nn.Sequential,)) and m is not model]


def _kinds(block: nn.Module) -> list[type]:
    """Each layer's torch layer type (dcgan's GEMM-path convolutions are subclasses of torch's)."""
    kinds = [nn.ConvTranspose2d, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.Tanh]
    return [next(k for k in kinds if isinstance(m, k)) for m in block]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_shape_and_guidelines(size: int, channels: int) -> None:
    g = Generator(size, channels, nz=100, ngf=8)
    z = sample_prior(2, 100, "uniform")
    out = g(z)
    assert out.shape == (2, channels, size, size)
    assert out.min() >= -1 and out.max() <= 1
    mods = _modules(g)
    convs = [m for m in mods if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(isinstance(m, nn.ConvTranspose2d) for m in convs), "G uses fractionally-strided convolutions only"
    assert len(convs) == num_stages(size) + 1, "the number of layers follows from the size"
    assert not any(isinstance(m, (nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) for m in mods)
    assert _kinds(g.blocks[-1]) == [nn.ConvTranspose2d, nn.Tanh], "no batchnorm on G's output; Tanh"
    for block in g.blocks[:-1]:
        assert _kinds(block) == [nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU]
    assert all(c.stride == (2, 2) for c in convs[1:])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_discriminator_shape_and_guidelines(size: int, channels: int) -> None:
    d = Discriminator(size, channels, ndf=8)
    logits = d(torch.randn(3, channels, size, size))
    assert logits.shape == (3,), "D returns one logit per image"
    mods = _modules(d)
    assert not any(isinstance(m, (nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) for m in mods)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in mods)
    assert _kinds(d.blocks[0]) == [nn.Conv2d, nn.LeakyReLU], "no batchnorm on D's input layer"
    for block in d.blocks[1:]:
        assert _kinds(block) == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU]
    assert all(m.negative_slope == 0.2 for m in mods if isinstance(m, nn.LeakyReLU))
    assert all(b[0].stride == (2, 2) for b in d.blocks), "downsampling by strided convolution, not pooling"
    assert [f.shape[-1] for f in d.features(torch.randn(1, channels, size, size))][-1] == 4


def test_paper_widths_at_64() -> None:
    g = Generator(64, 3, nz=100, ngf=128)
    widths = [b[0].out_channels for b in g.blocks]
    assert widths == [1024, 512, 256, 128, 3], "the paper's LSUN generator: 1024 channels at 4x4"


def test_weights_follow_the_paper_init() -> None:
    torch.manual_seed(0)
    g, d = Generator(64, 3, ngf=64), Discriminator(64, 3, ndf=64)
    for model in (g, d):
        w = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
        assert abs(w.mean().item()) < 1e-3
        assert w.std().item() == pytest.approx(0.02, rel=0.02)


def test_probability_is_sigmoid_of_logits(tmp_path: Path) -> None:
    """D's output is a logit, not a probability; the probability a run reports as D(x) is its sigmoid."""
    torch.manual_seed(0)
    d = Discriminator(16, 1, ndf=8).eval()
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    logits = d(torch.randn(64, 1, 16, 16))
    assert (logits < 0).any(), "a probability would never be negative"

    # A one-step run on copies of one image: every real batch is the same whatever the data order, so the D(x)
    # it logs must be the sigmoid of the step-0 discriminator's logits on that batch (in train mode, as trained).
    image = shapes_data(n=1).images
    data = ImageData(image.expand(64, -1, -1, -1).clone(), None, "one image", "train", "synthetic")
    run = tmp_path / "run"
    train(tiny_config(steps=1, log_every=1), run, data=data, progress=False)
    (logged,) = [r["d_x"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "d_x" in r]
    d0 = load_discriminator(list_checkpoints(run)[0]).train()
    with torch.no_grad():
        probability = float(torch.sigmoid(d0(image.float() / 127.5 - 1)))
    assert logged == pytest.approx(probability, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("prior", ["uniform", "normal"])
def test_priors(prior: str) -> None:
    z = sample_prior(10000, 100, prior, torch.Generator().manual_seed(0))
    if prior == "uniform":
        assert z.min() >= -1 and z.max() <= 1 and z.std().item() == pytest.approx(3**-0.5, rel=0.02)
    else:
        assert z.std().item() == pytest.approx(1.0, rel=0.02)
