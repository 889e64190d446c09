"""Class-conditional DCGANs against the unconditional one, each trained for the same wall-clock.

For a labelled data set (Fashion-MNIST by default, or MNIST) at 32x32, `dcgan train` is run once per conditioning
(`concat`, `cbn`, `projection`, `acgan`: `--conditional --conditioning X`) and once unconditionally, from the command line
as a user would, each stopped by SIGINT `--minutes` after its launch (start-up and data loading included; dcgan
finishes its step, saves a checkpoint and exits). Beforehand `dcgan train --dry-run` is run for each, which caches
the machine's execution plan for that shape, so no run spends its budget measuring one.

Each final checkpoint is then scored on `--n` samples (a conditional generator's drawn evenly over its classes)
against the test split, on the project's classifier extractor (`lenet-fashion-mnist`, `lenet-mnist`):

- recognised: the share of samples the classifier reads as the class they were drawn with (conditional only);
- its ceiling: the classifier's accuracy on the real test images, measured here on the same images;
- FID over all samples, and intra-FID (the mean of the per-class FIDs) for the conditional models;
- the classifier's mean confidence, for every model.

    python benchmarks/conditional_quality.py                              # Fashion-MNIST, 20 minutes a model
    python benchmarks/conditional_quality.py --data mnist --minutes 20
    python benchmarks/conditional_quality.py --steps 2 --n 100 --out /tmp/cq   # a smoke run: checks it all works

Writes into `--out`: `results.json` (everything) and each run's folder with its log; prints a markdown table and
the commands that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from budget import run_with_budget

from dcgan.config import CONDITIONINGS
from dcgan.data import load_images, registry
from dcgan.errors import DcganError
from dcgan.metrics import evaluate, load_features
from dcgan.metrics.extractors import class_names
from dcgan.metrics.fit import accuracy
from dcgan.metrics.reference import class_index
from dcgan.metrics.registry import count_name
from dcgan.run import Run, RunFolder

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
#: The models compared: each conditioning, then the unconditional DCGAN ("none").
MODELS = (*CONDITIONINGS[1:], "none")
DATA = {"fashion-mnist": "lenet-fashion-mnist", "mnist": "lenet-mnist"}


@dataclass
class Model:
    """One training run and its scores."""

    conditioning: str
    seed: int
    folder: str
    command: list[str]
    exit_code: int | None = None
    wall_seconds: float = 0.0
    step: int = 0
    checkpoint: str = ""
    values: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "unconditional" if self.conditioning == "none" else self.conditioning


def train_command(args: argparse.Namespace, conditioning: str, seed: int, out: Path) -> list[str]:
    """`python -m dcgan train ...` for one model: the data at 32x32, the conditioning, a step count the budget
    cuts short (or `--steps` exactly), and `--train-args` last."""
    command = [sys.executable, "-m", "dcgan", "train", "--data", args.data, "--image-size", str(args.image_size),
               "--seed", str(seed), "--out", str(out), "--no-progress",
               "--steps", str(args.steps or 10_000_000)]  # fmt: skip
    if args.data_root:
        command += ["--data-root", str(args.data_root)]
    if conditioning != "none":
        command += ["--conditional", "--conditioning", conditioning]
    return command + shlex.split(args.train_args)


def dry_run(command: list[str], out: Path) -> None:
    """`dcgan train --dry-run` of the same command: it measures and caches the plan outside the budget."""
    done = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"error: `{shlex.join([*command, '--dry-run'])}` failed:\n{done.stdout}{done.stderr}")
    (out.parent / f"{out.name}.dry-run.txt").write_text(done.stdout)


def train(args: argparse.Namespace, conditioning: str, seed: int) -> Model:
    """One `dcgan train` run, SIGINT `--minutes` after launch (or `--steps` to the end)."""
    folder = args.out / f"{conditioning}-seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    run = RunFolder(folder / "run")
    command = train_command(args, conditioning, seed, run.root)
    if not args.steps:
        dry_run(command, folder / "run")
    model = Model(conditioning, seed, str(folder), command)
    budget = None if args.steps else args.minutes * 60
    print(f"training {model.label} (seed {seed}): {shlex.join(command)}", flush=True)
    model.exit_code, _, model.wall_seconds = run_with_budget(command, folder / "log.txt", run, budget)
    found = run.list_checkpoints()
    if model.exit_code not in (0, 130) or not found:
        log_text = (folder / "log.txt").read_text(errors="replace")[-3000:]
        raise SystemExit(f"error: {model.label} training failed (exit {model.exit_code}); its log ends:\n{log_text}")
    model.checkpoint = str(found[-1])
    model.step = Run.open(found[-1]).step
    print(f"  {model.label}: {model.step} steps in {model.wall_seconds:.0f} s (exit {model.exit_code})", flush=True)
    return model


def score(model: Model, args: argparse.Namespace, extractor: Any) -> None:
    """FID (and, for a conditional model, intra-FID and recognised) and the classifier's confidence."""
    generator = Run.open(model.checkpoint).generator()
    metrics = "fid,classes" + (",intrafid,recognised" if generator.num_classes else "")
    started = time.perf_counter()
    result = evaluate(
        generator, data=args.data, root=args.data_root, split="test", metrics=metrics, n=args.n,
        features=extractor, seed=args.eval_seed, batch_size=250,
    )  # fmt: skip
    suffix = count_name(args.n)
    model.values = {k.replace(suffix, ""): v for k, v in result.values.items()}
    model.per_class = {k.replace(suffix, ""): v for k, v in result.details.items()}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in model.values.items())
    print(f"  {model.label}: {shown} ({time.perf_counter() - started:.0f} s)", flush=True)


def ceiling(args: argparse.Namespace, extractor: Any) -> float:
    """The classifier's accuracy on the real test images, at the generators' size: what `recognised` can reach."""
    test = load_images(args.data, root=args.data_root, image_size=args.image_size, channels=1, split="test")
    assert test.labels is not None
    return accuracy(extractor, test.images, test.labels)


def print_table(models: list[Model], result: dict[str, Any]) -> None:
    n = f"{result['n']:,}"
    print(f"\n{result['data']} at {result['image_size']}x{result['image_size']}, {result['budget']} a model; "
          f"{n} samples each on {result['features']} against the test split\n")  # fmt: skip
    print("| model | seed | steps | seconds | recognised | ceiling | FID | intra-FID | confidence |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in models:
        v = m.values
        cell = lambda key, fmt: format(v[key], fmt) if key in v else "-"
        print(f"| {m.label} | {m.seed} | {m.step:,} | {m.wall_seconds:.0f} | {cell('recognised', '.2%')} "
              f"| {result['ceiling']:.2%} | {cell('fid', '.2f')} | {cell('intrafid', '.2f')} "
              f"| {cell('confidence', '.3f')} |")  # fmt: skip
    print("\nrecognised: the share of samples the classifier reads as the class they were drawn with; ceiling: its "
          "accuracy on the real test images.")  # fmt: skip
    how = "each ran its steps" if result["steps"] else "each stopped by SIGINT at the budget, after a --dry-run of it"
    print(f"\nCommands ({how}):")
    for m in models:
        print(f"    dcgan {shlex.join(m.command[3:])}")  # `python -m dcgan train ...` as a user types it
    print(f"    python {shlex.join(result['command'])}   # this table")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=list(DATA), default="fashion-mnist")
    p.add_argument("--data-root", type=Path, help="where the data set lives (default: mnist in ../shared/data/mnist)")
    p.add_argument("--image-size", type=int, default=32, help="default 32")
    p.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget of each model (default 20)")
    p.add_argument("--steps", type=int, help="train each model exactly this many steps instead (a smoke run)")
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated conditionings, `none` the unconditional model (default {','.join(MODELS)})")  # fmt: skip
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    p.add_argument("--n", type=int, default=10_000, help="samples per model (default 10,000)")
    p.add_argument("--features", help="classifier extractor name or file (default lenet-<data>)")
    p.add_argument("--fit-missing", action="store_true", help="fit the default extractor first if it is missing")
    p.add_argument("--eval-seed", type=int, default=0, help="the latents' seed for scoring")
    p.add_argument("--train-args", default="", help="more `dcgan train` flags for every model, e.g. '--ema 0.999'")
    p.add_argument("--out", type=Path, help="default runs/conditional_quality/<data>")
    args = p.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if args.data_root is None and args.data == "mnist" and (SHARED_DATA / "mnist").is_dir():
        args.data_root = SHARED_DATA / "mnist"
    args.out = args.out or Path("runs") / "conditional_quality" / args.data
    args.features = args.features or DATA[args.data]
    return args


def load_extractor(args: argparse.Namespace) -> Any:
    """The classifier extractor, fitted first with `--fit-missing`; it must know the data set's classes, which
    is checked before anything trains."""
    extractor = _load_extractor(args)
    entry = registry.find(args.data)
    known = class_names(extractor)
    wanted = entry.classes if entry is not None and entry.classes is not None else ()
    if known is None or None in class_index(tuple(wanted), known):
        raise SystemExit(
            f"error: {extractor.name} is not a classifier of {args.data}'s classes ({', '.join(wanted)}); pass "
            f"--features with one fitted on it (dcgan extractor fit --data {args.data})."
        )
    return extractor


def _load_extractor(args: argparse.Namespace) -> Any:
    try:
        return load_features(args.features, args.data)
    except DcganError as exc:
        fit = [
            "extractor",
            "fit",
            "--data",
            args.data,
            *(["--data-root", str(args.data_root)] if args.data_root else []),
        ]
        if not args.fit_missing or args.features != DATA[args.data]:
            raise SystemExit(f"error: {exc}\nFit it first (dcgan {shlex.join(fit)}), or pass --fit-missing.") from None
        print(f"fitting the extractor: dcgan {shlex.join(fit)}", flush=True)
        subprocess.run([sys.executable, "-m", "dcgan", *fit], check=True)
        return load_features(args.features, args.data)


def main() -> None:
    args = parse_args()
    extractor = load_extractor(args)
    args.out.mkdir(parents=True, exist_ok=True)
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} minutes"
    print(f"{args.data}: {', '.join(args.models)}, {budget} each, seeds {args.seeds}; features {extractor.name}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    models = [train(args, conditioning, seed) for seed in args.seeds for conditioning in args.models]
    top = ceiling(args, extractor)
    print(
        f"scoring on {args.n:,} samples each; the classifier reads {top:.2%} of the real test images right", flush=True
    )
    for model in models:
        score(model, args, extractor)
    result = {
        "data": args.data, "image_size": args.image_size, "budget": budget, "steps": args.steps, "n": args.n,
        "features": extractor.name, "features_meta": dict(extractor.meta), "ceiling": top,
        "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
        "torch": torch.__version__, "cpus": os.cpu_count(),
        "models": [asdict(m) for m in models],
    }  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(models, result)
    print(f"\nwrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
