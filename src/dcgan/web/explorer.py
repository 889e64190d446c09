"""What the web page asks of a trained generator, without the web: sample sheets, arithmetic, walks, directions,
dropped filters and projected uploads, each checked and turned into PNGs the page can show.

One `Explorer` serves every request of a server. Requests run on many threads, but the generator is shared and
filter dropping works by hooking it, so every use of it holds `lock`; a projection (hundreds of gradient steps)
runs on its own copy under its own lock, so sample sheets stay quick while an upload is being projected.
Inside a server, waiting for either lock ends at the request's deadline, and a projection checks its deadline
before every step of its optimisation (`dcgan.web.limits`); called from Python, nothing has a deadline.

A class-conditional generator draws in the class each request names (`klass`: a class name or id, checked by
`class_id`); its z are the same in every class, so a sample keeps its z when the page switches classes, and
`every_class` draws the same z in each class.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from dcgan.conditional import ClassGenerator, class_list, every_class
from dcgan.errors import ConfigError, DataError
from dcgan.inspection import drop_filters, num_filters
from dcgan.latent import attribute_direction, interpolate, numbered_sheet, row_labelled, save_z, vector_arithmetic
from dcgan.models import Generator, resolve_class
from dcgan.plan.inference import generator_plan, running
from dcgan.projection import project
from dcgan.sample import generate, grid_image, latents, to_uint8
from dcgan.web.limits import check_time, holding

#: Largest upload accepted for projection, and the largest image (in pixels) Pillow is asked to decode.
MAX_UPLOAD_BYTES = 5 * 2**20
MAX_UPLOAD_PIXELS = 40_000_000
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


def png(image: Image.Image) -> str:
    """A PIL image as a `data:image/png;base64,...` URL, which an <img> shows and a link downloads."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast: the page asks for dozens at a time
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_of(sample: torch.Tensor) -> Image.Image:
    """One generated image (C, S, S) in [-1, 1] as a PIL image (grey for one channel)."""
    array = to_uint8(sample).permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def pngs(images: torch.Tensor) -> list[str]:
    return [png(image_of(x)) for x in images]


def npy_bytes(z: torch.Tensor) -> bytes:
    """z (n, nz) as the bytes of the `.npy` file `dcgan.latent.save_z` writes (and `load_z` reads back)."""
    with tempfile.TemporaryDirectory() as folder:
        return save_z(z, Path(folder) / "z.npy").read_bytes()


def read_upload(data: bytes, image_size: int, channels: int) -> torch.Tensor:
    """Uploaded bytes -> one image (1, C, S, S) in [-1, 1], resized and centre-cropped like the training data.

    Raises:
        DataError: the upload is empty, too large, not an image Pillow decodes, or absurdly many pixels.
    """
    from dcgan.data.transform import pil_to_array

    if not data:
        raise DataError("The upload is empty.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"The upload is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB.")
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as image:
            if image.width * image.height > MAX_UPLOAD_PIXELS:
                raise DataError(f"The image is {image.width}x{image.height} pixels; the limit is 40 megapixels.")
            array = pil_to_array(image, image_size, channels)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        formats = ", ".join(UPLOAD_FORMATS)
        raise DataError(f"The upload is not an image that can be read ({formats}; {type(exc).__name__}).") from exc
    return torch.tensor(array)[None].float().div(127.5).sub(1)


@dataclass
class Explorer:
    """A trained generator and the facts the page shows about it; every method is safe to call from many threads."""

    generator: Generator
    step: int = 0
    name: str = "generator"

    def __post_init__(self) -> None:
        # G runs under the inference plan measured fastest here (`dcgan.plan.inference`): its layout is set once, as
        # the worker threads share G, and its precision and convolution path apply to each use (`_holding_g`).
        self.generator = self.generator.cpu().eval()
        self.plan = generator_plan(self.generator).plan
        self.generator.to(memory_format=self.plan.memory_format)
        # Projection's plan is chosen now too, so that the first upload does not spend its time limit timing plans.
        generator_plan(self.generator, backward=True, forced={"precision": "fp32"})
        self.lock = threading.Lock()
        self.projection_lock = threading.Lock()
        self._projector = copy.deepcopy(self.generator)  # projection toggles requires_grad; never on the shared G
        # The projection calls G once per step: the cooperative place to stop one that is past its time limit.
        self._projector.register_forward_pre_hook(lambda module, args: check_time())

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, ema: bool = True) -> Explorer:
        """The explorer of a run folder (its newest checkpoint) or a checkpoint file."""
        from dcgan.run import Run

        run = Run.open(path)
        return cls(run.generator(ema=ema), run.step, run.name)

    @property
    def prior(self) -> str:
        """The latent prior G was trained with: what sheets and projection starts are drawn from."""
        return self.generator.prior

    # ------------------------------------------------------------------------------------------- checks

    @property
    def layers(self) -> list[int]:
        """Filter counts of G's hidden layers (index = layer number), the ones whose filters can be dropped."""
        return [num_filters(self.generator, layer) for layer in range(len(self.generator.blocks) - 1)]

    def vectors(self, rows: list[list[float]], what: str) -> torch.Tensor:
        """Rows of numbers -> (n, nz) float tensor, or a ConfigError naming `what` and what was wrong."""
        nz = self.generator.nz
        if not rows:
            raise ConfigError(f"{what} is empty; it needs at least one latent vector.")
        bad = [len(row) for row in rows if len(row) != nz]
        if bad:
            raise ConfigError(f"{what} holds a vector of length {bad[0]}; this generator takes vectors of {nz}.")
        return torch.tensor(rows, dtype=torch.float32)

    def class_id(self, klass: str | int | None) -> int | None:
        """The class a request names (a name or an id) as an id; None for an unconditional generator.

        Raises:
            ConfigError: a class for an unconditional generator, none for a conditional one, an unknown name or an
                id out of range; one sentence naming the valid classes.
        """
        if klass is None:
            if self.generator.num_classes:
                raise ConfigError(
                    f"This generator is class-conditional: give a class, one of {class_list(self.generator)}."
                )
            return None
        return resolve_class(self.generator, klass)

    def drawing(self, klass: str | int | None) -> Generator | ClassGenerator:
        """The generator of z that draws in the class named: G itself for an unconditional G."""
        label = self.class_id(klass)
        return self.generator if label is None else ClassGenerator(self.generator, label)

    @contextlib.contextmanager
    def _holding_g(self) -> Iterator[None]:
        """The shared G for this thread: its lock held (`holding`: until the request's deadline), its plan applied."""
        with holding(self.lock), running(self.plan):
            yield

    def _generate(self, z: torch.Tensor, klass: str | int | None = None) -> torch.Tensor:
        generator = self.drawing(klass)
        with self._holding_g():
            return generate(generator, z)

    # ------------------------------------------------------------------------------------------- results

    def info(self) -> dict[str, Any]:
        g = self.generator
        return {
            "name": self.name, "step": self.step, "prior": self.prior, "nz": g.nz,
            "image_size": g.image_size, "channels": g.channels, "layers": self.layers,
            "classes": list(g.classes) if g.num_classes else [],
        }  # fmt: skip

    def sheet(self, seed: int, start: int, n: int, klass: str | int | None = None) -> dict[str, Any]:
        """Samples start .. start+n-1 of the seed's sheet: the same numbers `dcgan sample --seed` gives (in class
        `klass` for a conditional generator)."""
        z = latents(start + n, self.generator.nz, self.prior, seed)[start:]
        images = self._generate(z, klass)
        return {"seed": seed, "start": start, "z": z.tolist(), "images": pngs(images), **self._class_of(klass)}

    def sheet_png(self, seed: int, start: int, n: int, klass: str | int | None = None) -> str:
        """The numbered sheet (each image's sheet number drawn on it), as one PNG."""
        z = latents(start + n, self.generator.nz, self.prior, seed)[start:]
        return png(numbered_sheet(self._generate(z, klass), start=start))

    def _class_of(self, klass: str | int | None) -> dict[str, Any]:
        """{"class": id, "class_name": name} of the class a request named, for its answer; {} if unconditional."""
        label = self.class_id(klass)
        return {} if label is None else {"class": label, "class_name": self.generator.classes[label]}

    def classes(self, rows: list[list[float]]) -> dict[str, Any]:
        """The same z drawn in every class: a conditional generator's style (z) apart from its class (the label).

        Returns {"classes": names, "images": one list of PNGs per class, "grid": one row per class, each row
        labelled with its class, one column per z}.
        """
        if not self.generator.num_classes:
            raise ConfigError("This generator is unconditional: it has no classes to draw the same z in.")
        z = self.vectors(rows, "z")
        with self._holding_g():
            images = every_class(self.generator, z)
        names = list(self.generator.classes)
        grid = grid_image(images.flatten(0, 1), nrow=z.shape[0])
        return {
            "classes": names,
            "images": [pngs(row) for row in images],
            "grid": png(row_labelled(grid, names, self.generator.image_size + 2, top=2)),
            "z": z.tolist(),
        }

    def arithmetic(
        self,
        a: list[list[float]],
        b: list[list[float]],
        c: list[list[float]],
        noise: float,
        seed: int,
        klass: str | int | None = None,
    ) -> dict[str, Any]:
        """mean(A) - mean(B) + mean(C) and 8 noisy neighbours (paper Figure 7)."""
        from dcgan.latent import arithmetic_figure

        generator = self.drawing(klass)
        za, zb, zc = (self.vectors(rows, f"Group {name}") for rows, name in ((a, "A"), (b, "B"), (c, "C")))
        with self._holding_g():
            result = vector_arithmetic(generator, za, zb, zc, noise=noise, n_noisy=8, seed=seed)
        images = result.result_images
        tiles = torch.cat([images[1:5], images[:1], images[5:9]])  # the result in the middle of a 3x3 grid
        z = torch.cat([result.result[None], result.noisy])
        return {
            "result": png(image_of(images[0])),
            "neighbours": pngs(images[1:]),
            "means": pngs(result.mean_images),
            "pixel_sum": png(image_of(result.pixel_result)),
            "grid": png(grid_image(tiles, nrow=3)),
            "figure": png(arithmetic_figure(result)),
            "z": z.tolist(),
        }

    def walk(
        self, z0: list[float], z1: list[float], steps: int, method: str, klass: str | int | None = None
    ) -> dict[str, Any]:
        """`steps` samples on the straight or spherical path from z0 to z1."""
        ends = self.vectors([z0, z1], "The walk's end points")
        path = interpolate(ends[0], ends[1], steps, method)
        images = self._generate(path, klass)
        return {"images": pngs(images), "strip": png(grid_image(images, nrow=steps)), "z": path.tolist()}

    def direction(
        self,
        a: list[list[float]],
        b: list[list[float]],
        start: list[float],
        steps: int,
        span: float,
        klass: str | int | None = None,
    ) -> dict[str, Any]:
        """The start sample moved along mean(A) - mean(B) by amounts from -span to span (paper Figure 8)."""
        generator = self.drawing(klass)
        za, zb = self.vectors(a, "Group A"), self.vectors(b, "Group B")
        starts = self.vectors([start], "The start")
        with self._holding_g():
            result = attribute_direction(generator, za, zb, starts, steps=steps, span=span)
        return {
            "images": pngs(result.images),
            "strip": png(grid_image(result.images, nrow=steps)),
            "amounts": result.amounts.tolist(),
            "z": result.z.tolist(),
        }

    def drop(
        self, rows: list[list[float]], layer: int, filters: list[int], klass: str | int | None = None
    ) -> dict[str, Any]:
        """G(z) with the given filters of `layer` switched off, next to G(z) with all of them on."""
        generator = self.drawing(klass)
        z = self.vectors(rows, "z")
        count = num_filters(generator, layer)
        wrong = [f for f in filters if not 0 <= f < count]
        if wrong:
            raise ConfigError(f"Filter {wrong[0]} does not exist: layer {layer} has filters 0 to {count - 1}.")
        with self._holding_g():  # the hook is on the shared G: no other request may run it meanwhile
            dropped = drop_filters(generator, z, layer, sorted(set(filters)))
            kept = generate(generator, z)
        return {
            "images": pngs(dropped), "original": pngs(kept),
            "grid": png(grid_image(dropped)), "original_grid": png(grid_image(kept)),
        }  # fmt: skip

    def project_upload(
        self, data: bytes, steps: int, restarts: int, seed: int, klass: str | int | None = None
    ) -> dict[str, Any]:
        """An uploaded image brought into z (`dcgan.projection.project`): the image as G sees it, G(z) and z. A
        conditional generator projects it within the class named (the class the image shows)."""
        label = self.class_id(klass)
        projector = self._projector if label is None else ClassGenerator(self._projector, label)
        target = read_upload(data, self.generator.image_size, self.generator.channels)
        with holding(self.projection_lock):
            found = project(projector, target, steps=steps, restarts=restarts, seed=seed)
        return {
            "target": png(image_of(target[0])),
            "image": png(image_of(found.reconstructions[0])),
            "pair": png(grid_image(torch.cat([target, found.reconstructions]), nrow=2)),
            "error": float(found.error[0]),
            "z": found.z.tolist(),
        }
