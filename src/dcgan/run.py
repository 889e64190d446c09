"""A run: its folder layout, its checkpoint schema, its log, and a trained run opened once.

Everything that reads or writes a run folder goes through here, so the layout and the checkpoint's contents
are written down in one place:

    RUN/config.json               the TrainConfig (also inside every checkpoint)
    RUN/checkpoints/step-XXXXXXXX.pt, best.pt
    RUN/samples/step-XXXXXXXX.png  the fixed-z grid during training
    RUN/snapshots/step-XXXXXXXX.pt G's recent snapshots, which sampling mixes (`dcgan.mixture`)
    RUN/metrics.jsonl             one JSON object per log line, evaluation and diversity check
    RUN/progress.gif, losses.png, tensorboard/

`Run.open(path)` reads and verifies a run folder's newest checkpoint (or a given file) once, and hands out
the config, step, prior and channels, the generator for sampling and the discriminator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from dcgan import checkpoint
from dcgan.config import TrainConfig
from dcgan.errors import CheckpointError, ConfigError
from dcgan.mixture import SnapshotMixture
from dcgan.models import Discriminator, Generator, recalibrate_batchnorm

# ----------------------------------------------------------------------------------------------- layout
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
SAMPLES_DIR = "samples"
SNAPSHOT_DIR = "snapshots"
#: What a snapshot file holds: G's sampling weights at one step (the EMA when kept, batchnorm re-estimated).
SNAPSHOT_FORMAT = "dcgan-generator-snapshot"
#: Snapshots join a checkpoint's mixture only from the last quarter of the steps it was trained for.
SNAPSHOT_SPAN = 0.25
METRICS_FILE = "metrics.jsonl"
PROGRESS_GIF = "progress.gif"
LOSSES_PNG = "losses.png"
TENSORBOARD_DIR = "tensorboard"
BEST_CHECKPOINT = "best.pt"
SKIPPED_FILES = "skipped-files.txt"
_STEP_FILE = re.compile(r"^step-(\d{8,})\.pt$")


def step_name(step: int, suffix: str = ".pt") -> str:
    """`step-00001200.pt`: checkpoints and sample grids are named by the step they were taken at."""
    return f"step-{step:08d}{suffix}"


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder; nothing is created until `create()`."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root).expanduser())

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINT_DIR

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES_DIR

    @property
    def snapshots(self) -> Path:
        return self.root / SNAPSHOT_DIR

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def progress_gif(self) -> Path:
        return self.root / PROGRESS_GIF

    @property
    def losses(self) -> Path:
        return self.root / LOSSES_PNG

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD_DIR

    @property
    def best(self) -> Path:
        return self.checkpoints / BEST_CHECKPOINT

    @property
    def skipped_files(self) -> Path:
        """The data files that could not be decoded, one path a line."""
        return self.root / SKIPPED_FILES

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / step_name(step)

    def sample_grid(self, step: int) -> Path:
        return self.samples / step_name(step, ".png")

    def create(self) -> None:
        for folder in (self.root, self.checkpoints, self.samples):
            folder.mkdir(parents=True, exist_ok=True)

    def list_checkpoints(self) -> list[Path]:
        """The step checkpoints, oldest first (`best.pt` and temporary files excluded)."""
        return [p for _, p in _step_files(self.checkpoints)]

    def prune(self, keep: int) -> None:
        """Delete all but the newest `keep` step checkpoints."""
        for old in self.list_checkpoints()[:-keep]:
            old.unlink(missing_ok=True)

    def sample_grids(self) -> list[Path]:
        return sorted(self.samples.glob("step-*.png"))

    def list_snapshots(self) -> list[tuple[int, Path]]:
        """G's snapshots as (step, file), oldest first."""
        return _step_files(self.snapshots)

    def save_snapshot(self, step: int, generator: Generator, keep: int) -> Path:
        """Write G's sampling weights at `step` as `snapshots/step-XXXXXXXX.pt` (atomically, with a checksum) and
        delete all but the newest `keep` snapshots."""
        state = {"format": SNAPSHOT_FORMAT, "step": step, "generator": generator.state_dict()}
        path = checkpoint.atomic_save(state, self.snapshots / step_name(step))
        for _, old in self.list_snapshots()[:-keep]:
            old.unlink(missing_ok=True)
        return path


def _step_files(folder: Path) -> list[tuple[int, Path]]:
    """The `step-XXXXXXXX.pt` files in `folder` as (step, file), oldest first (others and temporary files left out)."""
    if not folder.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name)))


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's newest checkpoint."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = RunFolder(path).list_checkpoints()
        if not found:
            raise CheckpointError(f"{path} holds no checkpoints (looked in {path / CHECKPOINT_DIR}).")
        return found[-1]
    if not path.exists():
        raise CheckpointError(f"No such checkpoint or run folder: {path}.")
    return path


# ----------------------------------------------------------------------------------------------- metrics.jsonl
def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's metrics.jsonl (a folder or the file); lines cut short by a kill are skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------- checkpoint schema
# One plain dict (nanoGPT style). Version 1 is what every release so far has written; a reader of a newer
# version refuses it with a message rather than guessing.
FORMAT = checkpoint.FORMAT
VERSION = 1
REQUIRED = ("config", "generator", "step")
#: What resuming needs on top of the weights.
TRAINING_STATE = ("opt_g", "opt_d", "scaler", "noise_rng", "rng")


def make_checkpoint(
    *,
    config: TrainConfig,
    channels: int,
    step: int,
    steps_per_epoch: int,
    generator: Generator,
    generator_ema: Generator | None,
    generator_eval: Generator | None,
    discriminator: Discriminator,
    training: dict[str, Any],
) -> dict[str, Any]:
    """The dict a checkpoint file holds.

    Args:
        generator_eval: what sampling uses (G, or its EMA, with batchnorm statistics re-estimated); None leaves
            the re-estimation to whoever opens the checkpoint (`Run.generator`).
        training: the resume state: `opt_g`, `opt_d`, `scaler`, `noise_rng`, `rng` (see TRAINING_STATE) and
            optionally `nan_retries`, `best_value`.

    A class-conditional run's checkpoint also holds `num_classes`, `conditioning`, `classes` (the names, label
    i being classes[i]) and `class_shares` (each class's share among the training images, where G knows them);
    an unconditional run's has none of them, as before conditioning existed.
    """
    missing = [k for k in TRAINING_STATE if k not in training]
    if missing:
        raise ValueError(f"the training state lacks {missing}")
    labels = (
        {
            "num_classes": generator.num_classes,
            "conditioning": generator.conditioning,
            "classes": list(generator.classes),
            **({"class_shares": list(generator.class_shares)} if generator.class_shares is not None else {}),
        }
        if generator.num_classes
        else {}
    )
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "channels": channels,
        "generator": generator.state_dict(),
        "generator_ema": generator_ema.state_dict() if generator_ema is not None else None,
        "generator_eval": generator_eval.state_dict() if generator_eval is not None else None,
        "discriminator": discriminator.state_dict(),
        "step": step,
        "epoch": step // steps_per_epoch,
        "batch_in_epoch": step % steps_per_epoch,
        "nan_retries": 0,
        "best_value": None,
        **labels,
        **training,
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint file (or a run folder's newest): safe unpickling, checksum, schema."""
    path = resolve(path)
    state = checkpoint.read_verified(path)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dcgan checkpoint.")
    version = state.get("version", 0)
    if version > VERSION:
        raise CheckpointError(f"{path} was written by a newer dcgan (format {version}); upgrade dcgan.")
    for key in REQUIRED:
        if key not in state:
            raise CheckpointError(f"{path} is missing '{key}'; it is incomplete.")
    return state


def channels_of(state: dict[str, Any], config: TrainConfig) -> int:
    return int(state.get("channels") or config.channels or 3)


def build_models(
    config: TrainConfig, channels: int, classes: Sequence[str] = (), class_shares: Sequence[float] | None = None
) -> tuple[Generator, Discriminator]:
    """Fresh G and D of the shape `config` describes (the paper's initialisation); a conditional config's draw
    and judge `classes` (their names, label i being classes[i]), G knowing their `class_shares` in the data."""
    return build_generator(config, channels, classes, class_shares), build_discriminator(config, channels, classes)


def build_generator(
    config: TrainConfig, channels: int, classes: Sequence[str] = (), class_shares: Sequence[float] | None = None
) -> Generator:
    """A fresh G of the shape `config` describes; a conditional one named `classes`, whose shares among the
    training images are `class_shares` (None: unknown, drawn evenly)."""
    num_classes = len(classes) if config.conditional else 0
    g = Generator(
        config.image_size, channels, config.nz, config.ngf, config.prior, num_classes, config.model_conditioning
    )
    if num_classes:
        g.classes = tuple(classes)
        g.class_shares = None if class_shares is None else tuple(float(x) for x in class_shares)
    return g


def build_discriminator(config: TrainConfig, channels: int, classes: Sequence[str] = ()) -> Discriminator:
    """A fresh D of the shape `config` describes, judging `classes` when conditional."""
    num_classes = len(classes) if config.conditional else 0
    return Discriminator(config.image_size, channels, config.ndf, num_classes, config.model_conditioning)


def classes_of(state: dict[str, Any], config: TrainConfig, where: object) -> tuple[str, ...]:
    """The class names a checkpoint's models draw and judge: () for an unconditional run."""
    if not config.conditional:
        return ()
    classes = state.get("classes")
    if not isinstance(classes, list) or len(classes) != state.get("num_classes") or len(classes) < 2:
        raise CheckpointError(f"{where} is from a conditional run but does not say which classes it draws.")
    return tuple(str(c) for c in classes)


def class_shares_of(state: dict[str, Any], classes: Sequence[str], where: object) -> tuple[float, ...] | None:
    """Each class's share among a conditional run's training images, as its checkpoint records them; None for an
    unconditional run, or a checkpoint written before the shares were recorded (its classes are drawn evenly)."""
    shares = state.get("class_shares")
    if not classes or shares is None:
        return None
    valid = isinstance(shares, list) and len(shares) == len(classes)
    valid = valid and all(isinstance(x, (int, float)) and x >= 0 for x in shares) and abs(sum(shares) - 1) < 1e-6
    if not valid:
        raise CheckpointError(
            f"{where} records its classes' shares of the training images as {shares!r}, not one share for each of "
            f"its {len(classes)} classes summing to 1; it was not written by dcgan."
        )
    return tuple(float(x) for x in shares)


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], what: str, where: object) -> None:
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"The {what} weights in {where} do not fit the model its config describes.") from exc


# ----------------------------------------------------------------------------------------------- an opened run
class Run:
    """A trained run, opened once: `Run.open("runs/digits32")` or `Run.open("runs/x/checkpoints/best.pt")`.

    Attributes:
        path: the checkpoint file that was read.
        config: the run's TrainConfig.
        step: the training step the checkpoint was taken at.
        prior: the latent prior G was trained with ("uniform" or "normal").
        channels: image channels (1 or 3).
        state: the checkpoint's dict, as read (tensors on the CPU).
    """

    def __init__(self, path: Path, state: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.path = path
        self.state = state
        self.config = TrainConfig.from_dict(state["config"])
        self.step = int(state["step"])
        self.epoch = int(state.get("epoch", 0))
        self.prior = self.config.prior
        self.channels = channels_of(state, self.config)
        #: The classes a conditional run draws (names, label i being classes[i]); () when unconditional.
        self.classes = classes_of(state, self.config, path)
        #: Each class's share among the training images (`Generator.class_shares`); None if unconditional or
        #: not recorded.
        self.class_shares = class_shares_of(state, self.classes, path)
        self.device = torch.device(device)

    @classmethod
    def open(cls, path: str | Path, *, device: str | torch.device = "cpu") -> Run:
        """Read and verify a run folder's newest checkpoint, or the checkpoint file given; raise
        `CheckpointError` with a clear reason if it cannot be used."""
        file = resolve(path)
        return cls(file, read_checkpoint(file), device)

    @property
    def folder(self) -> RunFolder:
        """The run folder the checkpoint lives in (`RUN/checkpoints/FILE` -> `RUN`)."""
        parent = self.path.parent
        return RunFolder(parent.parent if parent.name == CHECKPOINT_DIR else parent)

    @property
    def name(self) -> str:
        """A short label: `RUN/step-00001200.pt`."""
        return f"{self.folder.root.name}/{self.path.name}"

    @property
    def num_classes(self) -> int:
        """How many classes G draws; 0 for an unconditional run."""
        return len(self.classes)

    @property
    def has_ema(self) -> bool:
        return bool(self.state.get("generator_ema"))

    @property
    def resumable(self) -> bool:
        return all(k in self.state for k in TRAINING_STATE)

    @property
    def metrics(self) -> dict[str, Any] | None:
        """The evaluation that made this checkpoint `best.pt`, if it is one."""
        return self.state.get("metrics")

    def generator(self, *, ema: bool = True) -> Generator:
        """G in eval mode on `device`.

        Args:
            ema: the evaluation copy the run saved: the EMA weights when it kept them (`--ema`), with batchnorm
                statistics re-estimated for the final weights. False gives the raw training weights.
        """
        g = build_generator(self.config, self.channels, self.classes, self.class_shares)
        evaluation = self.state.get("generator_eval") if ema else None
        load_weights(g, evaluation or self.state["generator"], "generator", self.path)
        g.to(self.device)
        if ema and not evaluation:  # written before evaluation copies were saved: re-estimate now
            recalibrate_batchnorm(g, seed=self.config.seed + 3)
        return g.eval()

    def snapshot_steps(self, snapshots: int | None = None) -> list[tuple[int, Path]]:
        """The run's snapshots that join this checkpoint's mixture of `snapshots` members (default: the run's
        `--snapshots`), newest first: taken before its step, in the last quarter of the steps it was trained for
        (earlier ones are worse generators, not other modes), at most `snapshots - 1` of them (the checkpoint's
        own G is the newest member)."""
        snapshots = self.config.snapshots if snapshots is None else snapshots
        if snapshots <= 1:
            return []
        since = self.step * (1 - SNAPSHOT_SPAN)
        found = [(s, p) for s, p in self.folder.list_snapshots() if since <= s < self.step]
        return sorted(found, reverse=True)[: snapshots - 1]

    def sampler(self, *, ema: bool = True, snapshots: int | None = None) -> Generator:
        """What sampling and evaluation draw from: the mixture of G's recent snapshots (`dcgan.mixture`) when the
        run kept them, else the checkpoint's G (`generator(ema=ema)`). `ema=False` (the raw training weights) is
        the checkpoint's G alone: the snapshots hold sampling weights. `snapshots` caps the members (default: the
        run's `--snapshots`; 1: the checkpoint's G alone).

        Raises:
            CheckpointError: a snapshot is unreadable, or not one of this run's G's.
        """
        newest = self.generator(ema=ema)
        found = self.snapshot_steps(snapshots) if ema else []
        if not found:
            return newest
        members = [newest]
        for _, path in found:
            state = checkpoint.read_verified(path)
            if state.get("format") != SNAPSHOT_FORMAT or "generator" not in state:
                raise CheckpointError(f"{path} is not a dcgan snapshot of G; delete it or sample with --snapshots 1.")
            g = build_generator(self.config, self.channels, self.classes, self.class_shares)
            load_weights(g, state["generator"], "snapshot generator", path)
            members.append(g.to(self.device).eval())
        # A mixture has a generator's attributes and call, so it goes wherever sampling takes a Generator.
        return cast(Generator, SnapshotMixture(members, [self.step, *(s for s, _ in found)]))

    def discriminator(self) -> Discriminator:
        """D in eval mode on `device`."""
        if not self.state.get("discriminator"):
            raise CheckpointError(f"{self.path} holds no discriminator.")
        d = build_discriminator(self.config, self.channels, self.classes)
        load_weights(d, self.state["discriminator"], "discriminator", self.path)
        return d.to(self.device).eval()

    def describe(self) -> dict[str, Any]:
        """What `dcgan info` prints: the file, its training state and its config."""
        count = lambda weights: int(sum(t.numel() for t in weights.values() if t.is_floating_point()))
        return {
            "file": str(self.path),
            "size_mb": round(self.path.stat().st_size / 2**20, 2),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": int(self.state.get("batch_in_epoch", 0)),
            "channels": self.channels,
            "generator_parameters": count(self.state["generator"]),
            "discriminator_parameters": count(self.state.get("discriminator") or {}),
            "has_ema": self.has_ema,
            "resumable": self.resumable,
            **({"classes": ", ".join(f"{i} {name}" for i, name in enumerate(self.classes))} if self.classes else {}),
            **({"class_shares": ", ".join(f"{x:.1%}" for x in self.class_shares)} if self.class_shares else {}),
            "config": self.config.to_dict(),
        }


def load_generator(path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu") -> Generator:
    """The generator of a run folder or checkpoint, in eval mode: `Run.open(path).generator(ema=ema)`."""
    return Run.open(path, device=device).generator(ema=ema)


# ----------------------------------------------------------------------------------------------- resuming
def resume_config(out: str | Path, preset: str | None = None, **overrides: Any) -> TrainConfig:
    """The config a resumed run continues with: the run's saved config, updated by the values given.

    `None` values are ignored (unset flags). Giving `steps` clears `epochs` and the reverse, so "train to
    step N" and "train to epoch N" both work. A preset cannot change a run being resumed.
    """
    saved = RunFolder(out).config
    if not saved.exists():
        raise ConfigError(f"{saved} does not exist: {out} holds no run to resume.")
    if preset:
        raise ConfigError("--preset cannot change a run being resumed; give the flags to change instead.")
    values = TrainConfig.load(saved).to_dict()
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    if "steps" in given:
        values["epochs"] = None
    elif "epochs" in given:
        values["steps"] = None
    return TrainConfig.from_dict(values).validate()


__all__ = [
    "BEST_CHECKPOINT",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "METRICS_FILE",
    "SAMPLES_DIR",
    "Run",
    "RunFolder",
    "build_discriminator",
    "build_generator",
    "build_models",
    "load_generator",
    "make_checkpoint",
    "read_checkpoint",
    "read_metrics",
    "resolve",
    "resume_config",
    "step_name",
]
