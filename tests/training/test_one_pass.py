"""D's real and fake batches in one forward and one backward pass (`Discriminator.forward(x, parts=2)`, what
`Trainer.train_step` does): the same step as the paper's two separate passes, to fp32 rounding."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcgan.gemm_conv import use_gemm_conv
from dcgan.models import Discriminator
from dcgan.train import Trainer
from tests.conftest import checkpoint_weights, class_shapes_data, shapes_data, tiny_config, train_tiny

TOL = 1e-5
LAYOUTS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}


@contextmanager
def _gemm_conv(enabled: bool) -> Iterator[None]:
    before = use_gemm_conv(enabled)
    try:
        yield
    finally:
        use_gemm_conv(before)


def _batches(layout: torch.memory_format, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A real and a fake batch whose statistics differ (the fake one darker and flatter), so that statistics
    taken over both at once would give other outputs than each batch's own."""
    g = torch.Generator().manual_seed(0)
    real = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    fake = torch.rand(n, 3, 32, 32, generator=g) * 0.5 - 0.8
    return real.contiguous(memory_format=layout), fake.contiguous(memory_format=layout)


def _loss(logits: torch.Tensor, label: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


@pytest.mark.parametrize("gemm", [True, False], ids=["gemm-convs", "torch-convs"])
@pytest.mark.parametrize("layout", list(LAYOUTS), ids=list(LAYOUTS))
def test_one_pass_equals_two_separate_passes(gemm: bool, layout: str) -> None:
    """Losses, D's gradients and D's running statistics (two momentum updates, real then fake) agree to 1e-5."""
    torch.manual_seed(0)
    two = Discriminator(32, 3, ndf=8).to(memory_format=LAYOUTS[layout])
    one = copy.deepcopy(two)
    real, fake = _batches(LAYOUTS[layout])
    with _gemm_conv(gemm):
        loss_real = _loss(two(real), 1.0)
        loss_real.backward()
        loss_fake = _loss(two(fake), 0.0)
        loss_fake.backward()
        logits_real, logits_fake = one(torch.cat([real, fake]), parts=2).chunk(2)
        losses = _loss(logits_real, 1.0), _loss(logits_fake, 0.0)
        (losses[0] + losses[1]).backward()
    torch.testing.assert_close(torch.stack(losses), torch.stack([loss_real, loss_fake]), rtol=TOL, atol=TOL)
    for (name, a), b in zip(two.named_parameters(), one.parameters()):
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(b.grad, a.grad, rtol=TOL, atol=TOL, msg=lambda m, k=name: f"{k}.grad: {m}")
    expected, got = two.state_dict(), one.state_dict()
    assert got.keys() == expected.keys(), "the state dict (what checkpoints hold) is unchanged"
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=TOL, atol=TOL, msg=lambda m, k=key: f"{k}: {m}")
    assert int(got["blocks.1.1.num_batches_tracked"]) == 2, "one update per batch, as two passes make"


def test_the_halves_are_not_normalised_together() -> None:
    """The batches above are far enough apart that statistics over all 2B images give other logits, so the test
    above fails for an implementation that normalises the joined batch as one."""
    torch.manual_seed(0)
    d = Discriminator(32, 3, ndf=8).to(memory_format=torch.channels_last)
    both = torch.cat(_batches(torch.channels_last))
    with torch.no_grad():
        apart, together = d(both, parts=2), copy.deepcopy(d)(both)
    assert (apart - together).abs().max() > 100 * TOL


def test_a_batch_that_does_not_split_evenly_is_refused() -> None:
    with pytest.raises(ValueError, match="equal parts"):
        Discriminator(16, 1, ndf=4)(torch.zeros(5, 1, 16, 16), parts=2)


def _trainer(tmp_path: Path, one_pass: bool, **overrides: object) -> Trainer:
    config = tiny_config(image_size=32, channels_last=True, gemm_conv=True, **overrides)
    trainer = Trainer(config, tmp_path / ("one" if one_pass else "two"), data=shapes_data(size=32), progress=False)
    trainer.one_pass_d = one_pass
    return trainer


@pytest.mark.parametrize(("precision", "tol"), [("fp32", TOL), ("bf16", 3e-2)])
def test_a_training_step_in_one_pass_is_the_two_pass_step(tmp_path: Path, precision: str, tol: float) -> None:
    """`Trainer.train_step`: its losses, D's gradients and D's running statistics do not depend on the pass count
    (fp32 to 1e-5; bf16 to its rounding, where a weight gradient's product over 2B images is rounded once)."""
    one, two = _trainer(tmp_path, True, precision=precision), _trainer(tmp_path, False, precision=precision)
    real, z = one.real_batch(0), one.latent_batch()
    try:
        stats_one = one.train_step(real, z)
        stats_two = two.train_step(real, z)
    finally:
        use_gemm_conv(one._gemm_before)  # the Trainers switched it; fit() would have put it back
    torch.testing.assert_close(stats_one, stats_two, rtol=tol, atol=tol)
    for (name, a), b in zip(two.D.named_parameters(), one.D.parameters()):
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(b.grad, a.grad, rtol=tol, atol=tol, msg=lambda m, k=name: f"{k}.grad: {m}")
    for (name, a), b in zip(two.D.named_buffers(), one.D.buffers()):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol, msg=lambda m, k=name: f"{k}: {m}")


def test_an_acgan_step_in_one_pass_is_the_two_pass_step(tmp_path: Path) -> None:
    """With AC-GAN's class loss on D's real and fake batches: the same losses, D gradients (the classifier's too)
    and running statistics from one pass as from two."""
    trainers = []
    for one_pass in (True, False):
        config = tiny_config(conditional=True, conditioning="acgan")
        trainer = Trainer(config, tmp_path / str(one_pass), data=class_shapes_data(), progress=False)
        trainer.one_pass_d = one_pass
        trainers.append(trainer)
    one, two = trainers
    real, labels, z = one.real_batch(0), one.real_labels(0), one.latent_batch()
    assert labels is not None
    try:
        torch.testing.assert_close(one.train_step(real, z, labels), two.train_step(real, z, labels), rtol=TOL, atol=TOL)
    finally:
        use_gemm_conv(one._gemm_before)
    grads = {name: p.grad for name, p in two.D.named_parameters()}
    assert grads["classifier.weight"] is not None and grads["classifier.weight"].abs().sum() > 0
    for name, p in one.D.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=TOL, atol=TOL, msg=lambda m, k=name: f"{k}.grad: {m}")
    for (name, a), b in zip(two.D.named_buffers(), one.D.buffers()):
        torch.testing.assert_close(b, a, rtol=TOL, atol=TOL, msg=lambda m, k=name: f"{k}: {m}")


def test_training_in_one_pass_reaches_the_two_pass_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few steps of real training: G and D (running statistics included) agree to 1e-4, and both Adam states
    to 1% of each tensor's norm. The moments are compared as wholes because the two paths round differently
    (one product over 2B images against two over B) and a pre-activation within that rounding of zero takes the
    other side of a ReLU: on an AVX2-only AMD EPYC, G's step-5 gradient then differed in a few elements, its first
    moment by up to 6e-4 (0.12% of the tensor's norm) while the weights still agreed to 9e-6."""
    train_tiny(tmp_path / "two", steps=6, image_size=32)
    monkeypatch.setattr(Trainer, "one_pass_d", True)
    train_tiny(tmp_path / "one", steps=6, image_size=32)
    one, two = checkpoint_weights(tmp_path / "one"), checkpoint_weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for key in two:
        if key.startswith("opt_") and "exp_avg" in key:
            apart = (one[key].double() - two[key].double()).norm() / two[key].double().norm().clamp_min(1e-30)
            assert apart < 1e-2, f"{key}: {float(apart):.2%} of its norm apart"
        else:
            torch.testing.assert_close(one[key], two[key], rtol=1e-4, atol=1e-4, msg=lambda m, k=key: f"{k}: {m}")
