"""A metric the training loop can call every few thousand steps, to log it and keep the best checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from dcgan.data import ImageData
from dcgan.errors import ConfigError
from dcgan.metrics.evaluate import class_labels, describe_extractor, generated_features, prepare, score
from dcgan.metrics.registry import parse_metrics, value_name
from dcgan.models import Generator


class TrainingEvaluator:
    """Scores a generator on a fixed set of latents against cached reference features.

    Built once per run: it loads the extractor and the reference features (from the cache after the first
    time), and uses the same n latents at every call, so successive values differ only by the generator. With a LeNet
    extractor and n=2000 a call takes seconds on a CPU. A class-conditional generator is sampled evenly over its
    classes (sample i in class i mod K), as `dcgan evaluate` samples it.

    Args:
        data: the training data's name or folder (or loaded `ImageData`).
        root: where the standard data sets live (the run's `data_root`).
        image_size, channels: the generator's; real images are loaded to match.
        metric: `fid`, `kid` or `is` (precision/recall gives two numbers, so cannot pick a best checkpoint).
        n: generated samples per call.
        features: `inception`, an extractor name or file, or None for the data set's default.
        split: the reference split.
        prior: the latent prior ("uniform" or "normal"); by default each generator's own (`generator.prior`).
        seed: picks the fixed latents.
        device: where the extractor runs; None follows the generator at each call.
        batch_size: images per forward pass.

    Example:
        >>> evaluator = TrainingEvaluator("fashion-mnist", image_size=32, channels=1, metric="fid", n=2000)
        >>> evaluator(generator)                     # {"fid2k": 23.4}
        >>> evaluator.is_better(23.4, best=25.0)     # True
    """

    def __init__(
        self,
        data: str | ImageData,
        *,
        root: str | Path | None = None,
        image_size: int,
        channels: int,
        metric: str = "fid",
        n: int = 2000,
        features: str | Path | None = None,
        split: str = "train",
        prior: str | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        batch_size: int = 250,
    ) -> None:
        (self.metric,) = parse_metrics([metric])
        if self.metric.primary is None:
            raise ConfigError(
                f"--eval-metric {metric} gives several numbers and cannot pick a best checkpoint; use fid, kid or is."
            )
        if n < 4:
            raise ConfigError(f"--eval-n must be at least 4, got {n}.")
        self.n, self.prior, self.seed, self.batch_size, self.device = n, prior, seed, batch_size, device
        _, self.extractor, self.reference = prepare(
            [metric], features, data, root=root, split=split, image_size=image_size, channels=channels,
            device=device or "cpu", download=False, batch_size=batch_size, progress=False,
        )  # fmt: skip

    @property
    def key(self) -> str:
        """The name of the tracked value, e.g. `fid2k`."""
        return value_name(self.metric.primary or self.metric.name, self.n)

    @property
    def features(self) -> dict[str, object]:
        """The extractor's name, weight fingerprint and test accuracy: log them with the values, since a refitted
        extractor puts the metric on another scale."""
        return describe_extractor(self.extractor)

    @property
    def lower_is_better(self) -> bool:
        return self.metric.lower_is_better

    def is_better(self, value: float, best: float | None) -> bool:
        """Whether `value` beats `best` (None: nothing yet, so yes)."""
        if best is None:
            return True
        return value < best if self.lower_is_better else value > best

    @torch.no_grad()
    def __call__(self, generator: Generator) -> dict[str, float]:
        """The metric's values for the generator, e.g. {"fid2k": 23.4} or {"kid2k": 0.01, "kid2k_std": 0.001}.

        The generator is put in eval mode for sampling and returned to its previous mode.
        """
        if self.device is None:
            self.extractor.to(next(generator.parameters()).device)
        fake, _ = generated_features(
            generator, self.extractor, self.n, prior=self.prior or generator.prior, seed=self.seed,
            batch_size=self.batch_size, logits=self.metric.needs_logits,
        )  # fmt: skip
        labels, classes = class_labels(generator, self.n)  # a conditional G: the classes its samples were drawn in
        values, _ = score(fake, self.reference, [self.metric], seed=self.seed, labels=labels, classes=classes)
        return values
