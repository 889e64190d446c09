"""Drawing samples from a trained generator, and the pictures a run leaves behind: grids, GIFs, loss curves."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from dcgan.models import Generator, sample_prior
from dcgan.plan.inference import applied, resolve_generator_plan
from dcgan.plan.plans import ExecutionPlan


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 in [0, 255], same shape."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def grid_image(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """A grid (as a PIL image) of images in [-1, 1]; square by default."""
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid(to_uint8(images), nrow=nrow, padding=padding, pad_value=255)
    array = grid.permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if images.shape[1] == 1 else array)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_image(images, nrow).save(path)
    return path


def save_gif(frames: Sequence[str | Path], path: str | Path, ms_per_frame: int = 200) -> Path | None:
    """An animated GIF of the given image files (e.g. the sample grids of a run), the last frame held longer."""
    if not frames:
        return None
    images = [Image.open(f).convert("RGB") for f in frames]
    durations = [ms_per_frame] * (len(images) - 1) + [ms_per_frame * 8]
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)
    return path


def latents(n: int, nz: int, prior: str, seed: int) -> torch.Tensor:
    """The n latent vectors for a seed: the i-th is the same whatever n is, so sheets can be extended."""
    g = torch.Generator().manual_seed(seed)
    return sample_prior(n, nz, prior, generator=g)


@torch.no_grad()
def generate(
    generator: Generator,
    z: torch.Tensor,
    batch_size: int = 256,
    *,
    labels: torch.Tensor | None = None,
    plan: ExecutionPlan | str | None = None,
) -> torch.Tensor:
    """G(z) in eval mode, in batches, on the generator's device; returns CPU float images in [-1, 1].

    `labels` (N,) are the class ids a class-conditional G draws, one per row of z. `plan` is how the passes run
    (`dcgan.plan.inference`): "auto" the fastest measured on this machine (what `dcgan sample` uses), "fp32" or
    "bf16" the fastest in that precision, or None G as it is, in fp32.
    """
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    parts = [()] * len(z.split(batch_size)) if labels is None else [(y.to(device),) for y in labels.split(batch_size)]
    with applied(generator, resolve_generator_plan(generator, plan)):
        out = [generator(part.to(device), *y).float().cpu() for part, y in zip(z.split(batch_size), parts, strict=True)]
    generator.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def class_sheet(generator: Generator, rows: int = 8, *, seed: int = 0) -> tuple[torch.Tensor, int]:
    """Each of `rows` latents drawn in every class of a class-conditional G: (images, images per row).

    Row i is `latents(rows, seed)[i]` in class 0, 1, ... (one column per class), so along a row the label changes
    the class while z keeps the style (a digit's stroke and slant, a garment's shade).
    """
    k = generator.num_classes
    z = latents(rows, generator.nz, generator.prior, seed).repeat_interleave(k, dim=0)
    return generate(generator, z, labels=torch.arange(k).repeat(rows), plan="auto"), k


def sample_labels(generator: Generator, n: int, label: int | None = None) -> torch.Tensor | None:
    """The classes n samples of G are drawn in: all `label`, else cycling through the classes (sample i in class
    i mod K); None for an unconditional G."""
    if not generator.num_classes:
        return None
    return torch.full((n,), label, dtype=torch.long) if label is not None else torch.arange(n) % generator.num_classes


def write_samples(
    generator: Generator,
    n: int,
    out: str | Path,
    *,
    seed: int = 0,
    prior: str | None = None,
    nrow: int | None = None,
    label: int | None = None,
) -> dict[str, object]:
    """Write n samples as separate PNGs (`000000.png`, ...), a `grid.png`, their latents `z.npy` and `samples.json`.

    The same seed gives the same images: sample i comes from the i-th latent vector of `latents(seed)`. z is drawn
    from `prior`, by default the one G was trained with (`generator.prior`). G runs under the inference plan measured
    fastest on this machine (`generate(..., plan="auto")`). A class-conditional G draws every sample in class
    `label` (an id; `dcgan.models.resolve_class` turns a name into one), or without it sample i in class i mod K;
    `samples.json` then lists each sample's class.
    """
    prior = prior or generator.prior
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    z = latents(n, generator.nz, prior, seed)
    labels = sample_labels(generator, n, label)
    images = generate(generator, z, labels=labels, plan="auto")
    pixels = to_uint8(images).permute(0, 2, 3, 1).numpy()
    for i, array in enumerate(pixels):
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(out / f"{i:06d}.png")
    save_grid(images, out / "grid.png", nrow)
    np.save(out / "z.npy", z.numpy(), allow_pickle=False)
    record: dict[str, object] = {
        "n": n, "seed": seed, "prior": prior, "files": [f"{i:06d}.png" for i in range(n)], "grid": "grid.png"
    }  # fmt: skip
    if labels is not None:
        record["classes"] = [generator.classes[int(y)] for y in labels]
    (out / "samples.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


#: A `--eval-every` score's name in metrics.jsonl: "fid2k", "kid10k", "is500" (not their "_std" companions).
_EVAL_KEY = re.compile(r"^(fid|kid|is)\d+k?$")


def plot_losses(metrics_file: str | Path, path: str | Path) -> Path | None:
    """A PNG of G's and D's losses and D's outputs against step, from a run's metrics.jsonl; with a third panel,
    the score `--eval-every` tracked (e.g. fid2k) against step with its best point marked, when the run has one."""
    rows: list[dict[str, Any]] = []
    scores: dict[str, dict[int, float]] = {}  # score name -> step -> value
    for line in Path(metrics_file).read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if "loss_d" in row:
            rows.append(row)
        for key, value in row.items():
            if _EVAL_KEY.match(key) and isinstance(value, int | float):
                scores.setdefault(key, {})[row["step"]] = float(value)  # a step evaluated again (resume): the last
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    panels = 3 if scores else 2
    fig, axes = plt.subplots(panels, 1, figsize=(8, 3 * panels), sharex=True)
    top, bottom = axes[0], axes[1]
    top.plot(steps, [r["loss_d"] for r in rows], label="D loss")
    top.plot(steps, [r["loss_g"] for r in rows], label="G loss")
    top.set_ylabel("loss")
    top.legend()
    bottom.plot(steps, [r["d_x"] for r in rows], label="D(x)")
    bottom.plot(steps, [r["d_g_z"] for r in rows], label="D(G(z))")
    bottom.set_ylim(0, 1)
    bottom.legend()
    for key, points in scores.items():
        xs = sorted(points)
        ys = [points[x] for x in xs]
        best = (min if not key.startswith("is") else max)(range(len(ys)), key=ys.__getitem__)
        axes[2].plot(xs, ys, marker="o", label=key)
        axes[2].annotate(f"best {ys[best]:.4g} at step {xs[best]}", (xs[best], ys[best]), textcoords="offset points",
                         xytext=(0, 8), ha="center")  # fmt: skip
    if scores:
        axes[2].set_ylabel("--eval-every score")
        axes[2].legend()
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def diversity(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Mean pairwise pixel distance of generated images over that of real ones: near 0 means mode collapse."""

    def spread(x: torch.Tensor) -> float:
        flat = x.detach().float().flatten(1)
        return float(torch.pdist(flat).mean()) if flat.shape[0] > 1 else 0.0

    base = spread(real)
    return spread(fake) / base if base > 0 else 0.0
