"""Using a class-conditional generator's label: G with its class fixed, and the same z drawn in every class.

A conditional G is a function of (z, y). Fixing y gives an ordinary generator of z alone, `ClassGenerator`, so
every tool written for z (interpolation, arithmetic, directions, filter dropping, projection, metrics) works
within one class unchanged. `every_class` draws the same z in each class: z carries the style (stroke width,
slant; a garment's shade), the label the class.
"""

from __future__ import annotations

import torch
from torch import nn

from dcgan.errors import ConfigError
from dcgan.models import Discriminator, Generator, resolve_class
from dcgan.sample import generate

UNCONDITIONAL = "This generator is unconditional: it was not trained with --conditional, so it has no classes."


class ClassGenerator(Generator):
    """A class-conditional G with its class fixed: z (N, nz) -> G(z, y) for every row, an unconditional generator.

    It is a `Generator` of z alone, so it goes wherever one does: it has G's `nz`, `image_size`, `channels`,
    `ngf`, `prior` and `blocks` (the same modules, so a hook on a layer acts on G), `num_classes` 0 (it takes no
    labels) and no weights of its own: it holds G, and `Generator.__init__`, which would build new layers, is not
    run.

    Args:
        generator: a class-conditional generator.
        label: the class id, from 0 to `generator.num_classes - 1` (`resolve_class` turns a name into one).
    """

    def __init__(self, generator: Generator, label: int) -> None:
        nn.Module.__init__(self)
        if not generator.num_classes:
            raise ConfigError(UNCONDITIONAL)
        if not 0 <= label < generator.num_classes:
            raise ConfigError(
                f"Class id {label} is out of range: this generator's classes are {class_list(generator)}."
            )
        self.generator, self.label = generator, int(label)
        # G's layers, for hooks; a mixture of snapshots (`dcgan.mixture`) has a set per member and lends none
        self.blocks = getattr(generator, "blocks", nn.Sequential())
        self.nz, self.image_size, self.channels = generator.nz, generator.image_size, generator.channels
        self.ngf, self.prior = generator.ngf, generator.prior
        self.num_classes, self.conditioning, self.classes, self.class_shares = 0, "none", (), None
        #: The class's name (`generator.classes[label]`).
        self.class_name = generator.classes[self.label]
        self.training = generator.training  # in G's mode, so that code restoring "its" mode leaves G's as it was

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is not None:
            raise ValueError(f"This generator draws class {self.class_name} only: it takes no labels.")
        return self.generator(z, torch.full((z.shape[0],), self.label, dtype=torch.long, device=z.device))


class ClassDiscriminator(Discriminator):
    """A class-conditional D that judges every image as one of class y: x -> D(x, y), as `ClassGenerator` is G.

    It has D's `blocks` and `head` (the same modules), and `features(x)` are D's feature maps of x read with that
    label, so D's inspection tools (guided backprop) work on it unchanged.
    """

    def __init__(self, discriminator: Discriminator, label: int) -> None:
        nn.Module.__init__(self)
        if not discriminator.num_classes:
            raise ConfigError("This discriminator is unconditional: it judges no classes.")
        if not 0 <= label < discriminator.num_classes:
            raise ConfigError(f"Class id {label} is out of range: this discriminator has {discriminator.num_classes}.")
        self.discriminator, self.label = discriminator, int(label)
        self.blocks, self.head = discriminator.blocks, discriminator.head
        self.image_size, self.channels, self.ndf = discriminator.image_size, discriminator.channels, discriminator.ndf
        self.num_classes, self.conditioning = 0, "none"
        self.training = discriminator.training

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), self.label, dtype=torch.long, device=x.device)

    def features(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> list[torch.Tensor]:
        return self.discriminator.features(x, self._labels(x))

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, parts: int = 1, classes: bool = False
    ) -> torch.Tensor:
        return self.discriminator(x, self._labels(x), parts, classes)


def in_class(generator: Generator, name_or_id: str | int | None) -> Generator:
    """`generator` drawing only the class named (a name or an id, checked by `resolve_class`); `generator` itself
    for None and an unconditional generator.

    Raises:
        ConfigError: a class given for an unconditional generator, none given for a conditional one, or a class
            it does not have; one sentence, naming the valid classes.
    """
    if name_or_id is None:
        if generator.num_classes:
            raise ConfigError(f"This generator is class-conditional; give a class: {class_list(generator)}.")
        return generator
    return ClassGenerator(generator, resolve_class(generator, name_or_id))


def class_list(generator: Generator) -> str:
    """The classes as a user names them: "0 (T-shirt/top), 1 (Trouser), ..." (just "0, 1, ..." for digits)."""
    return ", ".join(f"{i} ({name})" if name != str(i) else str(i) for i, name in enumerate(generator.classes))


@torch.no_grad()
def every_class(generator: Generator, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """G(z, y) for every row of z (n, nz) in every class y: images (num_classes, n, C, S, S), row y class y.

    Raises:
        ConfigError: the generator is unconditional.
    """
    if not generator.num_classes:
        raise ConfigError(UNCONDITIONAL)
    return torch.stack([generate(ClassGenerator(generator, k), z, batch_size) for k in range(generator.num_classes)])
