"""What a run reports as it goes: rows in metrics.jsonl, scalars and images in TensorBoard, the progress bar."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import torch

from dcgan.run import RunFolder, read_metrics


class TrainingLog:
    """The run's log, opened for one `fit()`; a context manager that closes the bar and TensorBoard.

    Each step's [loss_d, loss_g, D(x), D(G(z))] is `add`ed; `losses()` writes their mean since the last log line.
    Only the process that `writes` (rank 0) touches files; every process keeps a bar (disabled unless `progress`).
    Opening the log at `step` drops rows past it: a resumed run replays those steps exactly and logs them again.

    Args:
        folder: the run folder.
        step: where training starts (0, or the step of the checkpoint being resumed).
        total: the step training ends at.
        writes: write metrics.jsonl and TensorBoard (rank 0).
        progress: show a progress bar.
    """

    def __init__(self, folder: RunFolder, step: int, total: int, *, writes: bool, progress: bool) -> None:
        from tqdm import tqdm

        self.folder, self.writes = folder, writes
        self.bar = tqdm(total=total, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
        self.tensorboard = _tensorboard(folder, step) if writes else None
        self.forget_after(step)
        self._sum: torch.Tensor | None = None
        self._count, self._tick = 0, time.perf_counter()

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def add(self, stats: torch.Tensor) -> None:
        """A step is done: count its [loss_d, loss_g, D(x), D(G(z))] (no host sync) and move the bar."""
        self._sum = stats if self._sum is None else self._sum + stats
        self._count += 1
        self.bar.update(1)

    def losses(self, step: int, epoch: float, batch_size: int) -> None:
        """One log line: the mean of the steps added since the last one, and images per second."""
        now = time.perf_counter()
        rate = self._count * batch_size / max(now - self._tick, 1e-9)
        assert self._sum is not None, "losses() after at least one add()"
        loss_d, loss_g, d_x, d_g_z = (float(v) for v in (self._sum / self._count).tolist())
        self._sum, self._count, self._tick = None, 0, now
        self.bar.set_postfix(loss_d=f"{loss_d:.3f}", loss_g=f"{loss_g:.3f}", D_x=f"{d_x:.2f}", D_G_z=f"{d_g_z:.2f}",
                             img_s=f"{rate:.0f}")  # fmt: skip
        values = {"loss_d": loss_d, "loss_g": loss_g, "d_x": d_x, "d_g_z": d_g_z, "img_per_s": rate}
        self.row(step, {"epoch": epoch, **values, "time": time.time()}, scalars=values, group="train")

    def row(
        self, step: int, values: dict[str, Any], *, scalars: dict[str, float] | None = None, group: str = "train"
    ) -> None:
        """Append `{"step": step, **values}` to metrics.jsonl and put `scalars` (default: all values) in
        TensorBoard as `group/name`. A failed write (e.g. a full disk) only warns: training goes on."""
        if not self.writes:
            return
        try:
            with open(self.folder.metrics, "a") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")
        except OSError as exc:
            warnings.warn(f"Could not append to {self.folder.metrics.name} ({exc.strerror}); training goes on.",
                          stacklevel=2)  # fmt: skip
        if self.tensorboard is not None:
            for key, value in (values if scalars is None else scalars).items():
                self.tensorboard.add_scalar(f"{group}/{key}", value, step)

    def images(self, tag: str, images: torch.Tensor, step: int) -> None:
        """A batch of images in [-1, 1] in TensorBoard."""
        if self.tensorboard is not None:
            self.tensorboard.add_image(tag, (images + 1) / 2, step, dataformats="NCHW")

    def rewind(self, step: int) -> None:
        """The run went back to `step` (a rollback): drop the rows and the steps added past it, move the bar back."""
        self.forget_after(step)
        self._sum, self._count, self._tick = None, 0, time.perf_counter()
        self.bar.n = step
        self.bar.refresh()

    def note(self, text: str) -> None:
        """A line above the progress bar; without a bar (`--no-progress`), a plain line from the writing process."""
        if not self.bar.disable:
            self.bar.write(text)
        elif self.writes:
            print(text)

    def forget_after(self, step: int) -> None:
        """Drop metrics.jsonl rows past `step` (and lines cut short by a kill)."""
        path = self.folder.metrics
        if not self.writes or not path.exists():
            return
        keep = [row for row in read_metrics(path) if _step_of(row) <= step]
        path.write_text("".join(json.dumps(row) + "\n" for row in keep))


def _step_of(row: dict[str, Any]) -> float:
    step = row.get("step")
    return step if isinstance(step, (int, float)) else float("inf")


def _tensorboard(folder: RunFolder, step: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder.tensorboard), purge_step=step or None)
