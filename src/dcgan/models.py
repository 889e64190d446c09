"""The DCGAN generator and discriminator (paper section 3), for any power-of-two size from 16 to 256.

Both are plain `nn.Sequential` stacks of `Block`s so that later tools (filter ablation, guided backprop,
feature probes) can address a layer by its index: `G.blocks[i]` and `D.blocks[i]`.

With `num_classes` > 0 both are class-conditional: G draws the class it is given and D judges an image together
with its label. `conditioning` says how the label enters (`CONDITIONINGS`); every choice keeps the paper's
guidelines (no fully connected hidden layer, no pooling, batchnorm everywhere but G's output and D's input):

- "concat": the classic conditional GAN. G's input is z joined with the label's one-hot vector, so its first
  layer learns one 4x4 map per class; D's input is the image joined with one constant one-hot plane per class.
  D gets the label at its input rather than at a hidden layer because its input layer is the one without
  batchnorm: nothing renormalises the class signal before D's first filters can use it with the pixels.
- "cbn": G's batchnorm layers are class-conditional (`ConditionalBatchNorm2d`: a gain and bias per class instead
  of one affine pair), D as in "concat".
- "projection": G as in "cbn"; D is Miyato & Koyama's projection discriminator (2018): its logit is the
  unconditional head plus the inner product of a learned class embedding with D's last feature map. The map is
  used whole (C x 4 x 4) rather than sum-pooled as in their paper, which keeps the no-pooling guideline and
  makes the class term the same kind of linear read-out as D's own 4x4 head.
- "acgan": G as in "concat"; D takes no label. Beside its real/fake head it has a second 4x4 head, `classifier`,
  that reads the class from its last feature map, and training adds Odena et al.'s auxiliary classifier loss
  (AC-GAN, 2017): D learns to name the class of the real images and of the fakes (the class each was drawn
  in), and G to draw fakes that D names as their class. `forward(..., classes=True)` returns both heads.

A model with `num_classes` = 0 has no conditioning module at all: the same parameters, initialisation and
outputs as before conditioning existed, so old checkpoints load and resume unchanged.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from dcgan.config import CONDITIONINGS, PRIORS
from dcgan.errors import ConfigError
from dcgan.gemm_conv import Conv2d, ConvTranspose2d

#: The conditionings whose G joins the label's one-hot vector to z.
ONE_HOT_Z = ("concat", "acgan")
#: Channel multipliers stop growing here: a 256x256 G starts at ngf * 8 channels, not ngf * 32.
MAX_MULTIPLIER = 8


def num_stages(image_size: int) -> int:
    """Number of stride-2 stages between the 4x4 core and the image: log2(size) - 2."""
    if image_size < 16 or image_size > 256 or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two from 16 to 256, got {image_size}")
    return int(math.log2(image_size)) - 2


def _multipliers(image_size: int) -> list[int]:
    """Width multipliers from the widest (4x4) layer down to the last hidden layer, e.g. [8, 4, 2, 1] for 64."""
    stages = num_stages(image_size)
    return [min(2 ** (stages - 1 - i), MAX_MULTIPLIER) for i in range(stages)]


class Block(nn.Sequential):
    """A (transposed) convolution, optional batchnorm, and an activation: one DCGAN layer."""


class ConditionalBatchNorm2d(nn.Module):
    """Batchnorm whose affine step is chosen by the class: `norm(x) * gain[y] + bias[y]` (de Vries et al. 2017,
    Miyato & Koyama 2018). `norm` is a plain `BatchNorm2d` without its own affine pair, so per-part
    normalisation, SyncBatchNorm and re-estimating statistics treat it as any other batchnorm.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        #: Row y holds class y's gains then its biases; `init_weights` starts every class at the paper's
        #: batchnorm initialisation (gain N(1, 0.02), bias 0).
        self.embed = nn.Embedding(num_classes, 2 * num_features)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        normed = self.norm(x)
        gain, bias = self.embed(labels).to(normed.dtype)[:, :, None, None].chunk(2, dim=1)
        return normed * gain + bias


def _g_block(cin: int, cout: int, first: bool, num_classes: int = 0) -> Block:
    stride, pad = (1, 0) if first else (2, 1)
    return Block(
        ConvTranspose2d(cin, cout, 4, stride, pad, bias=False),
        ConditionalBatchNorm2d(cout, num_classes) if num_classes else nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _check_conditioning(num_classes: int, conditioning: str) -> None:
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")
    if num_classes == 0 and conditioning != "none":
        raise ValueError(f"conditioning {conditioning!r} needs num_classes >= 2; an unconditional model has 'none'")
    if num_classes != 0 and (num_classes < 2 or conditioning == "none"):
        raise ValueError(f"a conditional model needs num_classes >= 2 and a conditioning, got {num_classes}, 'none'")


def _check_labels(model: Generator | Discriminator, n: int, labels: torch.Tensor | None) -> None:
    """A conditional model needs one label per image; an unconditional one takes none."""
    if model.num_classes and labels is None:
        raise ValueError(f"This {type(model).__name__} is class-conditional: give labels, one class id per image.")
    if not model.num_classes and labels is not None:
        raise ValueError(f"This {type(model).__name__} is unconditional: it takes no labels.")
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"Labels must have shape ({n},), one class id per image, got {tuple(labels.shape)}.")


class Generator(nn.Module):
    """z (N, nz) -> images (N, channels, size, size) in [-1, 1]; with `num_classes` > 0, (z, labels) -> images.

    Fractionally-strided convolutions only; batchnorm and ReLU on every layer but the output, which is Tanh.
    `prior` ("uniform" on [-1, 1], the paper's, or "normal") is part of the model: z must come from it.
    `conditioning` is how a conditional G takes its label (see the module docstring): "concat" joins the
    label's one-hot vector to z (so does "acgan"), "cbn" and "projection" use class-conditional batchnorm.
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        nz: int = 100,
        ngf: int = 64,
        prior: str = "uniform",
        num_classes: int = 0,
        conditioning: str = "none",
    ) -> None:
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
        _check_conditioning(num_classes, conditioning)
        self.image_size, self.channels, self.nz, self.ngf = image_size, channels, nz, ngf
        #: The latent prior G was trained with: what its samples, sheets and evaluations draw z from.
        self.prior = prior
        #: How many classes G draws (0: unconditional), how it takes the label, and the classes' names
        #: (a checkpoint's names replace these defaults when a run is opened).
        self.num_classes, self.conditioning = num_classes, conditioning
        self.classes: tuple[str, ...] = tuple(str(i) for i in range(num_classes))
        #: Each class's share among the images G was trained on (a checkpoint's `class_shares`): what samples
        #: meant to stand for the whole data set are drawn in (`dcgan.metrics.evaluate.requested_classes`).
        #: None where unknown: the classes are then drawn evenly.
        self.class_shares: tuple[float, ...] | None = None
        norm_classes = num_classes if conditioning in ("cbn", "projection") else 0
        widths = [ngf * m for m in _multipliers(image_size)]
        cin = nz + (num_classes if conditioning in ONE_HOT_Z else 0)
        layers: list[nn.Module] = [_g_block(cin, widths[0], first=True, num_classes=norm_classes)]
        layers += [_g_block(a, b, first=False, num_classes=norm_classes) for a, b in itertools.pairwise(widths)]
        layers.append(Block(ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=True), nn.Tanh()))
        self.blocks = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images for latents `z` (N, nz) and, for a conditional G, `labels`: class ids (N,), a LongTensor."""
        _check_labels(self, z.shape[0], labels)
        x = z.reshape(z.shape[0], self.nz, 1, 1)
        if labels is None:
            return self.blocks(x)
        if self.conditioning in ONE_HOT_Z:
            return self.blocks(torch.cat([x, _one_hot(labels, self.num_classes, x)], dim=1))
        for block in self.blocks:
            for layer in block.children():
                x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
        return x


def _one_hot(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """(N,) class ids -> (N, num_classes, H, W) one-hot planes of `like`'s dtype and spatial size."""
    planes = F.one_hot(labels, num_classes).to(like.dtype)[:, :, None, None]
    return planes.expand(-1, -1, like.shape[2], like.shape[3])


def _d_block(cin: int, cout: int, batchnorm: bool) -> Block:
    layers: list[nn.Module] = [Conv2d(cin, cout, 4, 2, 1, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return Block(*layers)


class Discriminator(nn.Module):
    """images (N, channels, size, size) -> logits (N,); D's probability is `torch.sigmoid(logits)`.

    Strided convolutions only, no pooling and no fully connected layer; batchnorm on every layer but the
    input one; LeakyReLU(0.2). With `num_classes` > 0, (images, labels) -> logits: how real the image is as an
    image of that class. "concat" and "cbn" join one-hot label planes to the image; "projection" adds
    `<embed[y], last feature map>` to the logit; "acgan" judges the image alone and names its class with a second
    head (see the module docstring).
    """

    def __init__(
        self, image_size: int = 64, channels: int = 3, ndf: int = 64, num_classes: int = 0, conditioning: str = "none"
    ) -> None:
        super().__init__()
        _check_conditioning(num_classes, conditioning)
        self.image_size, self.channels, self.ndf = image_size, channels, ndf
        self.num_classes, self.conditioning = num_classes, conditioning
        self._label_planes = num_classes if conditioning in ("concat", "cbn") else 0
        widths = [ndf * m for m in reversed(_multipliers(image_size))]
        layers: list[nn.Module] = [_d_block(channels + self._label_planes, widths[0], batchnorm=False)]
        layers += [_d_block(a, b, batchnorm=True) for a, b in itertools.pairwise(widths)]
        self.blocks = nn.Sequential(*layers)
        self.head = Conv2d(widths[-1], 1, 4, 1, 0, bias=True)
        if conditioning == "projection":
            #: Class y's row, shaped as D's last (C, 4, 4) map, is what the map is projected on.
            self.embed = nn.Embedding(num_classes, widths[-1] * 16)
        if conditioning == "acgan":
            #: The auxiliary classifier: class logits from the last 4x4 map, a 4x4 read-out like `head`.
            self.classifier = Conv2d(widths[-1], num_classes, 4, 1, 0, bias=True)
        init_weights(self)

    def _input(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        _check_labels(self, x.shape[0], labels)
        if labels is None or not self._label_planes:
            return x
        return _keep_layout(torch.cat([x, _one_hot(labels, self.num_classes, x)], dim=1), x)

    def features(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The activation map after each conv block, from the first (largest) to the last (4x4).

        Tools that read D's features of unlabelled images (the probe, guided backprop, projection's feature
        loss) call `features(x)` on any D. A "concat" or "cbn" D, which reads the label with the image, then
        sees no class: its label planes are all zero, so the maps are those of the pixels alone; given `labels`
        it sees those classes. A "projection" or "acgan" D's features never depend on the label.
        """
        if self._label_planes:
            planes = torch.zeros(x.shape[0], self.num_classes, *x.shape[2:], dtype=x.dtype, device=x.device)
            if labels is not None:
                planes = _one_hot(labels, self.num_classes, x)
            x = _keep_layout(torch.cat([x, planes], dim=1), x)
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, parts: int = 1, classes: bool = False
    ) -> torch.Tensor:
        """Logits for `x` (and, for a conditional D, its `labels`: class ids (N,)). With `parts` > 1, x is that many
        equal batches stacked along the batch (training: the real batch, then the fake one), and each batchnorm
        layer normalises every part on its own, updating its running statistics once per part in order, so the
        logits, their gradients and the statistics are those of `parts` separate calls; the other layers act per
        image. One call instead of several means one backward pass and, under DDP, one gradient all-reduce.

        `classes` (an "acgan" D only): (N, 1 + num_classes), the logits then the auxiliary classifier's class
        logits, from one pass (an argument rather than a method so that it runs through a DDP wrapper)."""
        if classes and self.conditioning != "acgan":
            raise ValueError(f"only an 'acgan' discriminator names classes; this one's is {self.conditioning!r}")
        x = self._input(x, labels)
        if parts == 1:
            x = self.blocks(x)
        else:
            if x.shape[0] % parts:
                raise ValueError(f"a batch of {x.shape[0]} images does not split into {parts} equal parts")
            for block in self.blocks:
                for layer in block.children():
                    x = _per_part(layer, x, parts) if isinstance(layer, nn.modules.batchnorm._BatchNorm) else layer(x)
        logits = self.head(x).flatten()
        if self.conditioning == "projection":
            assert labels is not None
            # Summed in fp32 whatever the precision: the map has C x 16 terms.
            logits = logits + (self.embed(labels) * x.flatten(1).float()).sum(1)
        if classes:
            return torch.cat([logits[:, None], self.classifier(x).flatten(1)], dim=1)
        return logits


def _keep_layout(joined: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`joined` in `like`'s memory layout (channels_last stays channels_last after joining label planes)."""
    if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return joined.contiguous(memory_format=torch.channels_last)
    return joined


def _per_part(norm: nn.Module, x: torch.Tensor, parts: int) -> torch.Tensor:
    """`norm` applied to each of `parts` equal slices of the batch on its own, in order, then joined again.

    The slices are views (no copy in), and the module itself runs on each, so its running statistics get one
    momentum update per part, exactly as separate calls give, and a SyncBatchNorm still syncs each part.
    """
    return torch.cat([norm(part) for part in x.chunk(parts)])


@torch.no_grad()
def recalibrate_batchnorm(
    generator: Generator, prior: str | None = None, batches: int = 8, batch_size: int = 128, seed: int = 0
) -> Generator:
    """Re-estimate G's batchnorm statistics for its current weights, in place; returns G in eval mode.

    During training G only ever runs in train mode, where batchnorm uses each batch's own statistics, and its
    running averages trail weights that move every step; in eval mode those stale averages give visibly worse
    samples than the weights can draw. A cumulative average over `batches` fresh batches of latents (a fixed
    seed, so the result is reproducible) matches them to the weights again.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    device = next(generator.parameters()).device
    noise = torch.Generator(device).manual_seed(seed)
    generator.train()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    with torch.no_grad():
        for _ in range(batches):
            z = sample_prior(batch_size, generator.nz, prior or generator.prior, noise, device)
            # A conditional G is re-estimated on every class equally: the labels cycle through the classes.
            labels = torch.arange(batch_size, device=device) % generator.num_classes if generator.num_classes else None
            generator(z, labels)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return generator.eval()


def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: conv weights N(0, 0.02); batchnorm scales N(1, 0.02); biases zero.

    Conditioning modules follow the same rule: a class-conditional batchnorm's gains N(1, 0.02) and biases zero
    for every class, a projection embedding N(0, 0.02) like a conv weight.
    """
    class_norms = {id(m.embed) for m in module.modules() if isinstance(m, ConditionalBatchNorm2d)}
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding) and id(m) in class_norms:
            gain, bias = m.weight.data.chunk(2, dim=1)
            nn.init.normal_(gain, 1.0, 0.02)
            nn.init.zeros_(bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)


def resolve_class(generator: Generator, name_or_id: str | int) -> int:
    """The class id a user means by `name_or_id`: a class name (exact, else case-insensitive) or an id.

    Raises `ConfigError` (one sentence listing the valid classes) for an unknown name, an id out of range, or a
    generator that is not class-conditional.
    """
    if not generator.num_classes:
        raise ConfigError(
            "This generator is unconditional: it was not trained with --conditional, so it has no classes."
        )
    classes = generator.classes
    valid = ", ".join(f"{i} ({name})" if name != str(i) else str(i) for i, name in enumerate(classes))
    text = str(name_or_id).strip()
    if text in classes:
        return classes.index(text)
    folded = [i for i, name in enumerate(classes) if name.casefold() == text.casefold()]
    if len(folded) == 1:
        return folded[0]
    if isinstance(name_or_id, int) or text.lstrip("-").isdigit():
        index = int(text)
        if 0 <= index < len(classes):
            return index
        raise ConfigError(f"Class id {index} is out of range: this generator has {len(classes)} classes: {valid}.")
    raise ConfigError(f"Unknown class {text!r}: this generator's classes are {valid}.")


def sample_prior(
    n: int, nz: int, prior: str, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Draw n latent vectors from the paper's prior: uniform on [-1, 1] or a standard normal."""
    if prior == "uniform":
        return torch.rand(n, nz, generator=generator, device=device) * 2 - 1
    if prior == "normal":
        return torch.randn(n, nz, generator=generator, device=device)
    raise ValueError(f"unknown prior {prior!r}")
