"""Sample quality during training: a metric every `eval_every` steps, and `best.pt`, the best-scoring checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcgan.checkpoint import atomic_save
from dcgan.config import TrainConfig
from dcgan.models import Generator
from dcgan.training.log import TrainingLog


class BestCheckpoint:
    """Scores the sampling generator with `config.eval_metric` and keeps the best-scoring checkpoint at `path`.

    `value` (the best score so far) is part of the training state: checkpoints save it and a resumed run
    restores it. The evaluator (an extractor and the real data's features) takes seconds to build, so it is
    built by `prepare()` when training starts, and only on the process that writes (rank 0).
    """

    def __init__(self, config: TrainConfig, channels: int, path: Path) -> None:
        self.config, self.channels, self.path = config, channels, path
        self.value: float | None = None
        self.evaluator: Any = None

    def prepare(self) -> None:
        from dcgan.metrics import TrainingEvaluator

        cfg = self.config
        self.evaluator = TrainingEvaluator(
            cfg.data, root=cfg.data_root, image_size=cfg.image_size, channels=self.channels, metric=cfg.eval_metric,
            n=cfg.eval_n, features=cfg.eval_features, prior=cfg.prior, seed=cfg.seed,
        )  # fmt: skip

    def due(self, step: int, last: bool) -> bool:
        return self.evaluator is not None and (step % self.config.eval_every == 0 or last)

    def evaluate(
        self, step: int, generator: Generator, log: TrainingLog, snapshot: Callable[[], dict[str, Any]]
    ) -> None:
        """Score `generator`, log the values, and write `snapshot()` (with the values) to `path` if it is the best."""
        values = self.evaluator(generator)
        log.row(step, values, group="eval")
        value = float(values[self.evaluator.key])
        if self.evaluator.is_better(value, self.value):
            self.value = value  # before the snapshot, which saves it
            atomic_save({**snapshot(), "metrics": values}, self.path)
