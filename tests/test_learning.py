"""Real learning on real data: a short Fashion-MNIST run beats an untrained generator on a classifier's FID."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcgan.checkpoint import load_generator
from dcgan.config import build_config
from dcgan.data import DEBIAN_FASHION_MNIST, ImageData, load_images
from dcgan.metrics import evaluate_images, fit_extractor
from dcgan.models import Generator
from dcgan.sample import generate, latents, to_uint8
from dcgan.train import train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DEBIAN_FASHION_MNIST.exists(), reason="apt-get install dataset-fashion-mnist"),
]


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
