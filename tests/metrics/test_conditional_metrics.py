"""`intrafid` and `recognised`: what a class-conditional generator is measured by, and how it is sampled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from dcgan.data import ImageData, load_images
from dcgan.errors import ConfigError
from dcgan.metrics import (
    FeatureExtractor,
    LeNet,
    TrainingEvaluator,
    evaluate,
    evaluate_images,
    load_features,
    save_extractor,
)
from dcgan.metrics.evaluate import requested_classes
from dcgan.metrics.fit import accuracy, fit_extractor, hold_out
from dcgan.models import Generator


@pytest.fixture(scope="module")
def digits16() -> ImageData:
    return load_images("mnist5k", image_size=16)


@pytest.fixture(scope="module")
def classifier(digits16: ImageData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImageData]:
    """A LeNet fitted for one epoch on 80% of the 5,000 digits (about 80% right on the rest, a few seconds), saved
    with the digits' class names; and the held-out 20%."""
    train, held_out = hold_out(digits16, 0.2, seed=0)
    model, _ = fit_extractor(train, held_out, arch="lenet", epochs=1, batch_size=64, name="lenet-digits-test")
    return save_extractor(model, tmp_path_factory.mktemp("extractor") / "lenet-digits-test.safetensors"), held_out


class ClassCopier(nn.Module):
    """A conditional "generator" that draws a real training image of class (y + shift) mod 10 when asked for y,
    the image picked by z: shift 0 draws what it is asked for, shift 1 always the next digit."""

    prior, nz, ngf, num_classes = "uniform", 8, 8, 10

    def __init__(self, data: ImageData, shift: int = 0) -> None:
        super().__init__()
        assert data.labels is not None and data.classes is not None
        self.by_class = [data.images[data.labels == k] for k in range(10)]
        self.classes, self.shift = data.classes, shift
        self.image_size, self.channels = int(data.images.shape[-1]), data.channels
        self.anchor = nn.Parameter(torch.zeros(1))
        self.blocks = nn.Sequential()  # a Generator's layers; this one has none

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        assert labels is not None and labels.shape == (z.shape[0],), "a conditional G needs one label per image"
        pick = (z[:, 0].abs() * 1e6).long()
        images = [self.by_class[(int(y) + self.shift) % 10] for y in labels]
        return torch.stack([imgs[int(i) % len(imgs)] for imgs, i in zip(images, pick)]).float() / 127.5 - 1


def test_samples_are_drawn_evenly_over_the_classes() -> None:
    labels = requested_classes(25, 10)
    assert labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert torch.bincount(labels).tolist() == [3] * 5 + [2] * 5  # 25 over 10 classes: each gets 2 or 3


def test_samples_in_a_mix_of_classes_come_in_its_shares() -> None:
    shares = (0.538, 0.041, 0.159, 0.148, 0.114)  # UTKFace's races: white, black, asian, indian, others
    for n in (10, 100, 1_000, 10_000):
        counts = torch.bincount(requested_classes(n, 5, shares), minlength=5)
        assert (counts - torch.tensor(shares) * n).abs().max() <= 3, (n, counts)
    assert torch.equal(requested_classes(10_000, 5, shares)[:100], requested_classes(100, 5, shares))
    assert 1 not in requested_classes(1_000, 3, (0.5, 0.0, 0.5)).tolist()  # a class with no images is not drawn


def test_a_conditional_generator_stands_for_the_data_in_its_mix_of_classes(
    classifier: tuple[Path, ImageData], digits16: ImageData
) -> None:
    """Digits with few 5-9s: a G that draws real digits of the classes asked for matches them in FID only when
    asked in the data's mix (`class_shares`, which training records); evenly, FID counts the wrong mix against
    it. The per-class metrics still ask n / K samples of each class."""
    features, _ = classifier
    assert digits16.labels is not None
    few = (digits16.labels < 5) | (torch.arange(len(digits16.labels)) % 5 == 0)
    uneven = digits16.select(torch.nonzero(few).flatten())
    assert uneven.labels is not None
    shares = torch.bincount(uneven.labels, minlength=10).double() / len(uneven.labels)
    mixed, even = ClassCopier(uneven), ClassCopier(uneven)
    mixed.class_shares = tuple(shares.tolist())
    metrics = "fid,intrafid,recognised"
    in_mix = evaluate(mixed, data=uneven, features=features, n=500, metrics=metrics)
    evenly = evaluate(even, data=uneven, features=features, n=500, metrics=metrics)
    assert in_mix.values["fid500"] < 0.5 * evenly.values["fid500"], (in_mix.values, evenly.values)
    assert in_mix.values["intrafid500"] == pytest.approx(evenly.values["intrafid500"])
    assert [row["samples"] for row in in_mix.details["recognised500"]["classes"]] == [50] * 10
    counts = torch.tensor(in_mix.info["samples_in_mix"])
    assert counts.sum() == 500 and (counts - shares * 500).abs().max() <= 3
    assert "samples_in_mix" not in evenly.info


def test_intrafid_and_recognised_see_a_class_swap_that_fid_misses(
    classifier: tuple[Path, ImageData], digits16: ImageData
) -> None:
    """Drawing the next digit for every request keeps the mix of digits, so FID hardly moves, while per-class FID
    and the classifier see every sample in the wrong class."""
    features, _ = classifier
    metrics = "fid,intrafid,recognised"
    right = evaluate(ClassCopier(digits16), data=digits16, features=features, n=500, metrics=metrics)
    swapped = evaluate(ClassCopier(digits16, shift=1), data=digits16, features=features, n=500, metrics=metrics)
    assert swapped.values["fid500"] < 2 * right.values["fid500"] + 1, (right.values, swapped.values)
    assert swapped.values["intrafid500"] > 10 * right.values["intrafid500"], (right.values, swapped.values)
    assert right.values["recognised500"] > 0.7 > 0.2 > swapped.values["recognised500"]
    rows = swapped.details["recognised500"]["classes"]
    assert [row["samples"] for row in rows] == [50] * 10  # 500 samples, 50 asked of each class
    assert rows[3]["mistaken_for"] == "4"  # asked for a 3, it drew 4s, and the classifier says so
    assert right.info["classes"] == list(digits16.classes or ()) and right.info["samples_per_class"] == 50


def test_recognised_of_real_images_with_their_labels_is_the_classifiers_accuracy(
    classifier: tuple[Path, ImageData], digits16: ImageData
) -> None:
    features, held_out = classifier
    assert held_out.labels is not None
    result = evaluate_images(
        held_out.images, data=digits16, features=features, metrics="recognised", labels=held_out.labels,
        classes=held_out.classes,
    )  # fmt: skip
    extractor = load_features(features)  # the same weights, read back as `dcgan evaluate` reads them
    want = accuracy(extractor, held_out.images, held_out.labels)
    assert result.values["recognised1k"] == pytest.approx(want, abs=1e-12)  # 1,000 held-out digits
    detail = result.details["recognised1k"]
    assert detail["real"] is not None and 0.5 < detail["real"] < 1  # on the 5,000 reference digits


def test_a_conditional_generator_gets_the_class_metrics_by_default(
    classifier: tuple[Path, ImageData], digits16: ImageData, tmp_path: Path
) -> None:
    features, _ = classifier
    torch.manual_seed(0)
    g = Generator(16, 1, nz=8, ngf=8, num_classes=10, conditioning="cbn")
    g.classes = digits16.classes or ()
    result = evaluate(g, data=digits16, features=features, n=40)
    assert {"fid40", "intrafid40", "recognised40"} <= set(result.values) and "skipped" not in result.info
    table = result.table()
    assert "intrafid40: FID of each class's samples" in table and "ceiling: it reads" in table
    assert sum(line.startswith("  7 ") for line in table.splitlines()) == 2  # a row in each per-class table
    record = json.loads(json.dumps(result.to_dict()))
    assert [row["name"] for row in record["recognised40"]["classes"]] == [str(i) for i in range(10)]
    # an extractor of other classes: recognised is left out, and the table says why
    torch.manual_seed(0)
    other = LeNet()
    other.name = "lenet-letters"
    letters = save_extractor(other, tmp_path / "letters.safetensors", meta={"classes": json.dumps(list("abcdefghij"))})
    result = evaluate(g, data=digits16, features=letters, n=40)
    assert "recognised40" not in result.values and "intrafid40" in result.values
    assert "not measured: recognised (lenet-letters is not a classifier of the generator's classes" in result.table()
    # reference images without labels: intrafid is left out too
    unlabelled = ImageData(digits16.images, None, "mnist5k", "train", "memory")
    result = evaluate(g, data=unlabelled, features=features, n=40)
    assert "intrafid40" not in result.values and "recognised40" in result.values
    assert any(
        note.startswith("intrafid (the mnist5k train images are not labelled") for note in result.info["skipped"]
    )


def test_class_metrics_refuse_what_they_cannot_measure(
    classifier: tuple[Path, ImageData], digits16: ImageData, tmp_path: Path
) -> None:
    features, _ = classifier
    unconditional = Generator(16, 1, nz=8, ngf=8)
    with pytest.raises(ConfigError, match=r"^recognised needs a class-conditional generator .* unconditional\.$"):
        evaluate(unconditional, data=digits16, features=features, n=20, metrics="fid,recognised")
    conditional = ClassCopier(digits16)
    unlabelled = ImageData(digits16.images, None, "mnist5k", "train", "memory")
    with pytest.raises(ConfigError, match=r"^intrafid needs reference images with class labels, .* has none\.$"):
        evaluate(conditional, data=unlabelled, features=features, n=20, metrics="intrafid")
    torch.manual_seed(0)
    other = LeNet()
    letters = save_extractor(other, tmp_path / "letters.safetensors", meta={"classes": json.dumps(list("abcdefghij"))})
    with pytest.raises(ConfigError, match=r"knows a, b, .* but not 0, 1, .*dcgan extractor fit"):
        evaluate(conditional, data=digits16, features=letters, n=20, metrics="recognised")

    class Plain(FeatureExtractor):  # an extractor without named classes, as the FID Inception is
        input_size, in_channels, feature_dim, num_classes = 16, 1, 4, 3

        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(256, 4)

        def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f = self.layer(x.flatten(1))
            return f, f[:, :3]

    with pytest.raises(ConfigError, match=r"^recognised needs a classifier fitted on the data's classes, and plain"):
        evaluate(conditional, data=digits16, features=Plain(), n=20, metrics="recognised")


def test_training_evaluator_samples_a_conditional_generator_in_every_class(
    classifier: tuple[Path, ImageData], digits16: ImageData
) -> None:
    """`--eval-every` and best.pt call the evaluator with the training G: a conditional one must get its labels,
    evenly over the classes, so its value is the one `dcgan evaluate` reports for the same samples."""
    features, _ = classifier
    evaluator = TrainingEvaluator(digits16, image_size=16, channels=1, metric="fid", n=100, features=features)
    right = ClassCopier(digits16)
    value = evaluator(right)["fid100"]
    assert value == pytest.approx(
        evaluate(right, data=digits16, features=features, n=100, metrics="fid").values["fid100"]
    )
    torch.manual_seed(0)
    g = Generator(16, 1, nz=8, ngf=8, num_classes=10, conditioning="concat").train()
    assert set(evaluator(g)) == {"fid100"} and g.training  # called as during training, left in training mode


def test_eval_every_keeps_the_best_checkpoint_of_a_conditional_run(digits16: ImageData, tmp_path: Path) -> None:
    """`--eval-every` scores the training G of a conditional run (drawn in every class) and keeps best.pt."""
    from dcgan import checkpoint as ckpt
    from dcgan.train import train
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    features = save_extractor(LeNet(), tmp_path / "lenet.safetensors", meta={"classes": json.dumps(list("0123456789"))})
    config = tiny_config(
        data="mnist5k", steps=4, eval_every=2, eval_n=40, conditional=True, eval_features=str(features)
    )  # fmt: skip
    train(config, tmp_path / "run", data=digits16, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    fids = [r["fid40"] for r in rows if "fid40" in r]
    assert len(fids) == 2 and all(f > 0 for f in fids)
    best = ckpt.load(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["best_value"] == min(fids) and best["classes"] == list("0123456789")


def test_cli_evaluate_of_a_conditional_run(
    tiny_conditional_run: Path, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder with one subfolder per class is the reference: its classes are matched to the run's by name (the
    folder sorts them dark, light; the run has light, dark)."""
    from PIL import Image

    from dcgan.cli import main
    from tests.conftest import class_shapes_data

    data = class_shapes_data(n=40)
    assert data.labels is not None and data.classes is not None
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        folder = tmp_path / "shapes" / data.classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(folder / f"{i:03d}.png")
    torch.manual_seed(0)
    classifier = LeNet(num_classes=2)
    features = save_extractor(
        classifier, tmp_path / "lenet2.safetensors", meta={"classes": json.dumps(["dark", "light"])}
    )
    out = tmp_path / "eval.json"
    argv = ["evaluate", str(tiny_conditional_run), "--data", str(tmp_path / "shapes"), "--features", str(features)]
    assert main([*argv, "--n", "20", "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    # the run's training images were half light, half dark: the mix it draws its classes in for FID
    mix = "20 samples in the training images' mix of classes (light 50.0%, dark 50.0%); 10 of each of 2 classes"
    assert mix in printed and "intrafid20: FID of each class's samples" in printed
    record = json.loads(out.read_text())
    assert record["classes"] == ["light", "dark"] and {"intrafid20", "recognised20", "fid20"} <= set(record)
    assert [row["reference"] for row in record["intrafid20"]["classes"]] == [20, 20]
    plain = ["evaluate", str(tiny_run), "--data", str(tmp_path / "shapes"), "--features", str(features)]
    assert main([*plain, "--n", "20", "--metrics", "fid,recognised", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "recognised needs a class-conditional generator" in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["intrafid", "recognised"])
def test_class_metrics_refuse_inputs_without_drawn_classes(name: str) -> None:
    """Scored directly (not through `evaluate`, which refuses first), intrafid and recognised given an unconditional
    generator's inputs end in the one sentence that names them."""
    from dcgan.metrics.reference import Reference
    from dcgan.metrics.registry import MetricInputs, parse_metrics

    reference = Reference(torch.zeros(4, 2), "digits", "test", 16, 1, "lenet")
    inputs = MetricInputs(torch.zeros(4, 2), torch.zeros(4, 10), reference)
    (metric,) = parse_metrics(name)
    with pytest.raises(ConfigError, match=rf"^{name} needs a class-conditional generator .* draws no classes\.$"):
        metric.compute(inputs)
