"""A class-conditional G with its class fixed, and the same z drawn in every class."""

from __future__ import annotations

import pytest
import torch

from dcgan.conditional import ClassGenerator, every_class, in_class
from dcgan.errors import ConfigError
from dcgan.latent import attribute_direction, vector_arithmetic
from dcgan.models import Generator
from dcgan.sample import generate, latents


@pytest.fixture(scope="module", params=["concat", "cbn"])
def conditional(request: pytest.FixtureRequest) -> Generator:
    torch.manual_seed(0)
    g = Generator(16, 1, nz=8, ngf=8, num_classes=3, conditioning=request.param)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.2)  # classes that look different
    g.classes = ("T-shirt/top", "Trouser", "Sandal")
    return g.eval()


def test_a_class_generator_is_g_with_that_label(conditional: Generator) -> None:
    z = latents(5, 8, "uniform", seed=1)
    drawn = ClassGenerator(conditional, 2)
    with torch.no_grad():
        want = conditional(z, torch.full((5,), 2))
        torch.testing.assert_close(drawn(z), want, atol=0, rtol=0)
        assert (conditional(z, torch.full((5,), 0)) - want).abs().max() > 0.05
    assert (drawn.nz, drawn.image_size, drawn.prior, drawn.num_classes, drawn.class_name) == (
        8,
        16,
        "uniform",
        0,
        "Sandal",
    )
    assert drawn.blocks is conditional.blocks and list(drawn.parameters()) == list(conditional.parameters())
    with pytest.raises(ValueError, match="draws class Sandal only"):
        drawn(z, torch.zeros(5, dtype=torch.long))


def test_in_class_resolves_names_and_ids_and_says_what_is_missing(conditional: Generator) -> None:
    assert isinstance(in_class(conditional, "trouser"), ClassGenerator) and in_class(conditional, "1").label == 1
    assert in_class(conditional, 2).class_name == "Sandal"
    with pytest.raises(ConfigError, match=r"^This generator is class-conditional; give a class: 0 \(T-shirt/top\), "):
        in_class(conditional, None)
    with pytest.raises(ConfigError, match="Unknown class 'Boot'"):
        in_class(conditional, "Boot")
    with pytest.raises(ConfigError, match="Class id 3 is out of range"):
        in_class(conditional, 3)
    plain = Generator(16, 1, nz=8, ngf=8)
    assert in_class(plain, None) is plain
    with pytest.raises(ConfigError, match="unconditional"):
        in_class(plain, "Trouser")
    with pytest.raises(ConfigError, match="unconditional"):
        ClassGenerator(plain, 0)


def test_every_class_draws_the_same_z_in_each_class(conditional: Generator) -> None:
    z = latents(4, 8, "uniform", seed=2)
    images = every_class(conditional, z)
    assert images.shape == (3, 4, 1, 16, 16)
    for k in range(3):
        torch.testing.assert_close(images[k], generate(ClassGenerator(conditional, k), z), atol=0, rtol=0)
    assert (images[0] - images[1]).abs().max() > 0.05
    with pytest.raises(ConfigError, match="unconditional"):
        every_class(Generator(16, 1, nz=8, ngf=8), z)


def test_latent_tools_work_within_a_class(conditional: Generator) -> None:
    """Arithmetic and directions are tools of z: with the class fixed they run unchanged, in that class."""
    drawn = ClassGenerator(conditional, 1)
    z = latents(6, 8, "uniform", seed=3)
    result = vector_arithmetic(drawn, z[:2], z[2:4], z[4:6], n_noisy=2)
    with torch.no_grad():
        torch.testing.assert_close(result.result_images[0], conditional(result.result[None], torch.tensor([1]))[0])
    assert not conditional.training  # drawing through the class generator left G in its own (eval) mode
    sweep = attribute_direction(drawn, z[:2], z[2:4], z[4:5], steps=3)
    torch.testing.assert_close(sweep.images[1], generate(drawn, z[4:5])[0])  # t = 0 is the start, in class 1
