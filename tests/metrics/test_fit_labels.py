"""`dcgan extractor fit` on a labelled folder: labels from names, a seeded held-out split, then FID and coverage."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from dcgan.cli import main
from dcgan.data import load_images
from dcgan.errors import CheckpointError, ConfigError
from dcgan.metrics import load_features
from dcgan.metrics.extractors import Ensemble, class_names, extractor_dir
from dcgan.metrics.fit import extractor_name, hold_out, shift_logits
from tests.data.faces import write_faces


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 faces whose colour says their gender (40% men), named as UTKFace names them."""
    folder = tmp_path_factory.mktemp("fit-labels") / "Faces"
    write_faces(folder, 120, size=12, female_share=0.6)
    return folder


@pytest.fixture(scope="module")
def fitted(faces: Path) -> str:
    """What `dcgan extractor fit --data FACES --labels-from-name gender` printed."""
    out = io.StringIO()
    argv = ["extractor", "fit", "--data", str(faces), "--labels-from-name", "gender", "--epochs", "4"]
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--batch-size", "32", "--quiet"]) == 0
    return out.getvalue()


def test_fit_on_a_folder_learns_its_labels_and_measures_them_on_held_out_images(fitted: str) -> None:
    assert fitted.startswith("cnn-faces-gender: held-out accuracy ")
    assert "on 18 images (held-out 15%, seed 0), classes male, female," in fitted
    assert "Use it with --features cnn-faces-gender" in fitted
    model = load_features("cnn-faces-gender")
    assert float(model.meta["test_accuracy"]) >= 0.9, model.meta  # chance is 0.6 (always "female")
    assert model.meta["measured_on"] == "held-out 15%, seed 0" and model.meta["labels_from_name"] == "gender"
    assert (model.meta["train_images"], model.meta["test_images"]) == ("102", "18")
    assert class_names(model) == ("male", "female") and model.num_classes == 2
    assert model.meta["calibrated"] == "class offsets fitted on 18 images (held-out 15%, seed 0)"
    read = json.loads(model.meta["heldout_read"])
    assert len(read) == 2 and f"calibrated male {read[0]:.2f}x, female {read[1]:.2f}x (cross-fitted" in fitted


def test_no_calibrate_leaves_the_logits_as_fitted(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["extractor", "fit", "--data", str(faces), "--labels-from-name", "gender", "--epochs", "4"]
    out = tmp_path / "plain.safetensors"
    assert main([*argv, "--batch-size", "32", "--quiet", "--no-calibrate", "--out", str(out)]) == 0
    assert "Each class's share as read" not in capsys.readouterr().out
    plain, calibrated = load_features(str(out)), load_features("cnn-faces-gender")
    assert plain.name == "plain" and "calibrated" not in plain.meta and "heldout_read" not in plain.meta
    same = [torch.equal(a, b) for a, b in zip(plain.state_dict().values(), calibrated.state_dict().values())]
    assert all(same[:-1]), "the same fit: calibration moves at most the last layer's bias (here reading in proportion)"


def test_the_held_out_split_is_seeded_disjoint_and_keeps_labels_with_images(faces: Path) -> None:
    data = load_images(str(faces), image_size=12, labels_from_name="gender")
    train, held = hold_out(data, 0.15, seed=0)
    assert (len(train), len(held)) == (102, 18) and train.files is not None and held.files is not None
    assert not set(train.files) & set(held.files) and len(set(train.files) | set(held.files)) == 120
    again, other = hold_out(data, 0.15, seed=0)[1], hold_out(data, 0.15, seed=1)[1]
    assert again.files == held.files != other.files
    for part in (train, held):
        assert part.labels is not None and part.files is not None and part.classes == ("male", "female")
        index = torch.tensor([data.files.index(f) for f in part.files])  # type: ignore[union-attr]
        assert torch.equal(part.images, data.images[index]) and torch.equal(part.labels, data.labels[index])  # type: ignore[index]


def test_extractor_names_say_arch_data_and_field() -> None:
    assert extractor_name("cnn", "../shared/data/faces/utkface64", "gender") == "cnn-utkface64-gender"
    assert extractor_name("lenet", "mnist") == "lenet-mnist"
    assert extractor_name("cnn", "/photos/My Cats!/") == "cnn-my-cats"
    assert extractor_name("cnn", "utkface64", "race", members=3) == "cnn-utkface64-race-x3"


def test_list_shows_the_held_out_accuracy(fitted: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extractor", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("cnn-faces-gender "))
    accuracy = float(load_features("cnn-faces-gender").meta["test_accuracy"])
    assert f"{accuracy:.2%}" in row and "held-out 15%, seed 0" in row
    assert str(extractor_dir() / "cnn-faces-gender.safetensors") in row


def test_evaluate_gives_fid_and_coverage_by_group_offline(
    fitted: str, faces: Path, tiny_run_rgb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", str(tiny_run_rgb), "--data", str(faces), "--features", "cnn-faces-gender", "--n", "64"]
    assert main([*argv, "--metrics", "fid,coverage", "--json", str(tmp_path / "e.json"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "features:  cnn-faces-gender (held-out accuracy" in printed
    assert "fid64" in printed and "coverage64_min" in printed and "coverage64_max" in printed
    assert "groups from the gender in the file names" in printed and "120 reference images" in printed
    record = json.loads((tmp_path / "e.json").read_text())
    rows = record["coverage64"]["groups"]
    assert [(row["name"], row["reference"]) for row in rows] == [("male", 0.4), ("female", 0.6)]
    for row in rows:
        assert f"{row['ratio']:.2f}x" in printed and row["ratio"] == pytest.approx(row["samples"] / row["reference"])
    assert record["coverage64_min"] == min(row["ratio"] for row in rows) and isinstance(record["fid64"], float)


def test_cli_errors_are_one_sentence(faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extractor", "fit", "--data", str(faces), "--quiet"]) == 2  # a flat folder has no labels
    err = capsys.readouterr().err.split("\r")[-1].strip()  # after the decoding bar's carriage returns
    assert err.startswith(f"error: --data {faces} has no class labels to fit a classifier on: ")
    assert err.endswith("--labels-from-name gender|race|age.") and "\n" not in err
    write_faces(tmp_path / "few", 1)
    argv = ["extractor", "fit", "--data", str(tmp_path / "few"), "--labels-from-name", "gender", "--quiet"]
    assert main(argv) == 2
    last = capsys.readouterr().err.split("\r")[-1].strip()
    assert last == f"error: {tmp_path / 'few'} has 1 image; holding some out to measure the classifier needs two."


def test_a_missing_faces_extractor_says_how_to_make_it() -> None:
    with pytest.raises(ConfigError, match=r"`dcgan extractor fit --data FOLDER --labels-from-name race` on a folder"):
        load_features("cnn-elsewhere-race")


def test_members_fit_one_extractor_that_reads_their_mean_probability(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["extractor", "fit", "--data", str(faces), "--labels-from-name", "gender", "--epochs", "4", "--quiet"]
    single, pair = tmp_path / "single.safetensors", tmp_path / "pair.safetensors"
    assert main([*argv, "--batch-size", "32", "--no-calibrate", "--out", str(single)]) == 0
    assert main([*argv, "--batch-size", "32", "--no-calibrate", "--members", "2", "--out", str(pair)]) == 0
    assert ", 2 classifiers (seeds 0-1), each after 4 epochs (" in capsys.readouterr().out
    one, both = load_features(single), load_features(pair)
    assert isinstance(both, Ensemble) and len(both.members) == 2 and class_names(both) == ("male", "female")
    assert both.meta["member_seeds"] == "0-1" and float(both.meta["test_accuracy"]) >= 0.9
    images = load_images(str(faces), image_size=12, labels_from_name="gender").images[:16]
    member_features, member_logits = zip(*(m(images) for m in both.members))
    torch.testing.assert_close(member_logits[0], one(images)[1])  # the first member is the single fit with --seed
    assert not torch.allclose(member_logits[0], member_logits[1], atol=1e-3)  # the second one's seed is another
    features, logits = both(images)
    mean = torch.stack([logits.softmax(1) for logits in member_logits]).mean(0)
    torch.testing.assert_close(logits.exp(), mean)
    torch.testing.assert_close(features, torch.cat(member_features, dim=1))
    assert features.shape == (16, 2 * one.feature_dim)


@pytest.fixture(scope="module")
def ensemble(faces: Path) -> str:
    """What `dcgan extractor fit --data FACES --labels-from-name gender --members 3` printed."""
    out = io.StringIO()
    argv = ["extractor", "fit", "--data", str(faces), "--labels-from-name", "gender", "--epochs", "4", "--quiet"]
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--batch-size", "32", "--members", "3"]) == 0
    return out.getvalue()


def test_an_ensemble_is_named_calibrated_and_evaluated_like_one_classifier(
    ensemble: str, faces: Path, tiny_run_rgb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "Use it with --features cnn-faces-gender-x3" in ensemble
    model = load_features("cnn-faces-gender-x3")
    assert isinstance(model, Ensemble) and len(model.members) == 3
    assert model.meta["calibrated"].startswith("class offsets fitted on 18 images")
    assert len(json.loads(model.meta["heldout_read"])) == 2
    assert model.meta["members_calibrated"].startswith("each member's class offsets fitted on 18 images")
    images = load_images(str(faces), image_size=12, labels_from_name="gender").images[:8]
    alone = torch.stack([m.extract(images, logits=True).logits for m in model.members])  # type: ignore[misc]
    torch.testing.assert_close(model.member_logits(images), alone + model.member_offsets[:, None])
    before, biases = model(images)[1], [m.classifier[1].bias.clone() for m in model.members]
    shift_logits(model, torch.tensor([0.5, -0.5]))  # what calibration does: the mean's logits move, not the members'
    torch.testing.assert_close(model(images)[1], before + torch.tensor([0.5, -0.5]))
    assert all(torch.equal(m.classifier[1].bias, b) for m, b in zip(model.members, biases, strict=True))
    evaluate = ["evaluate", str(tiny_run_rgb), "--data", str(faces), "--features", "cnn-faces-gender-x3"]
    assert main([*evaluate, "--n", "64", "--metrics", "coverage", "--quiet"]) == 0
    assert "features:  cnn-faces-gender-x3 (held-out accuracy" in (printed := capsys.readouterr().out)
    assert "coverage64_min" in printed and "groups from the gender in the file names" in printed
    assert main(["extractor", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("cnn-faces-gender-x3 "))
    assert "  4 x3  " in row, row  # each member's epochs, and how many members


def test_an_ensemble_steers_a_run(
    ensemble: str, faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", str(faces), "--image-size", "16", "--nz", "8", "--ngf", "8", "--ndf", "8"]
    argv += [
        "--batch-size",
        "32",
        "--steps",
        "4",
        "--precision",
        "fp32",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*argv, "--balance-groups", "cnn-faces-gender-x3", "--balance-every", "2"]) == 0
    said = capsys.readouterr().out
    assert "--balance-groups cnn-faces-gender-x3: every 2 steps, the groups of the fakes read since" in said
    assert "(groups from the gender in the file names; their shares of the images: male 40.0%, female 60.0%)" in said
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "weight_male" in row] == [2]


def test_an_ensemble_fitted_before_its_members_were_calibrated_loads_and_cannot_steer_by_its_lowest_member(
    ensemble: str, faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = extractor_dir() / "cnn-faces-gender-x3.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = {k: v for k, v in (f.metadata() or {}).items() if k != "members_calibrated"}
    weights = {k: v for k, v in load_file(str(path)).items() if k != "member_offsets"}
    save_file(weights, str(extractor_dir() / "cnn-faces-older-x3.safetensors"), metadata=meta)
    older = load_features("cnn-faces-older-x3")
    assert isinstance(older, Ensemble) and torch.equal(older.member_offsets, torch.zeros(3, 2))
    out = tmp_path / "run"
    argv = ["train", "--data", str(faces), "--image-size", "16", "--steps", "2", "--no-progress", "--out", str(out)]
    assert main([*argv, "--balance-groups", "cnn-faces-older-x3", "--balance-by", "lowest-member"]) == 2
    err = capsys.readouterr().err
    assert "--balance-by lowest-member reads each member of cnn-faces-older-x3 alone" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (out / "checkpoints").exists()


def test_a_damaged_ensemble_file_is_one_clear_error(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / "pair.safetensors"
    argv = ["extractor", "fit", "--data", str(faces), "--labels-from-name", "gender", "--epochs", "1", "--quiet"]
    assert main([*argv, "--batch-size", "32", "--members", "2", "--out", str(path)]) == 0
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    weights = {k: v for k, v in load_file(str(path)).items() if not k.startswith("members.1.body.0")}
    save_file(weights, str(tmp_path / "cut.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match=r"cut.safetensors do not fit the ensemble network\.$"):
        load_features(tmp_path / "cut.safetensors")
    with pytest.raises(SystemExit, match="2"):
        main(["extractor", "fit", "--data", str(faces), "--labels-from-name", "gender", "--members", "0"])
    assert capsys.readouterr().err.endswith("error: argument --members: expected a positive integer, got 0\n")
