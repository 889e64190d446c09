"""Bringing real images into z: optimise z so that G(z) reconstructs the image, optionally from an encoder's guess.

A GAN has no encoder, so a real photo has no z until one is searched for. `project` runs Adam on z for every
image and several random starts at once, on a pixel loss (and, optionally, a loss on D's features, which cares
about what D looks at more than about exact pixels), and keeps the best start of each image. `fit_encoder` trains a
small convolutional E: x -> z on G's own samples, whose guess is a better first start than a random z.

G's forward and backward passes run in the layout and convolution path measured fastest for them on this machine
(`dcgan.plan.generator_plan(backward=True)`), and in fp32 even where bf16 is faster: bf16 rounds G(z) in [-1, 1] by
up to 2^-8, half a grey level, which is the size of the differences the last steps of a good projection refine, so
it would blur the search and misstate `Projection.error`, the error of the z returned.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dcgan.errors import ConfigError, DataError
from dcgan.models import Discriminator, Generator, sample_prior
from dcgan.plan.inference import applied, generator_plan

#: Added to the seed of projection's random starts and encoder samples, to keep them off the sheets' latents.
#: torch seeds its CPU generator with the seed's low 32 bits only, so the offset must change those (2**32 did not).
SEED_OFFSET = 0x9E3779B9


@dataclass
class Projection:
    """The best z found for each image, G(z), and the per-image mean squared pixel error before and after.

    The error never exceeds the start's: every start keeps the best z it passed through, not just its last.
    """

    z: torch.Tensor  # (n, nz)
    reconstructions: torch.Tensor  # (n, C, S, S) in [-1, 1]
    start_error: torch.Tensor  # (n,) pixel MSE of the best start before any step
    error: torch.Tensor  # (n,) pixel MSE of the returned z
    steps: int
    restarts: int


def load_image_files(paths: Sequence[str | Path], image_size: int, channels: int) -> torch.Tensor:
    """Read image files as (n, C, S, S) floats in [-1, 1], resized and centre-cropped like the training data.

    Raises:
        DataError: a file is missing or is not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    from dcgan.data.transform import pil_to_array

    arrays = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"No such image file: {path}.")
        try:
            with Image.open(path) as image:
                arrays.append(torch.tensor(pil_to_array(image, image_size, channels)))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path} is not an image that can be read ({type(exc).__name__}).") from exc
    if not arrays:
        raise DataError("No image files were given.")
    return torch.stack(arrays).float().div(127.5).sub(1)


class Encoder(nn.Module):
    """x -> z: strided convolutions like the discriminator's, then a linear map to nz (tanh for a uniform prior)."""

    def __init__(self, image_size: int, channels: int, nz: int, width: int = 32, prior: str = "uniform") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, cout, size = channels, width, image_size
        while size > 4:  # halve the size, double the width (up to 8x), like D
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]
            cin, cout, size = cout, min(cout * 2, width * 8), size // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin * 16, nz)
        self.bounded = prior == "uniform"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.features(x).flatten(1))
        return torch.tanh(z) if self.bounded else z


def fit_encoder(
    generator: Generator,
    *,
    prior: str | None = None,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> Encoder:
    """Train an `Encoder` to invert G on G's own samples (z ~ prior, x = G(z), loss |E(x) - z|^2), with Adam.

    `prior` defaults to the one G was trained with (`generator.prior`).
    """
    prior = prior or generator.prior
    torch.manual_seed(seed)
    device = next(generator.parameters()).device
    encoder = Encoder(generator.image_size, generator.channels, generator.nz, prior=prior).to(device)
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    noise = torch.Generator(device).manual_seed(seed + SEED_OFFSET)
    generator.eval()
    for _ in range(steps):
        z = sample_prior(batch_size, generator.nz, prior, noise, device)
        with torch.no_grad():
            x = generator(z)
        loss = F.mse_loss(encoder(x), z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return encoder.eval()


def project(
    generator: Generator,
    images: torch.Tensor,
    *,
    prior: str | None = None,
    steps: int = 200,
    restarts: int = 4,
    lr: float = 0.05,
    discriminator: Discriminator | None = None,
    feature_weight: float = 0.0,
    encoder: Encoder | None = None,
    seed: int = 0,
) -> Projection:
    """Find z for each image (n, C, S, S in [-1, 1]) with G(z) close to it; the best of `restarts` starts.

    The loss per start is the mean squared pixel error, plus `feature_weight` times the mean squared difference of
    D's feature maps (every block) when a discriminator is given. Starts are drawn from the prior (by default
    `generator.prior`) with `seed`; with an encoder, the first start is E(x). A uniform prior's z is kept inside
    [-1, 1] after every step.

    Raises:
        ConfigError: the images do not match the generator, or steps/restarts are not positive.
    """
    if images.ndim != 4 or tuple(images.shape[1:]) != (generator.channels, generator.image_size, generator.image_size):
        raise ConfigError(
            f"Images of shape {tuple(images.shape[1:])} do not match the generator's "
            f"({generator.channels}, {generator.image_size}, {generator.image_size})."
        )
    if steps < 1 or restarts < 1:
        raise ConfigError(f"Projection needs steps >= 1 and restarts >= 1, got {steps} and {restarts}.")
    if feature_weight > 0 and discriminator is None:
        raise ConfigError("A feature loss needs the run's discriminator.")
    prior = prior or generator.prior
    plan = generator_plan(generator, backward=True, forced={"precision": "fp32"}).plan
    with _frozen(generator, discriminator), applied(generator, plan):
        return _project(generator, images, prior, steps, restarts, lr, discriminator, feature_weight, encoder, seed)


@contextmanager
def _frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Modules in eval mode with no weight gradients (only z is optimised), restored afterwards."""
    present = [m for m in modules if m is not None]
    saved = [([p.requires_grad for p in m.parameters()], m.training) for m in present]
    for m in present:
        m.eval().requires_grad_(False)
    try:
        yield
    finally:
        for m, (flags, training) in zip(present, saved):
            for p, flag in zip(m.parameters(), flags):
                p.requires_grad_(flag)
            m.train(training)


def _project(
    generator: Generator,
    images: torch.Tensor,
    prior: str,
    steps: int,
    restarts: int,
    lr: float,
    discriminator: Discriminator | None,
    feature_weight: float,
    encoder: Encoder | None,
    seed: int,
) -> Projection:
    device = next(generator.parameters()).device
    n = images.shape[0]
    target = images.to(device).float().repeat(restarts, 1, 1, 1)  # start r of image i is row r * n + i
    # A stream apart from the sample sheets' (`latents(seed)`), so a start is never the very z of a sheet image.
    starts = torch.Generator().manual_seed(seed + SEED_OFFSET)
    z = sample_prior(n * restarts, generator.nz, prior, starts).to(device)
    if encoder is not None:
        with torch.no_grad():
            z[:n] = encoder(images.to(device).float())
    target_features = _features(discriminator, target) if feature_weight > 0 and discriminator is not None else []
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)

    def losses() -> tuple[torch.Tensor, torch.Tensor]:
        fake = generator(z)
        pixel = (fake - target).pow(2).flatten(1).mean(1)
        total = pixel
        if target_features:
            fake_features = _features(discriminator, fake)
            total = total + feature_weight * sum(
                (f - t).pow(2).flatten(1).mean(1) for f, t in zip(fake_features, target_features)
            )
        return pixel, total

    with torch.no_grad():
        start = losses()[0]
    kept_error, kept_z = start.clone(), z.detach().clone()  # each start's best z so far: Adam may overshoot
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        pixel, total = losses()
        total.sum().backward()
        with torch.no_grad():
            better = pixel.detach() < kept_error
            kept_error = torch.where(better, pixel.detach(), kept_error)
            kept_z[better] = z.detach()[better]
        opt.step()
        if prior == "uniform":
            with torch.no_grad():
                z.clamp_(-1, 1)
    with torch.no_grad():
        last = losses()[0]
        better = last < kept_error
        kept_error = torch.where(better, last, kept_error)
        kept_z[better] = z.detach()[better]
        error = kept_error.reshape(restarts, n)
        best = error.argmin(0)
        z_best = kept_z[best * n + torch.arange(n, device=device)]
        reconstructions = generator(z_best).float().cpu()
    return Projection(
        z_best.cpu(),
        reconstructions,
        start.reshape(restarts, n).min(0).values.cpu(),
        error[best, torch.arange(n, device=device)].cpu(),
        steps,
        restarts,
    )


def _features(discriminator: Discriminator | None, x: torch.Tensor) -> list[torch.Tensor]:
    return discriminator.features(x) if discriminator is not None else []
