"""A dry run: what `dcgan train` would do, checked as far as it can be without training or writing anything.

As stylegan2-ada's and pytorch/examples' `--dry-run`: the config is validated; the data is found and read far
enough to know how many images it holds and that they decode; the models are built (and, with `resume`, the
run's checkpoint read and matched); the execution plan is settled as the run would settle it (`dcgan.plan`);
two training steps run on random images of the data's shape, the second timed; and the report says what a real
run would do and for how long. Nothing is written: no run folder, and for a folder of images (or a .txt list)
not even a cache entry, since only its first few files are decoded. A named data set (mnist5k, cifar10, ...) is
loaded as a run loads it: from the decoded cache, or decoded and cached once, which the real run then reuses;
so is a plan the run would measure (into the plan cache). A dry run never downloads.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dcgan.config import TrainConfig
from dcgan.data import ImageData, as_trained, load_images, native_channels, registry
from dcgan.data.balance import draw_weights
from dcgan.errors import DataError
from dcgan.gemm_conv import use_gemm_conv

if TYPE_CHECKING:
    from dcgan.train import Trainer

#: How many of a folder's files a dry run decodes (it stops at the first few that decode).
PEEK_FILES = 64
PEEK_DECODED = 8


@dataclass
class DryRunReport:
    """What a training run would do; `str()` gives the lines `dcgan train --dry-run` prints."""

    out: Path
    data: str
    source: str
    images: int
    channels: int
    image_size: int
    batch_size: int
    steps_per_epoch: int
    start_step: int
    total_steps: int
    precision: str
    device: str
    seconds_per_step: float
    plan: str = ""

    @property
    def epochs(self) -> float:
        return self.total_steps / self.steps_per_epoch

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.seconds_per_step

    @property
    def seconds(self) -> float:
        """The estimated time of the steps still to run (sample grids and checkpoints not included)."""
        return max(self.total_steps - self.start_step, 0) * self.seconds_per_step

    def __str__(self) -> str:
        size = f"{self.image_size}x{self.image_size}"
        channels = f"{self.channels} channel{'s' if self.channels > 1 else ''}"
        steps = f"{self.total_steps:,}" if not self.start_step else f"{self.start_step:,} to {self.total_steps:,}"
        return "\n".join(
            [
                "Dry run (nothing written):",
                f"  data        {self.data}: {self.images:,} images, {channels}, {size} ({self.source})",
                f"  steps       {steps} = {self.epochs:.1f} epochs of {self.steps_per_epoch:,} steps, batch "
                f"{self.batch_size}",
                f"  precision   {self.precision} on {self.device}",
                f"  plan        {self.plan}",
                f"  speed       {self.images_per_s:,.0f} images/s ({self.seconds_per_step:.3f} s a step, timed "
                "after a warm-up step)",
                f"  duration    about {_duration(self.seconds)} of training steps",
                f"  run folder  {self.out}",
            ]
        )


def dry_run(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    data: ImageData | None = None,
    device: str | torch.device | None = None,
) -> DryRunReport:
    """Check and time a training run without running it; writes nothing (see the module's docstring).

    Args:
        config: the run's settings, as `train` takes them.
        out: the run folder a real run would write (it is only read, to resume or to refuse a used one).
        resume: check a resume of the run in `out` instead of a new run.
        data: the images `train` would be given instead of loading `config.data`.
        device: as for `train`.

    Raises:
        DcganError: whatever a real run would raise before its first step (a bad value, missing data, a run
            folder already in use, a checkpoint that does not fit).
    """
    from dcgan import distributed
    from dcgan.train import Trainer, classes_to_draw, step_counts

    config.validate()
    looked_at = config  # the data as the run will load it: a resumed run keeps its checkpoint's channels
    if resume and config.channels is None:
        from dcgan.run import RunFolder
        from dcgan.training.resume import newest_state

        state = newest_state(RunFolder(out), config, resume=True, talk=False)
        if state is not None and state.get("channels"):
            looked_at = dataclasses.replace(config, channels=int(state["channels"]))
    if data is not None:
        source, images = data.source, len(data)
        channels = as_trained(data, looked_at.channels).channels
    else:
        source, images, channels = _look_at_data(looked_at)
    steps_per_epoch, total_steps = step_counts(config, images)
    noise = torch.Generator().manual_seed(config.seed)
    shape = (config.batch_size, channels, config.image_size, config.image_size)
    random_images = ImageData(torch.randint(0, 256, shape, dtype=torch.uint8, generator=noise), None, config.data,
                              "train", "random pixels")  # fmt: skip
    if config.conditional or config.class_weights:  # the classes, found without decoding a folder
        labelled = data if data is not None else _look_at_labels(config)
        draw_weights(config.class_weights, labelled)  # a name that is not a class fails here, as in the run
        classes = labelled.class_names
        if config.conditional:
            classes = classes_to_draw(config, labelled)
        random_images.labels = torch.randint(0, len(classes), shape[:1], generator=noise)
        random_images.classes = classes
    gemm_before = use_gemm_conv(True)  # the Trainer switches it process-wide; put it back after
    # The Trainer sees one batch of random images: it is told the real run's length, which decides whether the
    # plan is worth measuring.
    as_run = dataclasses.replace(config, steps=total_steps, epochs=None)
    trainer = None
    try:
        trainer = Trainer(as_run, out, resume=resume, data=random_images, device=device, progress=False)
        seconds = _time_a_step(trainer)
    finally:
        use_gemm_conv(gemm_before)
        if trainer is not None:
            distributed.teardown(trainer.dist)
    return DryRunReport(
        out=trainer.out, data=config.data, source=source, images=images, channels=channels,
        image_size=config.image_size, batch_size=config.batch_size, steps_per_epoch=steps_per_epoch,
        start_step=trainer.step, total_steps=total_steps, precision=trainer.precision,
        device=str(trainer.device), seconds_per_step=seconds, plan=trainer.plan_choice.summary(),
    )  # fmt: skip


def _time_a_step(trainer: Trainer) -> float:
    """Seconds of the second of two training steps (the first pays for warm-up and any compilation)."""
    seconds, stats = 0.0, torch.zeros(4)
    for step in range(2):
        start = time.perf_counter()
        labels = trainer.real_labels(step)
        y = () if labels is None else (labels,)
        stats = trainer.train_step(trainer.real_batch(step), trainer.latent_batch(), *y).cpu()  # .cpu() waits for it
        seconds = time.perf_counter() - start
    if not torch.isfinite(stats).all():
        warnings.warn("The dry run's steps gave NaN/Inf losses; try --precision fp32 or a lower --lr.", stacklevel=3)
    return seconds


def _look_at_data(config: TrainConfig) -> tuple[str, int, int]:
    """(where the data is, how many images, channels), decoding only a few files of a folder or list."""
    path = Path(config.data).expanduser()
    if registry.is_standard(config.data) or not path.exists():
        data = load_images(config.data, root=config.data_root, image_size=config.image_size, channels=config.channels)
        return data.source, len(data), as_trained(data, config.channels).channels
    from PIL import Image

    from dcgan.data.folder import list_images
    from dcgan.data.transform import pil_to_array

    files = list_images(path)
    if not files:
        raise DataError(f"--data {path} holds no image files.")
    channels = config.channels or native_channels(config.data)
    peeked = []
    for file in files[:PEEK_FILES]:
        try:
            with Image.open(file) as image:
                peeked.append(torch.from_numpy(pil_to_array(image, config.image_size, channels)))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # a real run skips such files too
        if len(peeked) == PEEK_DECODED:
            break
    if not peeked:
        raise DataError(f"--data {path}: none of its first {min(len(files), PEEK_FILES)} image files could be decoded.")
    # As the run decides, from the files looked at: grey ones train in one channel unless --channels says otherwise.
    channels = as_trained(ImageData(torch.stack(peeked), None, config.data, "train", ""), config.channels).channels
    return str(path.resolve()), len(files), channels


def _look_at_labels(config: TrainConfig) -> ImageData:
    """The data's labels and class names without its pixels where it is a folder: from its file list (one
    subfolder per class, or `labels_from_name`); a named set is loaded as a run loads it."""
    path = Path(config.data).expanduser()
    if registry.is_standard(config.data) or not path.exists():
        return load_images(
            config.data, root=config.data_root, image_size=config.image_size, channels=config.channels,
            labels_from_name=config.labels_from_name,
        )  # fmt: skip
    from dcgan.data import labels
    from dcgan.data.folder import list_images

    folder = path.resolve()
    files = [str(f) for f in list_images(folder)]
    if config.labels_from_name is not None:
        found, classes = labels.labels_from_names(files, config.labels_from_name, str(folder))
        found = found[found >= 0]
    else:
        by_folder = labels.labels_from_subfolders(files, folder)
        if by_folder is None:
            return ImageData(torch.empty(0, 1, 1, 1, dtype=torch.uint8), None, config.data, "train", str(folder))
        found, classes = by_folder
    return ImageData(
        torch.empty(0, 1, 1, 1, dtype=torch.uint8), torch.from_numpy(found), config.data, "train", str(folder),
        classes=classes,
    )  # fmt: skip


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    if days:
        return f"{days} d {h} h"
    if hours:
        return f"{hours} h {m:02d} min"
    return f"{m} min {s:02d} s" if minutes else f"{s} s"
