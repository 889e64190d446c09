"""Sample quality per wall-clock second: dcgan's default against a tutorial-style DCGAN, same data, same budget.

Both systems are run from the command line as a user would run them, one after the other, and timed from the
moment their process is launched (start-up, data decoding and any execution-plan choice included):

- **dcgan**: `python -m dcgan train` with its defaults (`--data FOLDER --image-size 64` for the folders; no
  flags at all for `digits`, the default job), plus `--seed`, `--out`, `--no-progress` and a checkpoint every
  K steps (K: about one `--interval` at the step time `dcgan train --dry-run` measures beforehand). At the
  budget it gets SIGINT, on which dcgan finishes its step, saves a checkpoint and exits. Each run gets an empty
  data cache (the folder is decoded inside the budget) holding only the machine's cached execution plans, which
  the dry run fills when the shape has none (so a plan measurement, once per machine, is not inside the budget).
- **reference**: `benchmarks/reference_dcgan.py`, pytorch/examples' `dcgan/main.py` (its networks, loop and
  defaults: ImageFolder, 2 workers, batch 64, 3 channels) at batch 64 and 128, which saves G every `--interval`
  seconds and stops after the step that ends past the budget.

Every saved G (dcgan's checkpoints, timed by their files' mtimes; the reference's snapshots) is then scored:
FID (and, for a classifier extractor, the `classes` confidence and entropy) of `--n` samples against the data
set's test split on the project's extractor. The reference's 3-channel 64x64 samples are first brought to the
dcgan run's channels and size (grayscale, antialiased resize), so both sides are compared with the same real
features. The budget is, by default, the wall-clock the reference needs for one epoch at batch 64 (measured by
its first run) for `fashion` and `faces`, and the length of dcgan's whole default run for `digits`.

    python benchmarks/quality_vs_time.py --data fashion                  # the issue's side by side (hours)
    python benchmarks/quality_vs_time.py --data digits --seeds 0 --n 1000
    python benchmarks/quality_vs_time.py --data faces --features cnn-utkface64-gender
    python benchmarks/quality_vs_time.py --quick --out /tmp/qvt          # a minute: checks that it all works

Writes into `--out`: `results.json` (everything), `fid_vs_seconds.png`, and each run's folder and log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from budget import run_with_budget

from dcgan.config import TrainConfig
from dcgan.data import load_images
from dcgan.data.cache import cache_dir
from dcgan.errors import DcganError
from dcgan.metrics import evaluate, evaluate_images, load_features
from dcgan.metrics.extractors import class_names
from dcgan.metrics.registry import count_name
from dcgan.run import Run, RunFolder
from dcgan.sample import to_uint8

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(BENCHMARKS))
import reference_dcgan  # noqa: E402  (a script beside this one, not a package)


@dataclass
class Setup:
    """One data set of the benchmark: what each system trains on and what the samples are measured against."""

    name: str
    folder: Path  # the images the reference reads (dcgan reads the same files, or `digits`' embedded copy)
    dcgan_args: list[str]  # dcgan train's flags: its defaults for this data
    eval_data: str
    eval_root: str | None
    eval_split: str
    features: str
    fit_command: list[str] | None  # how to make a missing extractor; None: FID is skipped without it
    budget: str  # "reference-epoch" or "dcgan-run"
    note: str = ""


@dataclass
class Point:
    seconds: float
    step: int
    images: int
    file: str
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class RunRecord:
    system: str  # "dcgan" or "reference"
    batch: int
    seed: int
    folder: str
    command: list[str]
    load_at_launch: float
    wall_seconds: float = 0.0
    exit_code: int | None = None
    plan: str = ""
    width: int = 64  # ngf = ndf
    points: list[Point] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.system} b{self.batch}"


# ------------------------------------------------------------------------------------------------ data
def png_folder(images: torch.Tensor, folder: Path) -> Path:
    """Write uint8 (N, 1, H, W) images as numbered PNGs into `folder`, once: an existing complete folder is kept."""
    from PIL import Image

    if folder.is_dir() and len(list(folder.glob("*.png"))) == len(images):
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy(), mode="L").save(tmp / f"{i:05d}.png")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def setup_for(args: argparse.Namespace) -> Setup:
    cache = Path(args.data_cache)
    if args.data == "fashion":
        count = args.images or 20_000
        train = load_images("fashion-mnist", image_size=28, channels=1, split="train")
        folder = png_folder(train.images[:count], cache / f"fashion-mnist-{count}")
        return Setup(
            "fashion", folder, ["--data", str(folder), "--image-size", "64"], "fashion-mnist", None, "test",
            args.features or "lenet-fashion-mnist", ["extractor", "fit", "--data", "fashion-mnist"], "reference-epoch",
            f"the first {count:,} Fashion-MNIST training images as 28x28 PNGs",
        )  # fmt: skip
    if args.data == "digits":
        digits = load_images("mnist5k", image_size=28, channels=1)
        count = args.images or len(digits)
        folder = png_folder(digits.images[:count], cache / f"mnist5k-{count}")
        root = str(args.mnist_root)
        return Setup(
            "digits", folder, [], "mnist", root, "test", args.features or "lenet-mnist",
            ["extractor", "fit", "--data", "mnist", "--data-root", root], "dcgan-run",
            "dcgan's embedded 5,000 digits (`dcgan train` with no flags); the reference reads them as 28x28 PNGs",
        )  # fmt: skip
    folder = Path(args.faces_folder)
    if not folder.is_dir():
        raise SystemExit(f"error: no faces folder {folder}; pass --faces-folder.")
    return Setup(
        "faces", folder, ["--data", str(folder), "--image-size", "64"], str(folder), None, "train",
        args.features or "cnn-utkface64-gender", None, "reference-epoch",
        f"{folder} (a folder has no test split: FID is against its own images)",
    )  # fmt: skip


def load_extractor(setup: Setup, fit_missing: bool) -> Any:
    """The extractor, fitted first with `--fit-missing`; None (FID skipped) where it is missing and unfittable."""
    try:
        return load_features(setup.features, setup.eval_data)
    except DcganError as exc:
        if setup.fit_command is None:
            print(f"note: FID skipped: {exc}", flush=True)
            return None
        command = " ".join(["dcgan", *setup.fit_command])
        if not fit_missing:
            raise SystemExit(f"error: {exc}\nFit it first ({command}), or pass --fit-missing.") from None
    print(f"fitting the extractor: {command}", flush=True)
    subprocess.run([sys.executable, "-m", "dcgan", *setup.fit_command], check=True)
    return load_features(setup.features, setup.eval_data)


# ------------------------------------------------------------------------------------------------ the runs
def launch(command: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], float]:
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    return process, started


def reference_run(
    setup: Setup, out: Path, batch: int, seed: int, interval: float, budget: float | None, width: int | None
) -> RunRecord:
    """One run of reference_dcgan.py; `budget` None: exactly one epoch (the measurement of the default budget)."""
    folder = out / f"reference-b{batch}-seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    command = [
        sys.executable, str(BENCHMARKS / "reference_dcgan.py"), "--dataroot", str(setup.folder), "--outf",
        str(folder), "--batchSize", str(batch), "--manualSeed", str(seed), "--snapshot-every", str(interval),
        *(["--niter", "1"] if budget is None else ["--time-limit", str(budget)]),
        *(["--ngf", str(width), "--ndf", str(width)] if width else []),
    ]  # fmt: skip
    record = RunRecord("reference", batch, seed, str(folder), command, os.getloadavg()[0], width=width or 64)
    process, started = launch([*command, "--start-time", repr(time.time())], folder / "log.txt")
    record.exit_code = process.wait()
    record.wall_seconds = time.time() - started
    index = folder / "snapshots" / "index.jsonl"
    for line in index.read_text().splitlines() if index.exists() else []:
        entry = json.loads(line)
        file = folder / "snapshots" / entry["file"]
        record.points.append(Point(file.stat().st_mtime - started, entry["step"], entry["images"], str(file)))
    return record


def dcgan_width(args: argparse.Namespace) -> int | None:
    """dcgan's ngf = ndf: `--dcgan-width`, else `--width` (both systems), else None (its default)."""
    return args.dcgan_width or args.width  # type: ignore[no-any-return]


def width_flags(width: int | None) -> list[str]:
    return ["--ngf", str(width), "--ndf", str(width)] if width else []


def dcgan_step_seconds(setup: Setup, out: Path, width: int | None) -> tuple[float, str]:
    """`dcgan train --dry-run`'s seconds per step for this data (it also caches the execution plan it picks)."""
    command = [sys.executable, "-m", "dcgan", "train", *setup.dcgan_args, *width_flags(width),
               "--out", str(out / "dry-run"), "--dry-run"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = re.search(r"\(([\d.]+) s a step", done.stdout)
    if done.returncode or not found:
        raise SystemExit(f"error: `{' '.join(command)}` failed:\n{done.stdout}{done.stderr}")
    plan = next((line.split("plan", 1)[1].strip() for line in done.stdout.splitlines() if "  plan " in line), "")
    return float(found.group(1)), plan


#: dcgan's runs keep every snapshot of G (which changes nothing in training), so that each checkpoint, not only the
#: last, is scored as `dcgan evaluate` would have scored it when it was the newest: mixed with the default number.
KEEP_SNAPSHOTS = 1_000_000
DEFAULT_SNAPSHOTS = TrainConfig().snapshots


def dcgan_run(setup: Setup, out: Path, seed: int, every: int, budget: float | None, width: int | None) -> RunRecord:
    """One `dcgan train` run, SIGINT at `budget` seconds after launch (None: let it finish)."""
    folder = out / f"dcgan-seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    run = RunFolder(folder / "run")
    command = [
        sys.executable, "-m", "dcgan", "train", *setup.dcgan_args, *width_flags(width), "--seed", str(seed),
        "--out", str(run.root),
        "--no-progress", "--checkpoint-every", str(every), "--keep-checkpoints", "1000000",
        "--snapshots", str(KEEP_SNAPSHOTS),
    ]  # fmt: skip
    # An empty data cache, so decoding the folder counts, with the machine's execution plans (not data) in it.
    env = {**os.environ, "DCGAN_CACHE": str(folder / "cache")}
    (folder / "cache").mkdir(parents=True)
    if (cache_dir() / "plans.json").exists():
        shutil.copy(cache_dir() / "plans.json", folder / "cache" / "plans.json")
    record = RunRecord("dcgan", 128, seed, str(folder), command, os.getloadavg()[0], width=width or 64)
    record.exit_code, started, record.wall_seconds = run_with_budget(command, folder / "log.txt", run, budget, env)
    log = (folder / "log.txt").read_text(errors="replace")
    record.plan = next((line for line in log.splitlines() if line.startswith("Execution plan")), "")
    batch = json.loads(run.config.read_text())["batch_size"] if run.config.exists() else 128
    record.batch = batch
    for file in run.list_checkpoints():
        step = int(re.findall(r"\d+", file.name)[0])
        record.points.append(Point(file.stat().st_mtime - started, step, step * batch, str(file)))
    return record


# ------------------------------------------------------------------------------------------------ scoring
def reference_samples(file: str, n: int, seed: int, batchnorm: str, width: int = 64) -> torch.Tensor:
    """n uint8 samples of a reference snapshot: z ~ N(0, 1) of `seed`, in batches of 64 as main.py draws its
    sample sheets, batchnorm in training mode (main.py's sheets) or eval mode (its running averages)."""
    g = reference_dcgan.Generator(ngf=width)
    g.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    g.train(batchnorm == "train")
    z = torch.randn(n, 100, 1, 1, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return torch.cat([to_uint8(g(part)) for part in z.split(64)])


def to_shape(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """uint8 images -> `channels` (ITU-R 601 luma, as PIL's convert("L")) and `size` (antialiased bilinear)."""
    if images.shape[1] == channels and images.shape[-1] == size:
        return images
    x = images.float()
    if channels == 1 and x.shape[1] == 3:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def score(record: RunRecord, setup: Setup, extractor: Any, args: argparse.Namespace, shape: tuple[int, int]) -> None:
    """Fill each point's values (fid, confidence, entropy) in place."""
    metrics = "fid,classes" if class_names(extractor) is not None else "fid"
    common = dict(data=setup.eval_data, root=setup.eval_root, split=setup.eval_split, features=extractor,
                  metrics=metrics, seed=args.eval_seed)  # fmt: skip
    points = record.points[-1:] if args.final_only else record.points
    for point in points:
        started = time.perf_counter()
        if record.system == "dcgan":
            # what `dcgan evaluate` draws at that checkpoint: its G mixed with the default number of snapshots
            result = evaluate(Run.open(point.file).sampler(snapshots=DEFAULT_SNAPSHOTS), n=args.n, **common)
        else:
            images = reference_samples(point.file, args.n, args.eval_seed, args.reference_batchnorm, record.width)
            result = evaluate_images(to_shape(images, *shape), **common)
        suffix = count_name(args.n)  # fid10k -> fid
        point.values = {k.removesuffix(suffix): v for k, v in result.values.items() if k.endswith(suffix)}
        print(f"  {record.label} seed {record.seed} step {point.step} ({point.seconds:.0f} s): "
              f"{_values(point.values)} ({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip


def _values(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" if k != "fid" else f"{k} {v:.1f}" for k, v in values.items()) or "not scored"


def prune(record: RunRecord) -> None:
    """Delete a dcgan run's intermediate checkpoints (about 90 MB each at 64x64) once scored; keep the last."""
    for point in record.points[:-1]:
        Path(point.file).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ reporting
def machine_line() -> str:
    from dcgan.plan import machine

    facts = machine(torch.device("cpu"))
    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return (f"{facts['cpu']}, {facts['cpus']} cores ({facts['usable_cpus']} usable), AMX {'yes' if amx else 'no'}, "
            f"torch {torch.__version__}")  # fmt: skip


def summary(runs: list[RunRecord]) -> dict[str, Any]:
    """Final points by system and batch (mean and spread over seeds), and dcgan's FID over each reference's."""
    groups: dict[str, list[Point]] = {}
    for record in runs:
        if record.points:
            groups.setdefault(record.label, []).append(record.points[-1])
    out: dict[str, Any] = {}
    for label, finals in groups.items():
        fids = [p.values["fid"] for p in finals if "fid" in p.values]
        out[label] = {
            "seeds": len(finals), "seconds": statistics.mean(p.seconds for p in finals),
            "steps": statistics.mean(p.step for p in finals), "images": statistics.mean(p.images for p in finals),
            "fid": statistics.mean(fids) if fids else None,
            "fid_std": statistics.stdev(fids) if len(fids) > 1 else None,
        }  # fmt: skip
    dcgan = next((v["fid"] for k, v in out.items() if k.startswith("dcgan")), None)
    ratios = {k: dcgan / v["fid"] for k, v in out.items() if k.startswith("reference") and dcgan and v["fid"]}
    return {"final": out, "dcgan_fid_over": ratios}


def print_table(runs: list[RunRecord], result: dict[str, Any]) -> None:
    print("\n| system | batch | seed | seconds | steps | images seen | FID | confidence | entropy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for record in runs:
        for p in record.points:
            fid = f"{p.values['fid']:.1f}" if "fid" in p.values else "-"
            conf, entropy = (f"{p.values[k]:.3f}" if k in p.values else "-" for k in ("confidence", "entropy"))
            print(f"| {record.system} | {record.batch} | {record.seed} | {p.seconds:.0f} | {p.step} | {p.images:,} "
                  f"| {fid} | {conf} | {entropy} |")  # fmt: skip
    print("\nAt the final point (mean over seeds):")
    for label, s in result["summary"]["final"].items():
        spread = f" ± {s['fid_std']:.1f}" if s["fid_std"] is not None else ""
        fid = f"FID {s['fid']:.1f}{spread}" if s["fid"] is not None else "FID not measured"
        print(f"  {label}: {s['seconds']:.0f} s, {s['steps']:.0f} steps, {s['images']:,.0f} images, {fid} "
              f"({s['seeds']} seed{'s' if s['seeds'] > 1 else ''})")  # fmt: skip
    for label, ratio in result["summary"]["dcgan_fid_over"].items():
        print(f"  dcgan FID / {label} FID: {ratio:.2f}x")


def plot(runs: list[RunRecord], result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours: dict[str, str] = {}
    for record in runs:
        points = [p for p in record.points if "fid" in p.values]
        first = record.label not in colours
        colour = colours.setdefault(record.label, f"C{len(colours)}")
        xs, ys = [p.seconds for p in points], [p.values["fid"] for p in points]
        ax.plot(xs, ys, "o-", color=colour, alpha=0.8, label=record.label if first else None)
    ax.axvline(result["budget_seconds"], color="grey", linestyle="--", linewidth=1, label="budget")
    ax.set(xlabel="seconds since launch", ylabel=f"FID ({result['n']:,} samples, {result['features']})",
           title=f"{result['data']}: FID against wall-clock\n{result['machine']}")  # fmt: skip
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ main
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=["fashion", "faces", "digits"], default="fashion")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--budget", default="auto",
                   help="seconds, `reference-epoch` (the reference's one epoch at batch 64, measured by its first "
                        "run), `dcgan-run` (dcgan's whole default run) or `auto` (digits: dcgan-run; else "
                        "reference-epoch)")  # fmt: skip
    p.add_argument("--interval", type=float, default=60.0, help="seconds between saved points (default 60)")
    p.add_argument("--n", type=int, default=10_000, help="samples per FID (default 10,000)")
    p.add_argument("--reference-batches", default="64,128", help="the reference's batch sizes (default 64,128)")
    p.add_argument("--reference-batchnorm", choices=["train", "eval"], default="train",
                   help="the reference's batchnorm when sampling: train (main.py's sample sheets) or eval")  # fmt: skip
    p.add_argument("--features", help="extractor name or file (default: the data set's)")
    p.add_argument("--fit-missing", action="store_true", help="fit a missing digits/fashion extractor first")
    p.add_argument("--final-only", action="store_true", help="score only each run's final point")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep dcgan's intermediate checkpoints")
    p.add_argument("--eval-seed", type=int, default=0, help="the latents' seed for scoring")
    p.add_argument("--images", type=int, help="use only the first N training images (fashion, digits)")
    p.add_argument("--out", type=Path, help="default runs/quality_vs_time/<data>")
    p.add_argument("--data-cache", default=str(cache_dir() / "benchmarks"), help="where the PNG folders are written")
    p.add_argument("--faces-folder", default=str(SHARED_DATA / "faces" / "utkface64"))
    p.add_argument("--mnist-root", default=str(SHARED_DATA / "mnist"), help="MNIST for digits' test split")
    p.add_argument("--width", type=int, help="ngf = ndf for both systems (default: their own, 64)")
    p.add_argument("--dcgan-width", type=int,
                   help="ngf = ndf for dcgan only, the reference at its own 64: a candidate default measured")  # fmt: skip
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 256 images, one seed, batch 64 only, width 16, 3 s points, 256 samples")  # fmt: skip
    args = p.parse_args()
    if args.quick:
        args.seeds, args.reference_batches, args.interval = args.seeds.split(",")[0], "64", 3.0
        args.images, args.n, args.width = args.images or 256, min(args.n, 256), args.width or 16
        args.budget = "reference-epoch" if args.budget == "auto" else args.budget
    if args.budget not in ("auto", "reference-epoch", "dcgan-run"):
        try:
            float(args.budget)
        except ValueError:
            p.error(f"--budget must be seconds, reference-epoch, dcgan-run or auto, got {args.budget!r}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.reference_batches = [int(b) for b in args.reference_batches.split(",")]
    args.out = args.out or Path("runs") / "quality_vs_time" / args.data
    return args


def run_all(setup: Setup, args: argparse.Namespace, every: int, budget_kind: str) -> tuple[list[RunRecord], float]:
    """Every training run, the one that fixes the budget first; returns them and the budget in seconds."""
    runs: list[RunRecord] = []

    def finish(record: RunRecord) -> None:
        runs.append(record)
        last = record.points[-1] if record.points else None
        print(f"{record.label} seed {record.seed}: exit {record.exit_code}, {record.wall_seconds:.0f} s, "
              f"{last.step if last else 0} steps, {len(record.points)} points (log: {record.folder}/log.txt)",
              flush=True)  # fmt: skip
        if record.exit_code not in (0, 130) or not record.points:
            print(f"warning: {record.label} seed {record.seed} failed; see its log", flush=True)

    width = dcgan_width(args)
    todo = [(system, batch, seed) for seed in args.seeds for system, batch in
            [*(("reference", b) for b in args.reference_batches), ("dcgan", 128)]]  # fmt: skip
    if budget_kind in ("reference-epoch", "dcgan-run"):
        system, batch = ("reference", 64) if budget_kind == "reference-epoch" else ("dcgan", 128)
        if (system, batch, args.seeds[0]) not in todo:
            raise SystemExit(f"error: --budget {budget_kind} needs a {system} run at batch {batch}.")
        todo.remove((system, batch, args.seeds[0]))
        first = reference_run(setup, args.out, 64, args.seeds[0], args.interval, None, args.width) \
            if system == "reference" else dcgan_run(setup, args.out, args.seeds[0], every, None, width)  # fmt: skip
        finish(first)
        if not first.points or first.exit_code not in (0, 130):
            raise SystemExit(f"error: the run that measures the budget failed; see {first.folder}/log.txt")
        budget = first.wall_seconds
        print(f"budget: {budget:.0f} s ({budget_kind}: the wall-clock of that first run)", flush=True)
    else:
        budget = float(budget_kind)
    for system, batch, seed in todo:
        if system == "reference":
            finish(reference_run(setup, args.out, batch, seed, args.interval, budget, args.width))
        else:
            finish(dcgan_run(setup, args.out, seed, every, budget, width))
    return runs, budget


def main() -> None:
    args = parse_args()
    setup = setup_for(args)
    extractor = load_extractor(setup, args.fit_missing)
    budget_kind = setup.budget if args.budget == "auto" else args.budget
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine_line()}; load average {os.getloadavg()[0]:.1f}")
    print(f"data: {setup.name}: {setup.note} ({setup.folder})", flush=True)
    if args.quick:
        every, dry_plan = 1, "not measured (--quick)"
    else:
        width = dcgan_width(args)
        step_s, dry_plan = dcgan_step_seconds(setup, out, width)
        every = max(1, round(args.interval / step_s))
        print(f"dcgan: {step_s:.2f} s a step in its dry run ({dry_plan}); a checkpoint every {every} steps", flush=True)
    if args.dcgan_width:
        print(f"dcgan runs at ngf = ndf = {args.dcgan_width} (--dcgan-width); the reference at its own", flush=True)

    runs, budget = run_all(setup, args, every, budget_kind)

    if extractor is not None:
        dcgan_final = next((r.points[-1].file for r in runs if r.system == "dcgan" and r.points), None)
        if dcgan_final is None:
            raise SystemExit("error: no dcgan run saved a checkpoint; see the logs in " + str(out))
        g = Run.open(dcgan_final).generator()
        shape = (g.channels, g.image_size)  # what the reference's samples are brought to
        print(f"scoring {sum(len(r.points) for r in runs)} points on {extractor.name}, {args.n:,} samples each",
              flush=True)  # fmt: skip
        for record in runs:
            score(record, setup, extractor, args, shape)
            if record.system == "dcgan" and not args.keep_checkpoints:
                prune(record)
    result = {
        "machine": machine_line(), "data": setup.name, "data_note": setup.note, "folder": str(setup.folder),
        "budget_seconds": budget, "budget_kind": budget_kind, "interval": args.interval, "n": args.n,
        "features": extractor.name if extractor is not None else None,
        "features_meta": dict(extractor.meta) if extractor is not None else None,
        "reference_split": f"{setup.eval_data} {setup.eval_split}", "reference_batchnorm": args.reference_batchnorm,
        "dcgan_checkpoint_every": every, "dcgan_dry_run_plan": dry_plan,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": [asdict(r) for r in runs], "summary": summary(runs),
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nmachine: {result['machine']}")
    fid_on = f"FID of {args.n:,} samples on {result['features']}" if extractor is not None else "no FID"
    print(f"{setup.name}: budget {budget:.0f} s ({budget_kind}); {fid_on} against {result['reference_split']}")
    print_table(runs, result)
    if extractor is not None:
        plot(runs, result, out / "fid_vs_seconds.png")
    print(f"\nwrote {out / 'results.json'}" + ("" if extractor is None else f" and {out / 'fid_vs_seconds.png'}"))


if __name__ == "__main__":
    main()
