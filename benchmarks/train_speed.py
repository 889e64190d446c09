"""Training speed: images/s of dcgan's training step against a tutorial-style fp32 loop, side by side.

Each configuration runs in its own fresh process (so peak memory is its own), on the same synthetic uint8
data, one after another in this run; ratios to the in-run baseline are the figures to quote, since absolute
numbers move with whatever else the machine is doing. Also printed: the machine's features (CPU model, AMX,
AVX-512-bf16, cores), the execution plan `--precision auto` chooses here (the selection runs in this benchmark,
`dcgan.plan`) and its row, FLOPs per image (counted with torch.utils.flop_counter), the matmul peak measured in
this run and the limit it implies for the auto plan's precision, sampling throughput and the data pipeline's own
rate.

A configuration whose first step runs over `--max-slowdown` (5) times the fastest step seen so far is stopped
there and not timed again; its row gives the bound ("< 18") and says so: bf16 on a CPU that emulates it runs 60x
slower than fp32 at 64x64 on AVX2 (a 110 s step), and timing it in full would take most of the benchmark's time.

With `--end-to-end FOLDER` it instead times whole runs from the command line, side by side: one epoch of
`dcgan train --data FOLDER --image-size 64 --epochs 1` (its default plan; start-up, decoding and the final
checkpoint included), first with an empty decode cache and then again with the folder cached, against
`benchmarks/reference_dcgan.py --dataroot FOLDER --niter 1` (pytorch/examples' dcgan/main.py at its defaults:
batch 64, 2 loader workers), each from its launch to its last checkpoint file. The cold run gets a fresh
`DCGAN_CACHE` holding only this machine's cached plans (`plans.json`, `inference.json`), so the folder is decoded
inside the time but no plan is measured there that a user's second run would not pay; the warm run reuses that
cache, as a user's second run would. The folder's files are read once beforehand, so that neither side pays for
the OS's first read of them.

    python benchmarks/train_speed.py                 # the paper's 64x64 setup and 32x32, every option
    python benchmarks/train_speed.py --sizes 64 --steps 10 --compile
    python benchmarks/train_speed.py --end-to-end ../shared/data/faces/utkface64
    python benchmarks/train_speed.py --end-to-end ../shared/data/faces/utkface64 --end-to-end-rounds 3
    python benchmarks/train_speed.py --end-to-end ../shared/data/faces/utkface64 --end-to-end-limit 256  # a check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

BATCH = 128
BENCHMARKS = Path(__file__).resolve().parent
HEADER = ["size", "configuration", "img/s", "vs reference", "GFLOP/img", "of matmul peak", "peak MB"]


# ------------------------------------------------------------------------------------ the reference loop
class TutorialGenerator(nn.Module):
    """pytorch/examples dcgan/main.py's netG (64x64 only there; generalised here by the same rule)."""

    def __init__(self, size: int, nc: int = 3, nz: int = 100, ngf: int = 64) -> None:
        super().__init__()
        mults = [2**i for i in reversed(range(size.bit_length() - 3))]
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ngf * mults[0], 4, 1, 0, bias=False)]
        layers += [nn.BatchNorm2d(ngf * mults[0]), nn.ReLU(True)]
        for a, b in zip(mults, mults[1:]):
            layers += [
                nn.ConvTranspose2d(ngf * a, ngf * b, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * b),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class TutorialDiscriminator(nn.Module):
    """pytorch/examples' netD: ends in a Sigmoid, trained with BCELoss."""

    def __init__(self, size: int, nc: int = 3, ndf: int = 64) -> None:
        super().__init__()
        mults = [2**i for i in range(size.bit_length() - 3)]
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(mults, mults[1:]):
            layers += [nn.Conv2d(ndf * a, ndf * b, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * b)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Conv2d(ndf * mults[-1], 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


def unwritten_run_folder() -> Path:
    """A run folder for a Trainer that never calls fit(), so nothing is written into it: a path inside a
    temporary directory that is removed when the process exits (no empty folders left behind in /tmp)."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = tempfile.TemporaryDirectory(prefix="dcgan-bench-")
    return Path(_SCRATCH.name) / "run"


_SCRATCH: tempfile.TemporaryDirectory[str] | None = None


def reference_stepper(size: int, images: torch.Tensor) -> Any:
    """The tutorial's training step, fp32, on the same data (already normalised: the reference's best case)."""
    net_g, net_d = TutorialGenerator(size), TutorialDiscriminator(size)
    criterion = nn.BCELoss()
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = images.float() / 127.5 - 1

    def step(i: int) -> None:
        real = data[(i * BATCH) % (len(data) - BATCH) :][:BATCH]
        net_d.zero_grad()
        label = torch.full((BATCH,), 1.0)
        err_real = criterion(net_d(real), label)
        err_real.backward()
        fake = net_g(torch.randn(BATCH, 100, 1, 1))
        label.fill_(0.0)
        err_fake = criterion(net_d(fake.detach()), label)
        err_fake.backward()
        opt_d.step()
        net_g.zero_grad()
        label.fill_(1.0)
        err_g = criterion(net_d(fake), label)
        err_g.backward()
        opt_g.step()

    return step


def dcgan_stepper(
    size: int,
    images: torch.Tensor,
    precision: str,
    channels_last: bool,
    compile: bool,
    gemm_conv: bool = True,
    one_pass_d: bool = False,
) -> Any:
    from dcgan.config import build_config
    from dcgan.data import ImageData
    from dcgan.train import Trainer

    # ngf = ndf = 64, the tutorial's networks, so images/s compare the same work (dcgan's default D is half as
    # wide at 64x64: less work, a different model, measured for quality in quality_vs_time.py)
    config = build_config(
        None, data="bench", image_size=size, ngf=64, ndf=64, precision=precision, channels_last=channels_last,
        compile=compile, gemm_conv=gemm_conv, steps=10**6, log_every=10**6, sample_every=10**6,
        checkpoint_every=10**6,
    )  # fmt: skip
    data = ImageData(images, None, "bench", "train", "synthetic")
    trainer = Trainer(config, unwritten_run_folder(), data=data, progress=False)
    trainer.one_pass_d = one_pass_d  # D's real and fake batches in one pass (the same step as two; see train.py)

    def step(i: int) -> None:
        trainer.train_step(trainer.real_batch(i), trainer.latent_batch())

    return step


# ------------------------------------------------------------------------------------ one measurement
class TooSlow(BaseException):  # not an Exception: no `except Exception` in torch may swallow it
    """A configuration's first step ran over `max_step_s`."""


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration: warm-up steps (compilation included), then timed steps."""
    torch.manual_seed(0)
    size = spec["size"]
    images = torch.randint(0, 256, (BATCH * 8, 3, size, size), dtype=torch.uint8)
    if not spec.get("mallopt", True):
        os.environ["DCGAN_MALLOPT"] = "0"
    if spec["kind"] == "reference":
        if spec.get("mallopt"):
            from dcgan.train import keep_freed_memory

            keep_freed_memory()
        step = reference_stepper(size, images)
    else:
        step = dcgan_stepper(
            size, images, spec["precision"], spec["channels_last"], spec["compile"], spec.get("gemm_conv", True),
            spec.get("one_pass_d", False),
        )  # fmt: skip
    if spec.get("max_step_s"):
        # Far slower than the fastest row so far (bf16 on a CPU that emulates it: 60x at 64x64 on AVX2, a 110 s
        # step) is told by the first step's running over the limit: it is stopped there (the alarm's exception
        # arrives between two of the step's operations) and the row gives the bound.
        def over(signum: int, frame: object) -> None:
            raise TooSlow

        signal.signal(signal.SIGALRM, over)
        signal.setitimer(signal.ITIMER_REAL, spec["max_step_s"])
        try:
            step(0)
        except TooSlow:
            return {"img_per_s": BATCH / spec["max_step_s"], "cut": spec["max_step_s"],
                    "peak_mb": peak_mb()}  # fmt: skip
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    for i in range(spec["warmup"]):
        step(i)
    start = time.perf_counter()
    for i in range(spec["steps"]):
        step(i)
    seconds = time.perf_counter() - start
    return {
        "img_per_s": spec["steps"] * BATCH / seconds,
        "peak_mb": peak_mb(),
    }


def peak_mb() -> float:
    """This process's peak resident memory in MiB. Linux's `ru_maxrss` carries the parent's peak across fork and
    exec (every worker printed this script's 2,240 MB), so the kernel's per-process high-water mark comes first."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ context figures
def flops_per_image(size: int) -> float:
    """FLOPs of one full training step (D on real and fake, G forward and backward) per image, as the convolutions
    define them: counted on torch's kernels, since Winograd's products (`dcgan.gemm_conv`) do fewer for the same
    result, and the limit below is that of the mathematics, whichever way a plan computes it."""
    from torch.utils.flop_counter import FlopCounterMode

    images = torch.randint(0, 256, (BATCH * 2, 3, size, size), dtype=torch.uint8)
    step = dcgan_stepper(size, images, "fp32", False, False, gemm_conv=False)
    with FlopCounterMode(display=False) as counter:
        step(0)
    return counter.get_total_flops() / BATCH


def matmul_peak(dtype: torch.dtype) -> dict[str, float]:
    """FLOP/s of a 2048 x 2048 x 2048 product in `dtype` with each of torch's two product libraries (`peak.py`:
    MKL's fp32 products run at half oneDNN's rate on some AMD CPUs); the limit is the best of them."""
    from peak import product_rates

    return product_rates(dtype, 2048, 2048, 2048)


def sampling_rate(size: int, n: int = 512) -> float:
    from dcgan.models import Generator
    from dcgan.sample import generate, latents

    g = Generator(size, 3).eval()
    z = latents(n, 100, "uniform", 0)
    generate(g, z[:64])
    start = time.perf_counter()
    generate(g, z)
    return n / (time.perf_counter() - start)


def data_rate(size: int, steps: int = 50) -> float:
    images = torch.randint(0, 256, (BATCH * 40, 3, size, size), dtype=torch.uint8)
    from dcgan.config import build_config
    from dcgan.data import ImageData
    from dcgan.train import Trainer

    config = build_config(
        None, data="bench", image_size=size, ngf=64, ndf=64, steps=10**6, precision="fp32", channels_last=True,
        gemm_conv=True,
    )  # fmt: skip
    trainer = Trainer(config, unwritten_run_folder(), data=ImageData(images, None, "b", "train", "s"))
    start = time.perf_counter()
    for i in range(steps):
        trainer.real_batch(i)
    return steps * BATCH / (time.perf_counter() - start)


def auto_plan(size: int) -> Any:
    """The plan `--precision auto` chooses for this benchmark's model at `size` (measured now, cache untouched)."""
    from dcgan.plan import ModelShape, select_plan

    start = time.perf_counter()
    choice = select_plan(ModelShape(size, 3, 100, 64, 64, BATCH), torch.device("cpu"), retune=True, store=False)
    print(f"auto plan at {size}x{size}: {choice} (the selection took {time.perf_counter() - start:.0f} s)",
          file=sys.stderr, flush=True)  # fmt: skip
    return choice


def plan_spec(plan: Any) -> dict[str, Any]:
    return {"precision": plan.precision, "channels_last": plan.channels_last, "gemm_conv": plan.gemm_conv}


# ------------------------------------------------------------------------------------ end to end
def image_files(folder: Path) -> list[Path]:
    """The images `ImageFolder` reads under `folder` (torchvision's extensions), sorted by path."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(IMG_EXTENSIONS))


def first_images(folder: Path, n: int, into: Path) -> Path:
    """A folder holding copies of the first n images of `folder` (sorted by path; names kept, labels in them too)."""
    into.mkdir(parents=True)
    for file in image_files(folder)[:n]:
        shutil.copy(file, into / file.name)
    return into


def timed_run(command: list[str], log: Path, checkpoints: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `command` to its end; seconds from its launch to the newest file in `checkpoints`, and to its exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log.open("wb") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
    ended = time.time()
    saved = [p for p in checkpoints.glob("*") if p.suffix in (".pt", ".pth")] if checkpoints.is_dir() else []
    if code or not saved:
        return {"error": f"exit {code}{'' if saved else ', no checkpoint'}; see {log}"}
    last = max(p.stat().st_mtime for p in saved)
    return {"seconds": last - started, "exit_seconds": ended - started}


def end_to_end(folder: Path, work: Path, rounds: int = 1) -> list[list[str]]:
    """One epoch of `folder` from the command line: the reference, then dcgan with a cold and a warm decode cache,
    `rounds` times in turn; each row gives the median seconds and every round's ratio to that round's reference."""
    from dcgan.data.cache import cache_dir

    files = image_files(folder)
    for file in files:  # the OS's first read of the files is paid here, by neither side
        file.read_bytes()
    labels = {"reference": "reference: pytorch/examples dcgan/main.py (reference_dcgan.py --niter 1; batch 64, 2 workers)",
              "dcgan-cold": "empty decode cache", "dcgan-warm": "folder already decoded and cached"}  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in labels}
    plans: dict[str, str] = {}
    for round_ in range(rounds):
        here = work / f"round-{round_ + 1}"
        reference_out = here / "reference"
        reference = [sys.executable, str(BENCHMARKS / "reference_dcgan.py"), "--dataroot", str(folder),
                     "--outf", str(reference_out), "--niter", "1"]  # fmt: skip
        cache = here / "dcgan-cache"  # empty of data; this machine's plans, as a user's first run of this folder has
        cache.mkdir(parents=True)
        for name in ("plans.json", "inference.json"):
            if (cache_dir() / name).exists():
                shutil.copy(cache_dir() / name, cache / name)
        env = {**os.environ, "DCGAN_CACHE": str(cache)}

        def dcgan(name: str, here: Path = here) -> list[str]:
            # --paper: D as wide as G, the reference's networks, so the wall-clocks compare the same work
            return [sys.executable, "-m", "dcgan", "train", "--data", str(folder), "--image-size", "64",
                    "--epochs", "1", "--paper", "--out", str(here / name)]  # fmt: skip

        if round_ == 0:
            print(f"end to end, one epoch of {folder} ({len(files):,} images), each timed from its launch to its "
                  f"last checkpoint, {rounds} round(s):\n  {' '.join(reference)}\n  DCGAN_CACHE={cache} "
                  f"{' '.join(dcgan('dcgan-cold'))}\n  then the same with the folder cached (--out "
                  f"{here / 'dcgan-warm'})", file=sys.stderr, flush=True)  # fmt: skip
        result = timed_run(reference, reference_out / "log.txt", reference_out)
        results["reference"].append({**result, "images": len(files)})
        print(f"  round {round_ + 1} reference: {result}", file=sys.stderr, flush=True)
        for name in ("dcgan-cold", "dcgan-warm"):
            result = timed_run(dcgan(name), here / f"{name}.log", here / name / "checkpoints", env)
            results[name].append({**result, "images": _images_trained(here / name) if "error" not in result else 0})
            log = (here / f"{name}.log").read_text(errors="replace").splitlines()
            plan = next(
                (line.split(": ", 1)[1].split(" (")[0] for line in log if line.startswith("Execution plan")), ""
            )
            plans[name] = plans.get(name) or plan
            print(f"  round {round_ + 1} {name}: {result}", file=sys.stderr, flush=True)
    rows = []
    for name, label in labels.items():
        failed = [r["error"] for r in results[name] if "error" in r]
        if failed:
            rows.append(["64x64", f"end to end, {label}", "failed: " + failed[0], "", "", "", ""])
            continue
        seconds = statistics.median(r["seconds"] for r in results[name])
        exits = statistics.median(r["exit_seconds"] for r in results[name])
        images = results[name][0]["images"]
        ratios = [
            (r["images"] / r["seconds"]) / (ref["images"] / ref["seconds"])
            for r, ref in zip(results[name], results["reference"])
            if "error" not in ref
        ]
        if name != "reference":
            label = f"dcgan train --epochs 1, {label} ({plans.get(name) or 'plan not printed'})"
        label = (f"end to end, {label}: {seconds:.1f} s to the last checkpoint ({exits:.1f} s to exit), {images:,} "
                 f"images" + (f"; median of {rounds}: " + ", ".join(f"{s['seconds']:.1f}" for s in results[name])
                              + " s" if rounds > 1 else ""))  # fmt: skip
        by_round = ", ".join(f"{x:.2f}x" for x in ratios)
        ratio = f"{statistics.median(ratios):.2f}x" + (f" ({by_round})" if rounds > 1 else "")
        rows.append(["64x64", label, f"{images / seconds:.1f}", ratio, "", "", ""])
    return rows


def _images_trained(out: Path) -> int:
    """Steps times batch of the run in `out`, from its config and newest checkpoint's name."""
    from dcgan.run import RunFolder

    config, saved = out / "config.json", RunFolder(out).list_checkpoints()
    if not config.exists() or not saved:
        return 0
    return int(saved[-1].stem.split("-")[1]) * json.loads(config.read_text())["batch_size"]  # step-00000076.pt


def print_table(rows: list[list[str]]) -> None:
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---" for _ in HEADER) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


# ------------------------------------------------------------------------------------ the table
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64, 32])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=2, help="run every configuration this many times, interleaved; keep the best"
    )
    parser.add_argument("--max-slowdown", type=float, default=5.0, metavar="R",
                        help="stop a configuration whose first step runs over R times the fastest step so far "
                        "and give the bound (bf16 where the CPU emulates it); 0 times every one")  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to warm up)")
    parser.add_argument("--end-to-end", type=Path, metavar="FOLDER",
                        help="instead: one epoch of this image folder from the command line, dcgan against the "
                             "reference")  # fmt: skip
    parser.add_argument("--end-to-end-limit", type=int, metavar="N", help="only the first N images of the folder")
    parser.add_argument("--end-to-end-rounds", type=int, default=1, metavar="N",
                        help="run the three N times in turn and give medians (the spread between runs is seconds)")  # fmt: skip
    parser.add_argument("--end-to-end-out", type=Path, metavar="DIR",
                        help="keep the runs here (default: a temporary folder, removed afterwards)")  # fmt: skip
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return

    from dcgan.plan import machine

    facts = machine(torch.device("cpu"))
    print(f"{facts['cpu']}: {facts['capability']}, AMX {'yes' if facts['amx'] else 'no'}, AVX-512-bf16 "
          f"{'yes' if facts['avx512_bf16'] else 'no'}, {facts['cpus']} CPUs ({facts['usable_cpus']} usable)")  # fmt: skip
    if args.end_to_end is not None:
        if not args.end_to_end.is_dir() or not image_files(args.end_to_end):
            raise SystemExit(f"error: --end-to-end {args.end_to_end} is not a folder of images.")
        if args.end_to_end_out is not None and args.end_to_end_out.exists():
            raise SystemExit(f"error: --end-to-end-out {args.end_to_end_out} exists; give a new folder.")
        work = args.end_to_end_out or Path(tempfile.mkdtemp(prefix="dcgan-end-to-end-"))
        try:
            folder = args.end_to_end
            if args.end_to_end_limit is not None:
                folder = first_images(folder, args.end_to_end_limit, work / "data")
            print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}\n")
            print_table(end_to_end(folder.resolve(), work.resolve(), args.end_to_end_rounds))
        finally:
            if args.end_to_end_out is None:
                shutil.rmtree(work, ignore_errors=True)
        return
    from peak import describe

    rates_bf16, rates_fp32 = matmul_peak(torch.bfloat16), matmul_peak(torch.float32)
    peak_bf16, peak_fp32 = max(rates_bf16.values()), max(rates_fp32.values())
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads")
    print(f"measured matmul peak, the best of torch's two product libraries: bf16 {describe(rates_bf16)}, "
          f"fp32 {describe(rates_fp32)}\n")  # fmt: skip
    torch_convs = {"gemm_conv": False}
    variants = [
        ("reference: tutorial loop, fp32", {"kind": "reference", "mallopt": False}),
        ("reference + dcgan's allocator setting", {"kind": "reference", "mallopt": True}),
        ("dcgan fp32, NCHW, torch convs", {"precision": "fp32", "channels_last": False, **torch_convs}),
        ("dcgan fp32, NCHW, torch convs, D in one pass",
         {"precision": "fp32", "channels_last": False, "one_pass_d": True, **torch_convs}),
        ("dcgan fp32, channels_last, torch convs", {"precision": "fp32", "channels_last": True, **torch_convs}),
        ("dcgan fp32, channels_last, GEMM convs", {"precision": "fp32", "channels_last": True}),
        ("dcgan fp32, channels_last, GEMM convs, D in one pass",
         {"precision": "fp32", "channels_last": True, "one_pass_d": True}),
        ("dcgan bf16, NCHW, torch convs", {"precision": "bf16", "channels_last": False, **torch_convs}),
        ("dcgan bf16, channels_last, torch convs", {"precision": "bf16", "channels_last": True, **torch_convs}),
        ("dcgan bf16, channels_last, GEMM convs, glibc defaults",
         {"precision": "bf16", "channels_last": True, "mallopt": False}),
        ("dcgan bf16, channels_last, GEMM convs (the plan on AMX CPUs)", {"precision": "bf16", "channels_last": True}),
    ]  # fmt: skip
    if args.compile:
        variants.append(
            ("dcgan bf16, channels_last, compile", {"precision": "bf16", "channels_last": True, "compile": True})
        )
    rows = []
    base_variants = variants
    for size in args.sizes:
        auto = auto_plan(size)
        variants = [*base_variants, (f"dcgan auto plan (default): {auto.plan}", plan_spec(auto.plan))]
        flops = flops_per_image(size)
        # Interleaved rounds: a slow spell of a shared machine then hits every configuration alike.
        best: dict[str, dict[str, Any]] = {}
        for round_ in range(args.rounds):
            for name, extra in variants:
                if "cut" in best.get(name, {}):
                    continue  # one step in round 1 was over --max-slowdown times the fastest: not timed again
                spec = {"kind": "dcgan", "compile": False, "size": size, "steps": args.steps, "warmup": args.warmup}
                spec.update(extra)
                if spec.get("compile"):
                    spec["warmup"] = max(args.warmup, 3)
                # Only in round 1: a row timed once stays timed.
                rates = [r["img_per_s"] for r in best.values() if "img_per_s" in r and "cut" not in r]
                if args.max_slowdown and rates and round_ == 0 and not spec.get("compile"):
                    spec["max_step_s"] = args.max_slowdown * BATCH / max(rates)
                result = run_isolated(spec)
                if name not in best or result.get("img_per_s", 0) > best[name].get("img_per_s", 0):
                    best[name] = result
                print(f"  round {round_ + 1} {size}x{size} {name}: {result.get('img_per_s', 0):.0f} img/s",
                      file=sys.stderr, flush=True)  # fmt: skip
            peak_bf16 = max(peak_bf16, *matmul_peak(torch.bfloat16).values())
            peak_fp32 = max(peak_fp32, *matmul_peak(torch.float32).values())
        baseline = None
        for name, extra in variants:
            result = best[name]
            if "error" in result:
                rows.append([f"{size}x{size}", name, "failed: " + result["error"][:60], "", "", "", ""])
                continue
            baseline = baseline or result["img_per_s"]
            peak = peak_bf16 if extra.get("precision") == "bf16" else peak_fp32
            bound = ""
            if "cut" in result:
                name += (f" (stopped in its first step after {result['cut']:.3g} s, {args.max_slowdown:g}x the "
                         f"fastest's: not timed further)")  # fmt: skip
                bound = "< "
            rows.append([
                f"{size}x{size}", name, f"{bound}{result['img_per_s']:.0f}",
                f"{bound}{result['img_per_s'] / baseline:.2f}x", f"{flops / 1e9:.2f}",
                "" if bound else f"{result['img_per_s'] * flops / peak:.0%}", f"{result['peak_mb']:.0f}",
            ])  # fmt: skip
        limits = {"bf16": peak_bf16, "fp32": peak_fp32}
        for precision in dict.fromkeys([auto.plan.precision, "fp32"]):  # the auto plan's, then the reference's
            role = "the auto plan's precision" if precision == auto.plan.precision else "the reference's precision"
            rows.append([
                f"{size}x{size}", f"{precision} limit implied by the matmul peak ({role})",
                f"{limits.get(precision, peak_bf16) / flops:.0f}", "", "", "", "",
            ])  # fmt: skip
        rows.append(
            [f"{size}x{size}", "sampling (fp32, eval mode, batch 256)", f"{sampling_rate(size):.0f}", "", "", "", ""]
        )
        rows.append(
            [f"{size}x{size}", "data pipeline (uint8 -> [-1, 1] batches)", f"{data_rate(size):.0f}", "", "", "", ""]
        )
    print(f"\nbest of {args.rounds} interleaved rounds; matmul peak (best seen): bf16 {peak_bf16 / 1e12:.2f}, "
          f"fp32 {peak_fp32 / 1e12:.2f} TFLOP/s")  # fmt: skip
    print_table(rows)


if __name__ == "__main__":
    main()
