"""Filter ablation, the filter finder and guided backprop, on tiny models and a tiny run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dcgan.checkpoint import load_generator
from dcgan.cli import main
from dcgan.conditional import ClassGenerator
from dcgan.errors import ConfigError, DataError
from dcgan.inspection import (
    drop_filters,
    filters_dropped,
    find_filters,
    gradient_images,
    guided_backprop,
    guided_gradient,
    layer_activations,
    parse_filters,
    read_boxes,
)
from dcgan.models import Discriminator, Generator
from dcgan.sample import generate, latents


@pytest.fixture(scope="module")
def tiny_g() -> Generator:
    torch.manual_seed(0)
    g = Generator(16, 1, nz=8, ngf=8)
    for m in g.modules():  # non-trivial batchnorm statistics, so that "bias only" is not just zero
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    g.blocks[-1][0].bias.data.uniform_(-0.5, 0.5)
    return g.eval()


def test_dropping_no_filters_changes_nothing(tiny_g: Generator) -> None:
    z = latents(4, 8, "uniform", seed=0)
    torch.testing.assert_close(drop_filters(tiny_g, z, 0, []), generate(tiny_g, z), atol=0, rtol=0)


@pytest.mark.parametrize("layer", [0, 1])
def test_dropping_all_filters_gives_the_bias_only_image(tiny_g: Generator, layer: int) -> None:
    g = copy.deepcopy(tiny_g)
    g.blocks[layer][1].bias.data.uniform_(0.2, 0.5)  # every filter of the layer fires, so missing one would show
    z = latents(3, 8, "uniform", seed=1)
    assert (layer_activations(g, z, layer).flatten(2).amax(2) > 0).all()
    dropped = drop_filters(g, z, layer, parse_filters("all", 16 if layer == 0 else 8))
    with torch.no_grad():
        zeros = torch.zeros_like(layer_activations(g, z, layer))
        expected = g.blocks[layer + 1 :](zeros)
    torch.testing.assert_close(dropped, expected, atol=1e-6, rtol=0)
    assert (dropped - dropped[:1]).abs().max() == 0  # every z gives the same image: the filters carried z
    assert dropped.abs().max() > 0


def test_dropping_some_filters_changes_the_samples_and_is_undone_after(tiny_g: Generator) -> None:
    z = latents(4, 8, "uniform", seed=2)
    before = generate(tiny_g, z)
    assert (drop_filters(tiny_g, z, 1, [0, 3]) - before).abs().max() > 0
    torch.testing.assert_close(generate(tiny_g, z), before, atol=0, rtol=0)  # the hook is gone


@pytest.mark.parametrize("conditioning", ["concat", "cbn"])
def test_filters_of_a_conditional_generator_drop_within_its_class(conditioning: str) -> None:
    """A G with class-conditional batchnorm runs its blocks layer by layer: the drop still reaches the layer."""
    torch.manual_seed(0)
    drawn = ClassGenerator(Generator(16, 1, nz=8, ngf=8, num_classes=3, conditioning=conditioning).eval(), 2)
    z = latents(3, 8, "uniform", seed=1)
    activations = layer_activations(drawn, z, 1)
    assert activations.shape == (3, 8, 8, 8) and activations[:, :3].abs().max() > 0
    with filters_dropped(drawn, 1, [0, 1, 2]):
        dropped = layer_activations(drawn, z, 1)
    assert dropped[:, :3].abs().max() == 0 and torch.equal(dropped[:, 3:], activations[:, 3:])
    assert (drop_filters(drawn, z, 1, [0, 1, 2]) - generate(drawn, z)).abs().max() > 0


def test_parse_filters() -> None:
    assert parse_filters("3,7,10-12", 16) == [3, 7, 10, 11, 12]
    assert parse_filters("all", 3) == [0, 1, 2]
    for bad in ("3,x", "5-2", "16", "1,,2"):
        with pytest.raises(ConfigError):
            parse_filters(bad, 16)


def test_layer_out_of_range_is_refused(tiny_g: Generator) -> None:
    with pytest.raises(ConfigError, match="--layer must be from 0 to 1"):
        drop_filters(tiny_g, torch.zeros(1, 8), 2, [0])


def test_find_filters_recovers_the_filter_that_marks_the_boxes(tiny_g: Generator) -> None:
    z = latents(24, 8, "uniform", seed=3)
    acts = layer_activations(tiny_g, z, 1)  # (24, 8, 8, 8)
    k = 5
    marked = acts[:, k] > acts[:, k].flatten().quantile(0.8)
    masks = marked.repeat_interleave(2, 1).repeat_interleave(2, 2)  # 8x8 map -> 16x16 image
    search = find_filters(tiny_g, z, masks, layer=1)
    assert search.filters[0] == k
    assert search.weights[k] > 0 and search.accuracy > 0.8
    assert all(search.weights[f] > 0 for f in search.filters)
    assert search.positives == int(marked.sum())


def test_read_boxes(tmp_path: Path) -> None:
    Image.fromarray(np.pad(np.full((4, 4), 255, np.uint8), ((0, 12), (0, 12)))).save(tmp_path / "m.png")
    spec = {"seed": 3, "boxes": {"2": [[0, 0, 8, 4]], "5": [[4, 4, 6, 6], [10, 10, 16, 16]]}, "masks": {"7": "m.png"}}
    (tmp_path / "b.json").write_text(json.dumps(spec))
    seed, masks = read_boxes(tmp_path / "b.json", 16)
    assert seed == 3 and sorted(masks) == [2, 5, 7]
    assert masks[2].sum() == 32 and masks[2][3, 7] and not masks[2][4, 0]
    assert masks[5].sum() == 4 + 36 and masks[7].sum() == 16
    for bad in ({"boxes": {"2": [[0, 0, 20, 4]]}}, {"boxes": {"x": [[0, 0, 2, 2]]}}, {"boxes": {}}, [1]):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(DataError):
            read_boxes(tmp_path / "bad.json", 16)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        read_boxes(tmp_path / "bad.json", 16)


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_guided_backprop_matches_the_hand_computed_gradient(slope: float) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.LeakyReLU(slope) if slope else nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[1.0, -2.0, 0.5, -0.3]]))
    x = torch.randn(6, 5)
    grad = guided_gradient(net, x, lambda model, inputs: model(inputs).squeeze(1))
    w1, w2 = net[0].weight, net[2].weight[0]
    pre = x @ w1.T + net[0].bias
    hand = (w2.clamp(min=0) * (pre > 0)) @ w1  # positive gradients only, where the input to the ReLU was positive
    torch.testing.assert_close(grad, hand.detach(), atol=1e-6, rtol=1e-5)
    plain = torch.autograd.functional.jacobian(lambda v: net(v).sum(), x)
    assert not torch.allclose(grad, plain)  # not the ordinary gradient
    assert isinstance(net[1], (nn.ReLU, nn.LeakyReLU))  # the model itself is untouched


def test_guided_backprop_picks_top_activating_images() -> None:
    torch.manual_seed(0)
    d = Discriminator(16, 1, ndf=8).eval()
    images = torch.rand(10, 1, 16, 16) * 2 - 1
    found = guided_backprop(d, images, [0, 3], top=3)
    strength = d.features(images)[-1].flatten(2).amax(2)
    assert found.indices.shape == (2, 3) and found.gradients.shape == (2, 3, 1, 16, 16)
    assert found.indices[1].tolist() == strength[:, 3].topk(3).indices.tolist()
    assert gradient_images(found.gradients).abs().max() <= 1
    with pytest.raises(ConfigError):
        guided_backprop(d, images, [99])


# ----------------------------------------------------------------------------------------------- commands


def test_ablate_command(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ab"
    assert main(["ablate", str(tiny_run), "--layer", "1", "--filters", "0-3", "--n", "8", "--out", str(out)]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["filters"] == [0, 1, 2, 3] and record["mean_abs_change"] > 0
    assert (out / "ablation.png").is_file()


def test_find_filters_command(tiny_run: Path, tmp_path: Path) -> None:
    """Mark where one filter of the run's G fires: the command finds that filter, and dropping it changes the
    pixels inside the marks several times more than those outside, by the amounts it records."""
    g = load_generator(tiny_run)
    z = latents(6, g.nz, g.prior, seed=2)
    acts = layer_activations(g, z, 1)  # (6, 8, 8, 8)
    effect = [float((drop_filters(g, z, 1, [f]) - generate(g, z)).abs().mean()) for f in range(acts.shape[1])]
    k = max(range(len(effect)), key=effect.__getitem__)  # the filter that matters most to these samples
    marked = acts[:, k] > acts[:, k].flatten().quantile(0.8)
    masks = marked.repeat_interleave(2, 1).repeat_interleave(2, 2)  # 8x8 map -> 16x16 image
    for i, mask in enumerate(masks):
        Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(tmp_path / f"mask{i}.png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"seed": 2, "masks": {str(i): f"mask{i}.png" for i in range(6)}}))
    out = tmp_path / "ff"
    argv = ["find-filters", str(tiny_run), "--boxes", str(boxes), "--layer", "1", "--drop-top", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["options"]["seed"] == 2 and record["samples"] == list(range(6))
    assert record["filters"][0] == k and record["dropped"] == [k]
    change = (drop_filters(g, z, 1, [k]) - generate(g, z)).abs().mean(1)  # (6, 16, 16)
    inside, outside = record["mean_abs_change_inside_boxes"], record["mean_abs_change_outside_boxes"]
    assert inside == pytest.approx(float(change[masks].mean()), rel=1e-4)
    assert outside == pytest.approx(float(change[~masks].mean()), rel=1e-4)
    assert inside > 1.5 * outside > 0, (inside, outside)
    assert (out / "filters.txt").read_text().strip() == ",".join(map(str, record["filters"]))
    assert main(["ablate", str(tiny_run), "--layer", "1", "--filters", record["filters"][0].__str__(), "--out", str(out / "a")]) == 0  # fmt: skip


def test_guided_backprop_command(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "gb"
    assert main(["guided-backprop", str(tiny_run), "--features", "0-2", "--top", "3", "--candidates", "32", "--out", str(out)]) == 0  # fmt: skip
    record = json.loads((out / "record.json").read_text())
    assert record["features"] == [0, 1, 2] and len(record["results"]["random D"]["samples"]) == 3
    assert (out / "guided_backprop.png").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ablate", "RUN", "--layer", "1", "--filters", "0,99"], "out of range"),
        (["ablate", "RUN", "--layer", "7", "--filters", "0"], "--layer must be"),
        (["find-filters", "RUN", "--boxes", "missing.json"], "No such boxes file"),
        (["find-filters", "RUN", "--boxes", "BOXES", "--seed", "4"], "differs"),
        (["guided-backprop", "RUN", "--features", "0-999"], "out of range"),
    ],
)
def test_bad_inspection_input_exits_2(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "boxes.json").write_text(json.dumps({"seed": 2, "boxes": {"0": [[0, 0, 4, 4]]}}))
    swap = {"RUN": str(tiny_run), "BOXES": str(tmp_path / "boxes.json")}
    assert main([swap.get(a, a) for a in argv] + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1, f"not one line: {err!r}"


def test_inspection_commands_of_a_conditional_run_work_in_one_class(
    tiny_conditional_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ablate and guided-backprop draw (and D judges) in the class given; a concat D reads the label with the
    image, so its features need one, which the class gives."""
    from dcgan.conditional import ClassDiscriminator, ClassGenerator
    from dcgan.run import Run
    from dcgan.train import train
    from tests.conftest import class_shapes_data, tiny_config

    run = str(tiny_conditional_run)
    assert main(["ablate", run, "--class", "dark", "--layer", "1", "--filters", "0-3", "--n", "4", "--out", str(tmp_path / "a")]) == 0  # fmt: skip
    g = ClassGenerator(Run.open(tiny_conditional_run).generator(), 1)
    z = latents(4, 8, "uniform", 0)
    record = json.loads((tmp_path / "a" / "record.json").read_text())
    want = float((drop_filters(g, z, 1, [0, 1, 2, 3]) - generate(g, z)).abs().mean())
    assert record["class"] == {"id": 1, "name": "dark"} and record["mean_abs_change"] == pytest.approx(want, rel=1e-5)
    concat = tmp_path / "concat"
    train(
        tiny_config(conditional=True, conditioning="concat", steps=2), concat, data=class_shapes_data(), progress=False
    )
    argv = ["guided-backprop", str(concat), "--features", "0-1", "--top", "2", "--candidates", "8"]
    assert main([*argv, "--class", "light", "--out", str(tmp_path / "gb")]) == 0
    d = Run.open(concat).discriminator()
    x = generate(ClassGenerator(Run.open(concat).generator(), 0), latents(8, 8, "uniform", 0))
    want = guided_backprop(ClassDiscriminator(d, 0), x, [0, 1], top=2).strengths  # D reads them as "light"
    got = json.loads((tmp_path / "gb" / "record.json").read_text())["results"]["trained D"]["strengths"]
    torch.testing.assert_close(torch.tensor(got), want, rtol=1e-6, atol=0)
    x = x[:4]
    with torch.no_grad():
        torch.testing.assert_close(
            ClassDiscriminator(d, 0).features(x)[-1], d.features(x, torch.zeros(4, dtype=torch.long))[-1]
        )
        assert (ClassDiscriminator(d, 1).features(x)[0] - ClassDiscriminator(d, 0).features(x)[0]).abs().max() > 0
    assert main([*argv, "--out", str(tmp_path / "none")]) == 2
    assert (
        "This generator is class-conditional: give --class NAME|ID (its classes: 0 (light), 1 (dark))."
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):  # argparse: these commands draw one class at a time
        main([*argv, "--every-class", "--out", str(tmp_path / "every")])
