"""The config: every value is checked when the config is built, with a one-sentence error naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcgan.config import EVAL_METRICS, TrainConfig, build_config
from dcgan.errors import ConfigError


def test_a_bad_eval_metric_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"--eval-metric must be one of fid, kid, is, got 'fdi'\."):
        build_config(None, eval_metric="fdi")


def test_the_eval_metrics_are_the_registered_ones_that_pick_a_best_checkpoint() -> None:
    from dcgan.metrics import METRICS

    assert set(EVAL_METRICS) == {name for name, metric in METRICS.items() if metric.primary is not None}
    for name in EVAL_METRICS:
        assert build_config(None, eval_metric=name).eval_metric == name


def test_a_bad_eval_metric_fails_before_any_data_is_read(tmp_path: Path) -> None:
    from dcgan.train import train

    config = TrainConfig(data=str(tmp_path / "no-such-folder"), eval_metric="pr", eval_every=10)
    with pytest.raises(ConfigError, match="eval-metric"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
