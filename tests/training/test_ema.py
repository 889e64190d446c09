"""The EMA generator: its decay ramps up, so a short run's average is of trained weights, not the initial ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcgan.training.ema import ema_decay, update_ema


def test_the_decay_ramps_up_to_the_configured_value() -> None:
    assert ema_decay(0.999, 0) == pytest.approx(0.1)
    assert ema_decay(0.999, 90) == pytest.approx(0.91)
    assert ema_decay(0.999, 10**6) == 0.999
    assert all(ema_decay(0.999, t) <= ema_decay(0.999, t + 1) for t in range(5000))


def test_an_average_over_a_short_run_forgets_the_initial_weights() -> None:
    # The weights jump from 0 to 1 after 10 steps and stay; 300 steps later the average must be close to 1. A fixed
    # decay of 0.999 would still hold 0.999^300 = 74% of the initial zeros.
    model, average = nn.Linear(4, 4), nn.Linear(4, 4)
    for p in [*model.parameters(), *average.parameters()]:
        nn.init.zeros_(p)
    for step in range(310):
        if step == 10:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(1.0)
        update_ema(average, model, 0.999, step)
    assert float(average.weight.detach().min()) > 0.95


def test_buffers_are_copied_not_averaged() -> None:
    model, average = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    model.running_mean.fill_(5.0)
    update_ema(average, model, 0.999, 1000)
    assert torch.equal(average.running_mean, model.running_mean)
