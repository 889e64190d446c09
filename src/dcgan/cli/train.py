"""`dcgan train`, `dcgan presets`: build a TrainConfig from a preset and flags, then run `dcgan.train`."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from dcgan.cli.common import non_negative_int, positive_float, positive_int
from dcgan.config import (
    BALANCE_BYS,
    BALANCE_READS,
    CONDITIONINGS,
    EVAL_METRICS,
    PRECISIONS,
    PRESETS,
    PRIORS,
    TrainConfig,
    build_config,
)
from dcgan.errors import ConfigError
from dcgan.run import RunFolder, resume_config

DEFAULT_PRESET = "digits32"

#: flag -> config field, for every flag that sets a config value (all default to None = "not given").
CONFIG_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--data": ("data", {"help": "data set name or folder of images (default: the embedded 5,000 MNIST digits)"}),
    "--data-root": (
        "data_root",
        {"metavar": "DIR", "help": "where standard data sets live (default $DCGAN_DATA, ./data)"},
    ),
    "--image-size": ("image_size", {"type": positive_int, "help": "power of two, 16 to 256 (paper: 64)"}),
    "--channels": ("channels", {"type": int, "choices": [1, 3], "help": "1 or 3 (default: the data's own)"}),
    "--nz": ("nz", {"type": positive_int, "help": "latent size (paper: 100)"}),
    "--ngf": ("ngf", {"type": positive_int, "help": "generator width (default 64)"}),
    "--ndf": (
        "ndf",
        {"type": positive_int, "help": "discriminator width (default: half of --ngf at 64x64 and larger, --ngf below)"},
    ),
    "--prior": ("prior", {"choices": PRIORS, "help": "latent prior (paper: uniform)"}),
    "--conditioning": (
        "conditioning",
        {"choices": CONDITIONINGS[1:], "help": "with --conditional: how G and D take the label (default acgan)"},
    ),
    "--labels-from-name": (
        "labels_from_name",
        {"metavar": "FIELD", "help": "label a folder by a field of UTKFace-style file names: gender, race or age"},
    ),
    "--batch-size": ("batch_size", {"type": positive_int, "help": "global batch size (paper: 128)"}),
    "--lr": ("lr", {"type": positive_float, "help": "Adam learning rate (paper: 2e-4)"}),
    "--beta1": ("beta1", {"type": float, "help": "Adam beta1 (paper: 0.5)"}),
    "--beta2": ("beta2", {"type": float, "help": "Adam beta2 (default 0.999)"}),
    "--steps": ("steps", {"type": positive_int, "help": "total training steps of the run (with --resume too)"}),
    "--epochs": ("epochs", {"type": positive_int, "help": "total epochs, if --steps is not given"}),
    "--seed": ("seed", {"type": non_negative_int, "help": "seed for weights, data order and noise"}),
    "--precision": (
        "precision",
        {"choices": PRECISIONS, "help": "auto (default): the fastest measured on this machine (see `dcgan tune`)"},
    ),
    "--log-every": ("log_every", {"type": positive_int, "metavar": "N", "help": "steps between log lines"}),
    "--sample-every": ("sample_every", {"type": positive_int, "metavar": "N", "help": "steps between sample grids"}),
    "--checkpoint-every": (
        "checkpoint_every",
        {"type": positive_int, "metavar": "N", "help": "steps between checkpoints"},
    ),
    "--keep-checkpoints": (
        "keep_checkpoints",
        {"type": positive_int, "metavar": "K", "help": "newest K kept (default 3)"},
    ),
    "--snapshots": (
        "snapshots",
        {
            "type": positive_int,
            "metavar": "K",
            "help": "sampling draws from a mixture of G's newest K snapshots, "
            "taken in the run's last quarter (default 4; 1: the checkpoint's G alone)",
        },
    ),
    "--snapshot-every": (
        "snapshot_every",
        {"type": positive_int, "metavar": "N", "help": "steps between G's snapshots (default 200)"},
    ),
    "--ema": ("ema", {"type": float, "metavar": "DECAY", "help": "keep an EMA copy of G (e.g. 0.999) for sampling"}),
    "--eval-every": (
        "eval_every",
        {"type": non_negative_int, "metavar": "N", "help": "steps between quality evaluations; keeps best.pt"},
    ),
    "--eval-metric": (
        "eval_metric",
        {"choices": EVAL_METRICS, "help": "the metric --eval-every tracks (default fid)"},
    ),
    "--eval-n": ("eval_n", {"type": positive_int, "help": "samples per evaluation (default 2000)"}),
    "--eval-features": (
        "eval_features",
        {"metavar": "NAME|PATH", "help": "feature extractor (default: the data set's own)"},
    ),
    "--balance-groups": (
        "balance_groups",
        {
            "metavar": "EXTRACTOR,...",
            "help": "every --balance-every steps, a classifier of groups (e.g. cnn-utkface64-race) reads G's fakes "
            "and the real images of the groups G draws too rarely are drawn more often; several, comma-separated "
            "(cnn-utkface64-race,cnn-utkface64-gender), each balance their own groups, and each image's draw weight "
            "is the product of its groups' weights",
        },
    ),
    "--balance-every": (
        "balance_every",
        {"type": positive_int, "metavar": "N", "help": "steps between --balance-groups' updates (default 400)"},
    ),
    "--balance-read": (
        "balance_read",
        {
            "choices": BALANCE_READS,
            "help": "what --balance-groups reads: the fake batch G draws for D every 8th step (fakes, the default) "
            "or samples of G's sampling copy, what the snapshot mixture is made of, every --snapshot-every steps",
        },
    ),
    "--balance-by": (
        "balance_by",
        {
            "choices": BALANCE_BYS,
            "help": "whose reading --balance-groups counts: the classifier's (ensemble, the default: an ensemble's "
            "mean) or, for an ensemble, each group's share as the member that reads it lowest (lowest-member), or the "
            "lowest of the members and their mean (lowest-reader)",
        },
    ),
    "--max-nan-retries": ("max_nan_retries", {"type": non_negative_int, "help": "rollbacks on NaN before giving up"}),
}
SWITCHES = {
    "--download": ("download", "fetch a missing standard data set with torchvision (needs internet)"),
    "--compile": ("compile", "torch.compile G and D (minutes of warm-up; the plan's other switches are timed eager)"),
    "--deterministic": ("deterministic", "use deterministic algorithms only"),
    "--sync-batchnorm": ("sync_batchnorm", "SyncBatchNorm across processes under torchrun"),
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a DCGAN",
        description="Train a DCGAN. The weight update is the paper's; at 64x64 and larger D is half G's width unless "
        "--ndf or --paper says otherwise.",
    )
    p.add_argument("--preset", help=f"a named setup (see `dcgan presets`; default {DEFAULT_PRESET} without --data)")
    for flag, (_, kwargs) in CONFIG_FLAGS.items():
        p.add_argument(flag, default=None, **kwargs)
    for flag, (_, text) in SWITCHES.items():
        p.add_argument(flag, action="store_true", default=None, help=text)
    p.add_argument("--paper", action="store_true",
                   help="the paper's setup as pytorch/examples builds it: D as wide as G (unless --ndf is given), "
                        "no mirrored images and no augmentation (unless --flip or --augment is given)")  # fmt: skip
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="mirror a random half of the real images left-right each epoch (faces, rooms; not digits)")  # fmt: skip
    p.add_argument("--augment", metavar="POLICY",
                   help="differentiable augmentation of D's real and fake images (DiffAugment): a comma-separated "
                        "choice of color, translation, cutout, or none")  # fmt: skip
    p.add_argument("--class-weights", metavar="CLASS=WEIGHT,...",
                   help="draw the real images of the named classes this many times as often as an image of a class "
                        "not named (needs labels, e.g. --labels-from-name race --class-weights black=3)")  # fmt: skip
    p.add_argument("--conditional", action=argparse.BooleanOptionalAction, default=None,
                   help="class-conditional G and D: the data's labels choose what G draws (`dcgan sample --class`)")  # fmt: skip
    add_plan_switches(p)
    p.add_argument("--out", type=Path, help="run folder (default runs/<preset or data name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: the GPU if there is one)")
    p.add_argument("--ddp-timeout", type=positive_float, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for a stalled one before stopping (default 1800)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="check the flags and data, time one step on random images, print the plan; write nothing")  # fmt: skip
    p.set_defaults(func=run)

    p = sub.add_parser("presets", help="list the named setups")
    p.set_defaults(func=list_presets)


def add_plan_switches(p: argparse.ArgumentParser) -> None:
    """--[no-]channels-last and --[no-]gemm-conv: each forces its switch of the execution plan (`dcgan.plan`);
    without them the run uses what is measured fastest on the machine."""
    for name, on, off in [
        ("channels-last", "channels_last memory layout", "NCHW memory layout"),
        ("gemm-conv", "DCGAN's layers as matrix products on CPUs", "torch's convolution kernels for every layer"),
    ]:
        dest = name.replace("-", "_")
        p.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=f"force {on}")
        p.add_argument(f"--no-{name}", dest=dest, action="store_false", default=None, help=f"force {off}")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config the flags describe; with --resume, the saved config of --out updated by the flags given
    (`dcgan.resume_config`, as from Python)."""
    given = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _) in CONFIG_FLAGS.items()}
    given.update({field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _) in SWITCHES.items()})
    given["channels_last"] = args.channels_last
    given["gemm_conv"] = args.gemm_conv
    given["conditional"] = args.conditional
    given["flip"] = args.flip
    given["augment"] = args.augment
    given["class_weights"] = args.class_weights
    if args.resume and args.out and RunFolder(args.out).config.exists():
        if args.paper:
            raise ConfigError("--paper sets the widths a run starts with; a resumed run keeps its own.")
        config = resume_config(args.out, args.preset, **given)
    else:
        preset = args.preset or (DEFAULT_PRESET if args.data is None else None)
        config = build_config(preset, **given)
        if args.paper:  # D as wide as G and no mirrored images, unless the flags say otherwise
            paper = {
                "ndf": config.ngf if args.ndf is None else args.ndf, "flip": bool(args.flip),
                "augment": args.augment or "",
            }  # fmt: skip
            config = build_config(preset, **{**given, **paper})
    if args.conditioning is not None and not config.conditional:
        raise ConfigError("--conditioning says how a class-conditional model takes its label; add --conditional.")
    return config


def default_run_name(config: TrainConfig) -> str:
    """runs/<name>: the preset, else the data set's last path part, reduced to safe characters (no '..')."""
    raw = config.preset or Path(config.data.replace(":", "-").rstrip("/")).name
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-")
    return name or "run"


def run(args: argparse.Namespace) -> int:
    from dcgan.train import dry_run, train

    config = config_from_args(args)
    out = args.out or Path("runs") / default_run_name(config)
    if args.dry_run:
        print(dry_run(config, out, resume=args.resume, device=args.device))
        return 0
    result = train(
        config, out, resume=args.resume, device=args.device, progress=not args.no_progress,
        ddp_timeout=args.ddp_timeout,
    )  # fmt: skip
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the run
        return 0
    print(f"Done: {result.step} steps. Samples in {RunFolder(result.out).samples}, checkpoint {result.checkpoint}.")
    print(f"Draw samples with: dcgan sample {result.out} --n 64 --out {result.out / 'generated'}")
    return 0


def list_presets(args: argparse.Namespace) -> int:
    width = max(map(len, PRESETS))
    for name, preset in PRESETS.items():
        marker = " (default)" if name == DEFAULT_PRESET else ""
        print(f"{name:<{width}}  {preset.description}{marker}")
        print(f"{'':<{width}}  {' '.join(f'{k}={v}' for k, v in preset.values.items())}")
    return 0
