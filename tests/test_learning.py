"""Training learns: a fast check on synthetic images that always runs, and a slow one on real Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcgan.checkpoint import load_generator
from dcgan.config import build_config
from dcgan.data import DEBIAN_FASHION_MNIST, ImageData, load_images
from dcgan.metrics import evaluate_images, fit_extractor
from dcgan.models import Generator
from dcgan.sample import generate, latents, to_uint8
from dcgan.train import train


def quadrant_squares(n: int, seed: int = 0) -> ImageData:
    """n 16x16 images, each dark with one bright 8x8 square filling one of the four quadrants at random."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 1, 16, 16), 20, dtype=torch.uint8)
    quadrant = torch.randint(0, 4, (n,), generator=g)
    for q in range(4):
        y, x = divmod(q, 2)
        images[quadrant == q, :, 8 * y : 8 * y + 8, 8 * x : 8 * x + 8] = 230
    return ImageData(images, None, "quadrants", "train", "synthetic")


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The energy distance between two samples of vectors: zero exactly when their distributions agree."""
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


def test_a_short_run_moves_the_samples_towards_the_data(tmp_path: Path) -> None:
    """100 steps on synthetic squares bring G's mean image and its distribution over where the square is far
    closer to the data's than an untrained G's. With the sign of either loss flipped (G or D trained towards
    the wrong label) the samples drift away instead, and this fails."""
    data = quadrant_squares(3200)  # 100 steps of 32 are one epoch: no extra grids or checkpoints mid-run
    config = build_config(
        None, data="quadrants", image_size=16, channels=1, nz=8, ngf=16, ndf=16, batch_size=32, steps=100,
        log_every=50, sample_every=100, checkpoint_every=100, precision="fp32", seed=0,
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as fast for a model this small, and it does not fight other jobs for the cores
    try:
        train(config, tmp_path / "run", data=data, progress=False)
    finally:
        torch.set_num_threads(threads)

    real = data.images[:512].float() / 127.5 - 1
    z = latents(512, config.nz, config.prior, seed=1)
    torch.manual_seed(0)
    samples = {
        "untrained": generate(Generator(16, 1, config.nz, config.ngf).eval(), z),
        "trained": generate(load_generator(tmp_path / "run"), z),
    }
    # What each image holds per quadrant: one quadrant bright and three dark in the data.
    quadrants = lambda x: F.avg_pool2d(x, 8).flatten(1)
    mean_error = {k: float((x.mean(0) - real.mean(0)).abs().mean()) for k, x in samples.items()}
    where_error = {k: energy_distance(quadrants(x), quadrants(real)) for k, x in samples.items()}
    # Measured at seeds 0-2: trained 0.08-0.12 vs untrained 0.43 (mean), 0.85-0.97 vs 1.59 (quadrants); with
    # either loss's sign flipped both stay at 0.96 or more of the untrained G's.
    assert mean_error["trained"] < 0.5 * mean_error["untrained"], mean_error
    assert where_error["trained"] < 0.75 * where_error["untrained"], where_error


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.exists(), reason="apt-get install dataset-fashion-mnist")
def test_short_fashion_mnist_run_beats_an_untrained_generator(tmp_path: Path) -> None:
    train_set = load_images("fashion-mnist", image_size=32)
    test_set = load_images("fashion-mnist", image_size=32, split="test")
    subset = lambda d, n: ImageData(d.images[:n], d.labels[:n] if d.labels is not None else None, d.name, d.split, "")

    # The test's own judge: a LeNet trained briefly on real labelled images.
    torch.manual_seed(0)
    extractor, meta = fit_extractor(subset(train_set, 12000), subset(test_set, 2000), epochs=1)
    assert float(meta["test_accuracy"]) > 0.6, meta  # far above chance (0.1): a judge worth trusting

    config = build_config(
        None, data="fashion-mnist", image_size=32, ngf=32, ndf=32, batch_size=64, steps=300, seed=0,
        log_every=50, sample_every=300, checkpoint_every=300,
    )  # fmt: skip
    train(config, tmp_path / "run", data=train_set, progress=False)

    reference = subset(test_set, 2000)

    def fid(generator: Generator) -> float:
        fake = to_uint8(generate(generator, latents(1000, 100, "uniform", seed=1)))
        return evaluate_images(fake, data=reference, features=extractor, metrics=["fid"]).values["fid1k"]

    torch.manual_seed(0)
    untrained = fid(Generator(32, 1, 100, 32).eval())
    trained = fid(load_generator(tmp_path / "run"))
    assert trained < 0.5 * untrained, f"FID after 300 steps {trained:.1f} vs untrained {untrained:.1f}"
