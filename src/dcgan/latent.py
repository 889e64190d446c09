"""Walking and doing arithmetic in z (paper section 6.1 and 6.3): interpolation, z files, exemplars, vector
arithmetic (Figure 7) and attribute directions (Figure 8).

Exemplars are named by IDS: comma-separated items, each a sheet number (the i-th image `dcgan sample RUN --seed S`
writes), a `.npy` z file (every row of it), or an image file (brought into z by `dcgan.projection.project`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dcgan.errors import ConfigError, DataError
from dcgan.models import Generator
from dcgan.sample import generate, grid_image, latents

METHODS = ("linear", "slerp")
#: Sheet numbers name the first latents of a seed; this bounds the memory drawing them takes.
MAX_SHEET = 100_000

# ----------------------------------------------------------------------------------------------- interpolation


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: along the great circle from z0 to z1, norms blended linearly.

    Both points are split into direction and length; the direction moves at constant angular speed and the
    length linearly, so two points of equal norm give a path of that norm throughout (White, 2016).
    """
    t = t.reshape(-1, 1).to(z0.dtype)
    n0, n1 = z0.norm(), z1.norm()
    u0, u1 = z0 / n0.clamp_min(1e-12), z1 / n1.clamp_min(1e-12)
    omega = torch.arccos((u0 * u1).sum().clamp(-1.0, 1.0))
    if float(omega) < 1e-6:  # (anti)parallel: the circle is undefined, a straight line is the honest answer
        return z0 + t * (z1 - z0)
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int = 10, method: str = "linear") -> torch.Tensor:
    """`steps` points from z0 to z1 inclusive, (steps, nz): straight (`linear`) or on the sphere (`slerp`)."""
    if steps < 2:
        raise ConfigError(f"A walk needs at least 2 steps, got {steps}.")
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}.")
    z0, z1 = z0.flatten().float(), z1.flatten().float()
    t = torch.linspace(0, 1, steps)
    path = z0 + t[:, None] * (z1 - z0) if method == "linear" else slerp(z0, z1, t)
    path[0], path[-1] = z0, z1  # exact endpoints, whatever rounding did
    return path


def interpolate_chain(points: torch.Tensor, steps: int = 10, method: str = "linear") -> torch.Tensor:
    """A walk through every row of `points` in turn, `steps` points per leg, each joint once: (K, nz)."""
    if points.shape[0] < 2:
        raise ConfigError(f"A chain needs at least 2 points, got {points.shape[0]}.")
    legs = [interpolate(a, b, steps, method) for a, b in itertools.pairwise(points)]
    return torch.cat([legs[0]] + [leg[1:] for leg in legs[1:]])


# ----------------------------------------------------------------------------------------------- z files


def save_z(z: torch.Tensor, path: str | Path) -> Path:
    """Write latent vectors (n, nz) as a float32 `.npy` file (no pickled objects)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, z.detach().cpu().float().reshape(z.shape[0], -1).numpy(), allow_pickle=False)
    return path


def load_z(path: str | Path, nz: int | None = None) -> torch.Tensor:
    """Read a `.npy` z file as (n, nz) float32; a 1-D file is one vector. Never unpickles.

    Raises:
        DataError: the file is missing, not a numeric .npy array, or its vectors are not nz long.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"No such z file: {path}.")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a NumPy .npy array of numbers ({type(exc).__name__}).") from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu" or array.ndim not in (1, 2):
        raise DataError(f"{path} must hold a 1-D or 2-D array of numbers, not {getattr(array, 'shape', '?')}.")
    z = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    z = z[None] if z.ndim == 1 else z
    if nz is not None and z.shape[1] != nz:
        raise DataError(f"{path} holds vectors of length {z.shape[1]}, but this generator takes nz={nz}.")
    if z.shape[0] == 0 or not torch.isfinite(z).all():
        raise DataError(f"{path} is empty or holds NaN or Inf.")
    return z


# ----------------------------------------------------------------------------------------------- exemplars

#: Turns image files into z: (paths) -> (n, nz). The CLI passes a projection; the API may pass anything.
Projector = Callable[[list[Path]], torch.Tensor]


@dataclass
class Exemplars:
    """Latent vectors named by IDS, and what each came from (e.g. "sheet 12", "a.npy[0]", "face.jpg")."""

    z: torch.Tensor
    sources: list[str] = field(default_factory=list)


def resolve_ids(spec: str, nz: int, prior: str, seed: int, project: Projector | None = None) -> Exemplars:
    """The latent vectors an IDS string names, in order.

    Args:
        spec: comma-separated items: sheet numbers of `seed` (e.g. "12,40,51"), `.npy` z files, or image files.
        nz: the generator's latent size.
        prior: the run's prior ("uniform" or "normal"), which sheet numbers are drawn from.
        seed: the sample sheet's seed (`dcgan sample --seed S`).
        project: how image files enter z; without it, an image item is an error.

    Raises:
        ConfigError: an item is neither a number nor an existing file, or images are given without a projector.
    """
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or any(not item for item in items):
        raise ConfigError(f"IDS {spec!r} has an empty item; give comma-separated sheet numbers or files.")
    numbers = [int(item) for item in items if item.isdigit()]
    if numbers and max(numbers) >= MAX_SHEET:
        raise ConfigError(f"Sheet number {max(numbers)} is too large; sheet numbers go up to {MAX_SHEET - 1}.")
    sheet = latents(max(numbers) + 1, nz, prior, seed) if numbers else torch.empty(0, nz)
    parts: list[torch.Tensor] = []
    sources: list[str] = []
    images: list[tuple[int, Path]] = []
    for item in items:
        if item.isdigit():
            parts.append(sheet[int(item)][None])
            sources.append(f"sheet {item} (seed {seed})")
        elif item.lower().endswith(".npy"):
            z = load_z(item, nz)
            parts += list(z.split(1))
            sources += [f"{item}[{i}]" for i in range(z.shape[0])]
        elif Path(item).is_file():
            images.append((len(parts), Path(item)))
            parts.append(torch.empty(0))
            sources.append(item)
        else:
            raise ConfigError(f"IDS item {item!r} is neither a sheet number nor an existing .npy or image file.")
    if images:
        if project is None:
            raise ConfigError("Image exemplars need projection into z; pass a projector (the CLI does this).")
        projected = project([path for _, path in images])
        for (slot, _), z in zip(images, projected.split(1)):
            parts[slot] = z
    return Exemplars(torch.cat(parts).float(), sources)


# ----------------------------------------------------------------------------------------------- arithmetic


@dataclass
class ArithmeticResult:
    """Figure 7: each group's exemplars and mean, the result A - B + C, and noisy copies of the result."""

    groups: dict[str, torch.Tensor]  # "a", "b", "c" -> (k, nz)
    means: torch.Tensor  # (3, nz), rows a, b, c
    result: torch.Tensor  # (nz,)
    noisy: torch.Tensor  # (n_noisy, nz)
    exemplar_images: dict[str, torch.Tensor]  # G of each group's exemplars
    mean_images: torch.Tensor  # G(mean a), G(mean b), G(mean c)
    result_images: torch.Tensor  # G(result) then G of each noisy copy
    pixel_result: torch.Tensor  # mean(G(a)) - mean(G(b)) + mean(G(c)) in pixel space, for contrast


def vector_arithmetic(
    generator: Generator,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    *,
    noise: float = 0.25,
    n_noisy: int = 8,
    seed: int = 0,
) -> ArithmeticResult:
    """mean(a) - mean(b) + mean(c) in z, and the result with uniform noise in [-noise, noise] added (paper 6.3.2).

    Each group is (k, nz). Averaging a few exemplars per concept is what made the paper's arithmetic stable; the
    same sum done on pixels (returned as `pixel_result`) gives a blurry overlay instead, which the figure shows.
    """
    groups = {"a": a.float(), "b": b.float(), "c": c.float()}
    for name, z in groups.items():
        if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] != generator.nz:
            raise ConfigError(f"Group {name.upper()} must be (k, {generator.nz}) latent vectors, got {tuple(z.shape)}.")
    means = torch.stack([z.mean(0) for z in groups.values()])
    result = means[0] - means[1] + means[2]
    g = torch.Generator().manual_seed(seed)
    noisy = result + (torch.rand(n_noisy, result.numel(), generator=g) * 2 - 1) * noise
    exemplar_images = {name: generate(generator, z) for name, z in groups.items()}
    pixel = exemplar_images["a"].mean(0) - exemplar_images["b"].mean(0) + exemplar_images["c"].mean(0)
    return ArithmeticResult(
        groups, means, result, noisy, exemplar_images, generate(generator, means),
        generate(generator, torch.cat([result[None], noisy])), pixel.clamp(-1, 1),
    )  # fmt: skip


def arithmetic_figure(result: ArithmeticResult) -> Image.Image:
    """The paper's Figure 7 layout: three columns (A, B, C) of exemplars with their mean's sample below, the
    signs between them, the result and its noisy neighbours as a 3x3 grid, and the pixel-space sum beside it."""
    columns = []
    for i, name in enumerate("abc"):
        exemplars = grid_image(result.exemplar_images[name], nrow=1)
        mean = labelled(grid_image(result.mean_images[i][None], nrow=1), "mean z")
        columns.append(labelled(vstack([exemplars, mean], gap=6), name.upper()))
    images = result.result_images
    tiles = torch.cat([images[1:5], images[:1], images[5:9]]) if images.shape[0] >= 9 else images
    columns.insert(1, _sign("-", columns[0].height))
    columns.insert(3, _sign("+", columns[0].height))
    columns.append(_sign("=", columns[0].height))
    columns.append(labelled(grid_image(tiles, nrow=3 if tiles.shape[0] >= 3 else tiles.shape[0]), "A - B + C"))
    columns.append(_sign(" ", columns[0].height))
    columns.append(labelled(grid_image(result.pixel_result[None], nrow=1), "same on pixels"))
    return hstack(columns)


# ----------------------------------------------------------------------------------------------- directions


@dataclass
class DirectionResult:
    """Figure 8: a direction in z and samples swept along it (rows: starting points, columns: amounts)."""

    direction: torch.Tensor  # (nz,) mean(a) - mean(b)
    starts: torch.Tensor  # (rows, nz)
    amounts: torch.Tensor  # (steps,)
    z: torch.Tensor  # (rows * steps, nz), row-major
    images: torch.Tensor  # G(z)


def attribute_direction(
    generator: Generator,
    a: torch.Tensor,
    b: torch.Tensor,
    starts: torch.Tensor,
    *,
    steps: int = 9,
    span: float = 1.0,
) -> DirectionResult:
    """The direction mean(a) - mean(b) and, for each start z, samples at z + t * direction, t in [-span, span].

    With t = 1 a start moves by exactly the difference between the two groups' means, so a sweep from -1 to 1
    shows a face turned from "more B" to "more A".
    """
    for name, z in (("A", a), ("B", b)):
        if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] != generator.nz:
            raise ConfigError(f"Group {name} must be (k, {generator.nz}) latent vectors, got {tuple(z.shape)}.")
    if steps < 2:
        raise ConfigError(f"A sweep needs at least 2 steps, got {steps}.")
    direction = a.float().mean(0) - b.float().mean(0)
    amounts = torch.linspace(-span, span, steps)
    z = (starts.float()[:, None, :] + amounts[None, :, None] * direction).reshape(-1, generator.nz)
    return DirectionResult(direction, starts.float(), amounts, z, generate(generator, z))


def label_groups(folder: str | Path, field: int, values: Sequence[str], limit: int | None = None) -> list[list[Path]]:
    """Image files of a labelled folder, grouped by a `_`-separated field of their names, one list per value.

    UTKFace names read `AGE_GENDER_RACE_DATE.jpg.chip.jpg`: field 1 is gender (0 male, 1 female), field 2 race.
    Files are sorted by name, and a group larger than `limit` keeps `limit` files evenly spread over that order.

    Raises:
        DataError: the folder is missing or a value matches no file.
    """
    from dcgan.data.folder import list_images

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--labels-from {folder}: no such folder.")
    files = list_images(folder)
    groups: list[list[Path]] = []
    for value in values:
        match = [f for f in files if len(parts := f.name.split("_")) > field and parts[field] == value]
        if not match:
            raise DataError(f"No file in {folder} has {value!r} as field {field} of its name (fields split by '_').")
        step = max(1, len(match) // limit) if limit else 1  # spread over the sorted names: ages 1 to 116, not 1 to 10
        groups.append(match[::step][:limit] if limit else match)
    return groups


# ----------------------------------------------------------------------------------------------- pictures


def numbered_sheet(images: torch.Tensor, nrow: int | None = None, start: int = 0, padding: int = 2) -> Image.Image:
    """A sample grid with each image's sheet number drawn in its top-left corner, for naming exemplars."""
    grid = grid_image(images, nrow, padding).convert("RGB")
    nrow = nrow or max(1, int(np.ceil(np.sqrt(images.shape[0]))))
    size = images.shape[-1]
    draw = ImageDraw.Draw(grid)
    for i in range(images.shape[0]):
        x, y = padding + (i % nrow) * (size + padding), padding + (i // nrow) * (size + padding)
        label = str(start + i)
        box = draw.textbbox((x + 1, y), label)
        draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=(0, 0, 0))
        draw.text((x + 1, y), label, fill=(255, 255, 0))
    return grid


def walk_frames(images: torch.Tensor, rows: int, steps: int) -> list[Image.Image]:
    """GIF frames of `rows` walks of `steps` images each (row-major): frame t shows every walk at step t,
    then back again, so the loop has no jump."""
    per_step = images.reshape(rows, steps, *images.shape[1:]).transpose(0, 1)
    frames = [grid_image(per_step[t], nrow=min(rows, 8)).convert("RGB") for t in range(steps)]
    return frames + frames[-2:0:-1]


def save_frames(frames: Sequence[Image.Image], path: str | Path, ms_per_frame: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=list(frames[1:]), duration=ms_per_frame, loop=0)
    return path


def hstack(panels: Sequence[Image.Image], gap: int = 4) -> Image.Image:
    """Panels side by side on white, top-aligned."""
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (width, max(p.height for p in panels)), (255, 255, 255))
    x = 0
    for panel in panels:
        out.paste(panel.convert("RGB"), (x, 0))
        x += panel.width + gap
    return out


def vstack(panels: Sequence[Image.Image], gap: int = 4) -> Image.Image:
    """Panels one above the other on white, left-aligned."""
    height = sum(p.height for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (max(p.width for p in panels), height), (255, 255, 255))
    y = 0
    for panel in panels:
        out.paste(panel.convert("RGB"), (0, y))
        y += panel.height + gap
    return out


def row_labelled(panel: Image.Image, labels: Sequence[str], row_height: int, top: int = 0) -> Image.Image:
    """A panel with a text label left of each row (rows `row_height` pixels apart, starting `top` down)."""
    width = 8 + 6 * max(len(label) for label in labels)
    out = Image.new("RGB", (panel.width + width, panel.height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for i, label in enumerate(labels):
        draw.text((2, top + i * row_height + row_height // 2 - 6), label, fill=(0, 0, 0))
    out.paste(panel.convert("RGB"), (width, 0))
    return out


def labelled(panel: Image.Image, text: str) -> Image.Image:
    """A panel with a caption line above it (used by every figure of the latent and inspection tools)."""
    out = Image.new("RGB", (max(panel.width, 8 * len(text)), panel.height + 14), (255, 255, 255))
    ImageDraw.Draw(out).text((2, 1), text, fill=(0, 0, 0))
    out.paste(panel.convert("RGB"), (0, 14))
    return out


def _sign(text: str, height: int) -> Image.Image:
    out = Image.new("RGB", (14, height), (255, 255, 255))
    ImageDraw.Draw(out).text((4, height // 2 - 6), text, fill=(0, 0, 0))
    return out
