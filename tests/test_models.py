"""The paper's architecture guidelines (section 3), checked on the built modules at every supported size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from dcgan.checkpoint import list_checkpoints, load_discriminator
from dcgan.data import ImageData
from dcgan.errors import ConfigError
from dcgan.models import (
    ConditionalBatchNorm2d,
    Discriminator,
    Generator,
    num_stages,
    resolve_class,
    sample_prior,
)
from dcgan.train import train
from tests.conftest import shapes_data, tiny_config

SIZES = [16, 32, 64, 128, 256]


def _modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not isinstance(m, (nn.Sequential,)) and m is not model]


def _kinds(block: nn.Module) -> list[type]:
    """Each layer's torch layer type (dcgan's GEMM-path convolutions are subclasses of torch's)."""
    kinds = [nn.ConvTranspose2d, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.Tanh]
    return [next(k for k in kinds if isinstance(m, k)) for m in block]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_shape_and_guidelines(size: int, channels: int) -> None:
    g = Generator(size, channels, nz=100, ngf=8)
    z = sample_prior(2, 100, "uniform")
    out = g(z)
    assert out.shape == (2, channels, size, size)
    assert out.min() >= -1 and out.max() <= 1
    mods = _modules(g)
    convs = [m for m in mods if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(isinstance(m, nn.ConvTranspose2d) for m in convs), "G uses fractionally-strided convolutions only"
    assert len(convs) == num_stages(size) + 1, "the number of layers follows from the size"
    assert not any(isinstance(m, (nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) for m in mods)
    assert _kinds(g.blocks[-1]) == [nn.ConvTranspose2d, nn.Tanh], "no batchnorm on G's output; Tanh"
    for block in g.blocks[:-1]:
        assert _kinds(block) == [nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU]
    assert all(c.stride == (2, 2) for c in convs[1:])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_discriminator_shape_and_guidelines(size: int, channels: int) -> None:
    d = Discriminator(size, channels, ndf=8)
    logits = d(torch.randn(3, channels, size, size))
    assert logits.shape == (3,), "D returns one logit per image"
    mods = _modules(d)
    assert not any(isinstance(m, (nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) for m in mods)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in mods)
    assert _kinds(d.blocks[0]) == [nn.Conv2d, nn.LeakyReLU], "no batchnorm on D's input layer"
    for block in d.blocks[1:]:
        assert _kinds(block) == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU]
    assert all(m.negative_slope == 0.2 for m in mods if isinstance(m, nn.LeakyReLU))
    assert all(b[0].stride == (2, 2) for b in d.blocks), "downsampling by strided convolution, not pooling"
    assert [f.shape[-1] for f in d.features(torch.randn(1, channels, size, size))][-1] == 4


def test_paper_widths_at_64() -> None:
    g = Generator(64, 3, nz=100, ngf=128)
    widths = [b[0].out_channels for b in g.blocks]
    assert widths == [1024, 512, 256, 128, 3], "the paper's LSUN generator: 1024 channels at 4x4"


def test_weights_follow_the_paper_init() -> None:
    torch.manual_seed(0)
    g, d = Generator(64, 3, ngf=64), Discriminator(64, 3, ndf=64)
    for model in (g, d):
        w = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
        assert abs(w.mean().item()) < 1e-3
        assert w.std().item() == pytest.approx(0.02, rel=0.02)


def test_probability_is_sigmoid_of_logits(tmp_path: Path) -> None:
    """D's output is a logit, not a probability; the probability a run reports as D(x) is its sigmoid."""
    torch.manual_seed(0)
    d = Discriminator(16, 1, ndf=8).eval()
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    logits = d(torch.randn(64, 1, 16, 16))
    assert (logits < 0).any(), "a probability would never be negative"

    # A one-step run on copies of one image: every real batch is the same whatever the data order, so the D(x)
    # it logs must be the sigmoid of the step-0 discriminator's logits on that batch (in train mode, as trained).
    image = shapes_data(n=1).images
    data = ImageData(image.expand(64, -1, -1, -1).clone(), None, "one image", "train", "synthetic")
    run = tmp_path / "run"
    train(tiny_config(steps=1, log_every=1), run, data=data, progress=False)
    (logged,) = [r["d_x"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "d_x" in r]
    d0 = load_discriminator(list_checkpoints(run)[0]).train()
    with torch.no_grad():
        probability = float(torch.sigmoid(d0(image.float() / 127.5 - 1)))
    assert logged == pytest.approx(probability, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("prior", ["uniform", "normal"])
def test_priors(prior: str) -> None:
    z = sample_prior(10000, 100, prior, torch.Generator().manual_seed(0))
    if prior == "uniform":
        assert z.min() >= -1 and z.max() <= 1 and z.std().item() == pytest.approx(3**-0.5, rel=0.02)
    else:
        assert z.std().item() == pytest.approx(1.0, rel=0.02)


# ------------------------------------------------------------------------------------------ class-conditional
CONDITIONINGS = ["concat", "cbn", "projection", "acgan"]


def _norm_kind(layer: nn.Module) -> type:
    return ConditionalBatchNorm2d if isinstance(layer, ConditionalBatchNorm2d) else _kinds([layer])[0]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_conditional_shapes_and_guidelines(size: int, conditioning: str) -> None:
    """Conditional G and D keep every guideline: no fully connected hidden layer or pooling, batchnorm (plain or
    class-conditional) everywhere but G's output and D's input, ReLU/Tanh in G, LeakyReLU(0.2) in D."""
    g = Generator(size, 3, nz=16, ngf=2, num_classes=5, conditioning=conditioning)
    d = Discriminator(size, 3, ndf=2, num_classes=5, conditioning=conditioning)
    labels = torch.tensor([0, 4])
    images = g(sample_prior(2, 16, "uniform"), labels)
    assert images.shape == (2, 3, size, size) and images.min() >= -1 and images.max() <= 1
    assert d(images, labels).shape == (2,)
    if conditioning == "acgan":
        assert d(images, labels, classes=True).shape == (2, 6), "the logit, then one class logit per class"
    else:
        with pytest.raises(ValueError, match="only an 'acgan' discriminator names classes"):
            d(images, labels, classes=True)
    for model in (g, d):
        mods = _modules(model)
        assert not any(isinstance(m, (nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) for m in mods)
    norm = ConditionalBatchNorm2d if conditioning in ("cbn", "projection") else nn.BatchNorm2d
    for block in g.blocks[:-1]:
        assert [type(block[0]).__mro__[1], _norm_kind(block[1]), type(block[2])] == [nn.ConvTranspose2d, norm, nn.ReLU]
    assert _kinds(g.blocks[-1]) == [nn.ConvTranspose2d, nn.Tanh]
    assert _kinds(d.blocks[0]) == [nn.Conv2d, nn.LeakyReLU], "no batchnorm on D's input layer"
    for block in d.blocks[1:]:
        assert _kinds(block) == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU]
    assert [f.shape[-1] for f in d.features(images, labels)][-1] == 4


def _class_grads(model: nn.Module, conditioning: str, what: str) -> torch.Tensor:
    """The gradient of the label weights, one row per class."""
    if conditioning == "projection" and what == "d":
        return model.embed.weight.grad
    if conditioning == "acgan" and what == "d":
        return model.classifier.weight.grad.flatten(1)
    if conditioning in ("cbn", "projection") and what == "g":
        return torch.cat([m.embed.weight.grad for m in model.modules() if isinstance(m, ConditionalBatchNorm2d)], 1)
    grad = model.blocks[0][0].weight.grad
    return grad[16:].flatten(1) if what == "g" else grad[:, 3:].transpose(0, 1).flatten(1)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_gradient_reaches_the_label_weights_of_the_classes_used(conditioning: str) -> None:
    """Training can learn what each class looks like: the weights only a label reaches get a gradient for the
    classes in the batch, and none for the others."""
    torch.manual_seed(0)
    g = Generator(16, 3, nz=16, ngf=4, num_classes=4, conditioning=conditioning)
    d = Discriminator(16, 3, ndf=4, num_classes=4, conditioning=conditioning)
    labels = torch.tensor([1, 3, 1, 3])
    images = g(sample_prior(4, 16, "uniform"), labels)
    if conditioning == "acgan":  # the label reaches D through its class loss, the logit of the class drawn
        d(images, labels, classes=True)[:, 1:].gather(1, labels[:, None]).square().sum().backward()
    else:
        d(images, labels).square().sum().backward()
    for model, what in ((g, "g"), (d, "d")):
        grads = _class_grads(model, conditioning, what)
        assert grads.shape[0] == 4
        assert grads[[1, 3]].abs().sum(1).min() > 0, f"{what}: the classes used get a gradient"
        assert grads[[0, 2]].abs().sum() == 0, f"{what}: the classes not used get none"


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_the_label_changes_the_image_and_the_logit(conditioning: str) -> None:
    torch.manual_seed(0)
    g = Generator(16, 1, nz=16, ngf=8, num_classes=3, conditioning=conditioning)
    d = Discriminator(16, 1, ndf=8, num_classes=3, conditioning=conditioning).eval()
    z = sample_prior(1, 16, "uniform").expand(6, -1)
    images = g(z, torch.arange(6) % 3)  # two of each class, so batchnorm's statistics are not the same per image
    # To rounding, as below: a batch's rows may round differently in the last bits on some CPUs (AMD EPYC's kernels)
    torch.testing.assert_close(images[:3], images[3:], rtol=1e-5, atol=1e-6, msg="same z, same class: the same image")
    change = [(images[i] - images[i + 1]).abs().max() / images.std() for i in (0, 1)]
    assert min(change) > 0.01, "the same z drawn as another class is another image"
    same = images[:1].expand(3, -1, -1, -1)
    logits = d(same, torch.arange(3))
    if conditioning == "acgan":  # D judges the image alone, and names its class with the other head
        # To rounding: the rows of one matrix product may round differently (a kernel's tail rows), so equal images
        # in one batch can differ in the last bits (they do here when D's first layer, whose input needs a gradient,
        # runs `dcgan.gemm_conv`'s image-side path), while a label that reached the logit would move it by far more.
        torch.testing.assert_close(logits, logits[:1].expand_as(logits), rtol=1e-5, atol=0)
        assert d(same, torch.arange(3), classes=True)[0, 1:].unique().numel() == 3
    else:
        assert logits.unique().numel() == 3, "D judges the same image differently as each class"


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_conditional_parts_equal_separate_calls(conditioning: str) -> None:
    """One-pass D (real and fake halves through D at once) still equals two calls with labels."""
    torch.manual_seed(0)
    one = Discriminator(16, 1, ndf=4, num_classes=3, conditioning=conditioning)
    two = Discriminator(16, 1, ndf=4, num_classes=3, conditioning=conditioning)
    two.load_state_dict(one.state_dict())
    x, y = torch.randn(8, 1, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2, 2, 2])
    joined = one(x, y, parts=2)
    separate = torch.cat([two(x[:4], y[:4]), two(x[4:], y[4:])])
    torch.testing.assert_close(joined, separate, rtol=1e-5, atol=1e-6)
    if conditioning == "acgan":
        separate = torch.cat([two(x[:4], y[:4], classes=True), two(x[4:], y[4:], classes=True)])
        torch.testing.assert_close(one(x, y, parts=2, classes=True), separate, rtol=1e-5, atol=1e-6)


def test_labels_are_required_by_conditional_models_and_refused_by_unconditional_ones() -> None:
    g, d = Generator(16, 1, nz=8, ngf=4, num_classes=3, conditioning="cbn"), Discriminator(16, 1, ndf=4)
    z, y = sample_prior(2, 8, "uniform"), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="class-conditional: give labels"):
        g(z)
    with pytest.raises(ValueError, match="unconditional: it takes no labels"):
        d(torch.zeros(2, 1, 16, 16), y)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        g(z, torch.tensor([0]))
    with pytest.raises(ValueError, match="conditioning must be one of"):
        Generator(16, 1, num_classes=3, conditioning="film")


def test_unconditional_models_have_no_conditioning_modules() -> None:
    """num_classes=0 builds exactly the paper's modules: old checkpoints keep loading into it."""
    g, d = Generator(32, 3, nz=100, ngf=8), Discriminator(32, 3, ndf=8)
    assert (g.num_classes, g.conditioning, g.classes) == (0, "none", ())
    for model in (g, d):
        assert not any(isinstance(m, (nn.Embedding, ConditionalBatchNorm2d)) for m in model.modules())
    assert g.blocks[0][0].in_channels == 100 and d.blocks[0][0].in_channels == 3
    assert all("embed" not in name for name in [*g.state_dict(), *d.state_dict()])


def test_resolve_class() -> None:
    g = Generator(16, 1, nz=8, ngf=4, num_classes=3, conditioning="projection")
    assert g.classes == ("0", "1", "2") and resolve_class(g, 2) == 2 and resolve_class(g, "1") == 1
    g.classes = ("T-shirt", "Sandal", "sandal-like")
    assert resolve_class(g, "Sandal") == 1 and resolve_class(g, "t-shirt") == 0 and resolve_class(g, "2") == 2
    with pytest.raises(ConfigError, match=r"Unknown class 'boot'.*0 \(T-shirt\), 1 \(Sandal\)"):
        resolve_class(g, "boot")
    with pytest.raises(ConfigError, match="Class id 3 is out of range"):
        resolve_class(g, 3)
    with pytest.raises(ConfigError, match="Class id -1 is out of range"):
        resolve_class(g, "-1")
    with pytest.raises(ConfigError, match="unconditional"):
        resolve_class(Generator(16, 1, nz=8, ngf=4), 0)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_features_of_unlabelled_images_on_a_conditional_discriminator(conditioning: str) -> None:
    """The probe and guided backprop call D.features(x) on any D: a label-reading D then sees no class (zero
    label planes); given labels, its features follow them; a projection D's features never depend on them."""
    torch.manual_seed(0)
    d = Discriminator(16, 1, ndf=4, num_classes=3, conditioning=conditioning).eval()
    x, labels = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    unlabelled, labelled = d.features(x)[-1], d.features(x, labels)[-1]
    assert unlabelled.shape == labelled.shape == (4, 8, 4, 4)
    if conditioning in ("projection", "acgan"):
        assert torch.equal(unlabelled, labelled)
    else:
        assert not torch.allclose(unlabelled, labelled), "given labels, the features follow them"
        alone = Discriminator(16, 1, ndf=4).eval()
        weights = {k: v[:, :1] if k == "blocks.0.0.weight" else v for k, v in d.state_dict().items()}
        alone.load_state_dict(weights)
        torch.testing.assert_close(unlabelled, alone.features(x)[-1])  # no labels: the pixels alone
