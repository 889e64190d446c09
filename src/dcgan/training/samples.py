"""Watching the samples: the fixed-z grid every few steps, its diversity, and the run's figures."""

from __future__ import annotations

import warnings

import torch

from dcgan.models import Generator
from dcgan.run import RunFolder
from dcgan.sample import diversity, generate, plot_losses, save_gif, save_grid
from dcgan.training.log import TrainingLog


def class_grid(fixed_z: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A conditional run's grid: (latents, labels, images per row) from the fixed latents, so that each row shows
    a few latents, each drawn in every class side by side.

    With K <= 8 classes a row holds 8 // K latents times K classes; with up to 16 a row is one latent in every
    class; with more, the 64 fixed latents are drawn in classes 0, 1, ... in turn (no row could show them all).
    """
    n, k = fixed_z.shape[0], num_classes
    if k > 16:
        return fixed_z, torch.arange(n) % k, 8
    per_row = max(1, 8 // k)
    nrow = per_row * k
    position = torch.arange((n // nrow) * nrow)
    row, column = position // nrow, position % nrow
    return fixed_z[row * per_row + column // k], column % k, nrow


class SampleMonitor:
    """Draws the same latents at every sample step, so the grids in `samples/` show one set of faces (or digits)
    changing; scores their diversity against real images and warns when it collapses.

    Args:
        folder: the run folder.
        fixed_z: the latents of every grid (64 of them: an 8x8 grid).
        real: as many real images (uint8), for the diversity score's scale.
        collapse_threshold: below this diversity (and half the best so far) the run warns of mode collapse.
        num_classes: a conditional run's class count: its grids draw the fixed latents in every class
            (`class_grid`).
    """

    def __init__(
        self,
        folder: RunFolder,
        fixed_z: torch.Tensor,
        real: torch.Tensor,
        collapse_threshold: float,
        *,
        num_classes: int = 0,
    ) -> None:
        self.folder, self.collapse_threshold = folder, collapse_threshold
        self.fixed_z, self.nrow = fixed_z, 8
        self.labels: torch.Tensor | None = None
        if num_classes:
            self.fixed_z, self.labels, self.nrow = class_grid(fixed_z, num_classes)
        self.real = real.float() / 127.5 - 1
        self.best_diversity = 0.0

    def sample(self, step: int, generator: Generator, log: TrainingLog) -> None:
        """Write `samples/step-XXXXXXXX.png`, log the diversity score, warn of a collapse."""
        images = generate(generator, self.fixed_z, labels=self.labels)
        try:
            save_grid(images, self.folder.sample_grid(step), nrow=self.nrow)
        except OSError as exc:
            warnings.warn(f"Could not write a sample grid ({exc.strerror}); training goes on.", stacklevel=2)
        score = diversity(images, self.real[: images.shape[0]])
        log.row(step, {"diversity": score})
        log.images("samples", images[:64], step)
        # A collapse is a fall: early samples are all alike too, so compare against the best diversity so far.
        self.best_diversity = max(self.best_diversity, score)
        if score < self.collapse_threshold and score < 0.5 * self.best_diversity:
            warnings.warn(
                f"Possible mode collapse at step {step}: sample diversity {score:.3f} of the real data's.",
                stacklevel=2,
            )

    def figures(self) -> None:
        """The training animation and the loss curves; a failure here (e.g. a full disk) only warns."""
        folder = self.folder
        try:
            save_gif(folder.sample_grids(), folder.progress_gif)
            if folder.metrics.exists():
                plot_losses(folder.metrics, folder.losses)
        except OSError as exc:
            warnings.warn(
                f"Could not write {folder.progress_gif.name} or {folder.losses.name} ({exc.strerror}).", stacklevel=2
            )
