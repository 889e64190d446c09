"""An exponential moving average (EMA) of G's weights, the copy samples and evaluations use when `--ema` is on.

The decay ramps up as TensorFlow's `ExponentialMovingAverage(num_updates=...)` does: step t uses
min(decay, (1 + t) / (10 + t)). Without the ramp a decay of 0.999 still holds 0.999^t of the untrained weights
at step t (41% at step 900 of the default job), and the averaged G draws noise long after the trained one draws
digits; with it the average covers roughly the last tenth of the run early on and the last 1 / (1 - decay)
steps later. The decay depends on the step alone, so a resumed run averages exactly as an uninterrupted one.
"""

from __future__ import annotations

import torch
from torch import nn


def ema_decay(decay: float, step: int) -> float:
    """The decay used for the update after `step` steps (0-based): min(decay, (1 + step) / (10 + step))."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(average: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """average <- d * average + (1 - d) * model for the parameters (d = `ema_decay(decay, step)`); buffers
    (batchnorm running statistics) are copied, since samples re-estimate them anyway."""
    d = ema_decay(decay, step)
    torch._foreach_lerp_(list(average.parameters()), list(model.parameters()), 1.0 - d)
    for ema_buffer, buffer in zip(average.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)
