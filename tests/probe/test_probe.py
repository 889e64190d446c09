"""The discriminator as a feature extractor: features, batchnorm, the L2-SVM, the protocols and `dcgan probe`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.cli import main
from dcgan.errors import ConfigError, DataError
from dcgan.models import Discriminator
from dcgan.probe import (
    draw_labelled,
    extract_features,
    feature_dim,
    few_labels,
    fit_standardizer,
    fit_svm,
    full_labels,
    recompute_batchnorm,
    validation_split,
)
from dcgan.probe import protocols as protocols_module
from dcgan.probe.run import LabelledSplit, ProbeSettings, discriminator_features
from dcgan.probe.svm import objective_value


def pixel_picking_d() -> Discriminator:
    """A 16x16 one-channel D (ndf=2) whose first block copies pixel (2i, 2j) to (i, j) of its channel 0."""
    d = Discriminator(16, 1, ndf=2).eval()
    with torch.no_grad():
        for p in d.parameters():
            p.zero_()
        d.blocks[0][0].weight[0, 0, 1, 1] = 1.0  # kernel tap (1, 1) with padding 1 and stride 2 reads (2i, 2j)
    return d


def test_features_are_each_layer_max_pooled_to_the_grid_and_concatenated() -> None:
    d = pixel_picking_d()
    images = torch.zeros(2, 1, 16, 16, dtype=torch.uint8)  # -1 everywhere after scaling; LeakyReLU gives -0.2
    images[0, 0, 4, 6] = 255  # reaches layer 0 at (2, 3): the 4x4 pooling cell (1, 1) of an 8x8 map
    images[1, 0, 5, 6] = 255  # an odd row: layer 0 never reads it
    out = extract_features(d, images, grid=4, precision="fp32")

    # Layer 0: 2 channels x 8x8 -> 2 x 4 x 4; layer 1: 4 channels x 4x4 -> 4 x 4 x 4.
    assert out.shape == (2, (2 + 4) * 16) == (2, feature_dim(d, grid=4))
    expected = np.full((4, 4), -0.2, dtype=np.float32)
    expected[1, 1] = 1.0
    np.testing.assert_allclose(out[0, :16].reshape(4, 4), expected, atol=1e-6)
    np.testing.assert_allclose(out[1, :16], -0.2, atol=1e-6)
    np.testing.assert_allclose(out[:, 16:32], 0.0, atol=1e-6)  # channel 1 of layer 0 has zero weights

    # Only layer 1, pooled to 2x2, equals pooling layer 1's maps by hand.
    torch.manual_seed(0)
    d = Discriminator(16, 1, ndf=2).eval()
    x = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    out = extract_features(d, x, layers=[1], grid=2, precision="fp32")
    with torch.no_grad():
        maps = d.features(x.float() / 127.5 - 1)[1]  # (3, 4, 4, 4)
    by_hand = maps.reshape(3, 4, 2, 2, 2, 2).amax(dim=(3, 5)).flatten(1)
    np.testing.assert_allclose(out, by_hand.numpy(), rtol=1e-5, atol=1e-6)


def test_bad_layers_or_grid_are_refused_in_one_sentence() -> None:
    d = Discriminator(16, 1, ndf=2)
    with pytest.raises(ConfigError, match="layers 0 to 1"):
        feature_dim(d, layers=[2])
    with pytest.raises(ConfigError, match="larger than layer 1's 4x4"):
        feature_dim(d, grid=8)


def test_batchnorm_statistics_are_recomputed_as_the_average_over_the_images() -> None:
    torch.manual_seed(0)
    d = Discriminator(16, 1, ndf=4)
    bn = d.blocks[1][1]
    bn.running_mean.fill_(5.0)
    images = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8)
    recompute_batchnorm(d, images, batch_size=10)
    assert not d.training and bn.momentum == 0.1  # back in eval mode with its momentum restored
    with torch.no_grad():
        pre = d.blocks[1][0](d.blocks[0](images.float() / 127.5 - 1))
    # Equal batches, so the cumulative average of batch means is the mean over all images.
    torch.testing.assert_close(bn.running_mean, pre.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_bfloat16_features_stay_close_to_float32() -> None:
    torch.manual_seed(0)
    d = Discriminator(32, 3, ndf=8)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    recompute_batchnorm(d, images)
    a = extract_features(d, images, precision="fp32")
    b = extract_features(d, images, precision="bf16")
    assert np.abs(a - b).mean() / np.abs(a).mean() < 0.02


def test_features_are_cached_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path))
    torch.manual_seed(0)
    d = Discriminator(16, 1, ndf=2)
    split = LabelledSplit(torch.randint(0, 256, (20, 1, 16, 16), dtype=torch.uint8), np.arange(20) % 2, "synthetic")
    settings = ProbeSettings(precision="fp32")
    first = discriminator_features(d, split, split, settings, lambda _: None)
    second = discriminator_features(d, split, split, settings, lambda _: None)
    assert not first[2] and second[2]
    np.testing.assert_array_equal(first[0], second[0])
    assert list((tmp_path / "probe").glob("*.npy"))


def test_svm_matches_sklearn_linearsvc_on_a_small_problem() -> None:
    from sklearn.datasets import make_classification
    from sklearn.svm import LinearSVC

    x, y = make_classification(400, 30, n_informative=8, n_classes=4, n_clusters_per_class=1, random_state=0)
    x = (x * 3 + 1).astype(np.float32)
    scaler = fit_standardizer(x)
    xs = (x - scaler.mean.numpy()) / scaler.scale.numpy()
    C = 0.1
    # A large intercept_scaling makes liblinear's penalty on the intercept negligible, as it is absent here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = LinearSVC(C=C, loss="squared_hinge", dual=False, tol=1e-10, intercept_scaling=100, max_iter=10000)
        reference.fit(xs.astype(np.float64), y)
    ours = fit_svm(x, y, C, tol=1e-7, max_iter=2000)
    scale = np.abs(reference.coef_).max()
    np.testing.assert_allclose(ours.std_weight.numpy().T, reference.coef_, atol=3e-3 * scale)
    np.testing.assert_allclose(ours.std_bias.numpy(), reference.intercept_, atol=3e-3 * scale)
    assert (ours.predict(x).numpy() == reference.predict(xs)).mean() > 0.99
    ref_model = fit_svm(x, y, C, max_iter=1)
    ref_model.std_weight = torch.tensor(reference.coef_.T, dtype=torch.float32)
    ref_model.std_bias = torch.tensor(reference.intercept_, dtype=torch.float32)
    assert objective_value(ours, x, y, scaler) <= objective_value(ref_model, x, y, scaler) * (1 + 1e-4)


def test_svm_fits_the_same_on_masked_and_gathered_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    many, few = np.arange(200), np.arange(0, 300, 3)  # 2/3 of the rows are masked, 1/3 gathered
    masked = fit_svm(x, y, 1.0, rows=many, tol=1e-7)
    gathered = fit_svm(x[many], y[many], 1.0, tol=1e-7)
    torch.testing.assert_close(masked.weight, gathered.weight, rtol=1e-3, atol=1e-4)
    assert fit_svm(x, y, 1.0, rows=few).accuracy(x, y, few) > 0.9


def test_few_label_draws_are_class_balanced_and_stay_outside_the_validation_split() -> None:
    labels = np.repeat(np.arange(10), 100)
    np.random.default_rng(1).shuffle(labels)
    rest, val = validation_split(labels, 200, seed=0)
    assert len(val) == 200 and not set(rest) & set(val) and len(rest) + len(val) == len(labels)
    rng = np.random.default_rng(0)
    draws = [draw_labelled(labels, rest, 7, rng) for _ in range(3)]
    for rows in draws:
        assert np.bincount(labels[rows], minlength=10).tolist() == [7] * 10
        assert set(rows) <= set(rest) and len(set(rows)) == len(rows)
    assert not np.array_equal(draws[0], draws[1])
    with pytest.raises(DataError, match="fewer than --labels-per-class"):
        draw_labelled(labels, rest, 1000, rng)


def test_protocols_never_train_on_validation_or_test_images(monkeypatch: pytest.MonkeyPatch) -> None:
    # Column 0 of every feature vector is the image's id: 0-599 train, 1000-1199 test.
    rng = np.random.default_rng(0)
    train_y, test_y = rng.integers(0, 3, 600), rng.integers(0, 3, 200)
    centres = rng.normal(size=(3, 8)) * 3
    train = np.c_[np.arange(600), centres[train_y] + rng.normal(size=(600, 8))].astype(np.float32)
    test = np.c_[1000 + np.arange(200), centres[test_y] + rng.normal(size=(200, 8))].astype(np.float32)
    seen: list[np.ndarray] = []
    real_fit = protocols_module.fit_svm

    def spy(features, labels, C, *, rows=None, **kwargs):  # type: ignore[no-untyped-def]
        ids = np.asarray(features)[:, 0] if rows is None else np.asarray(features)[np.asarray(rows), 0]
        seen.append(ids.astype(int))
        return real_fit(features, labels, C, rows=rows, **kwargs)

    monkeypatch.setattr(protocols_module, "fit_svm", spy)
    rest, _ = validation_split(train_y, 100, seed=0)
    few = few_labels(train, train_y, test, test_y, per_class=5, draws=3, val_size=100, grid=(0.01, 1.0))
    assert len(few.accuracies) == 3 and few.ci95 >= 0 and few.accuracy > 0.8
    for ids in seen:
        assert set(ids) <= set(rest) and len(ids) == 15
        assert np.bincount(train_y[ids], minlength=3).tolist() == [5, 5, 5]
    seen.clear()
    full = full_labels(train, train_y, test, test_y, val_size=100, grid=(0.01, 1.0))
    assert full.ci95 == 0 and full.accuracy > 0.9
    assert all(ids.max() < 600 for ids in seen)  # the test images are never fitted
    assert all(set(ids) <= set(rest) for ids in seen[:-1])  # only the final refit sees the validation split


def test_c_search_stops_once_validation_accuracy_clearly_falls(monkeypatch: pytest.MonkeyPatch) -> None:
    by_C = {1e-3: 0.50, 1e-2: 0.60, 1e-1: 0.595, 1.0: 0.58, 10.0: 0.70}
    tried: list[float] = []

    class Fake:
        def __init__(self, C: float) -> None:
            self.C = C

        def accuracy(self, *args: object) -> float:
            return by_C[self.C]

    def fake_fit(features, labels, C, **kwargs):  # type: ignore[no-untyped-def]
        tried.append(C)
        return Fake(C)

    monkeypatch.setattr(protocols_module, "fit_svm", fake_fit)
    x, y = np.zeros((10, 2), np.float32), np.arange(10) % 2
    C, model, scores = protocols_module.choose_C(x, y, np.arange(5), np.arange(5, 10), list(by_C)[::-1])
    # 0.595 is within a point of the best, so the search goes on; 0.58 is not, so 10 is never fitted.
    assert (
        tried == [1e-3, 1e-2, 1e-1, 1.0]
        and C == 1e-2
        and model.C == 1e-2
        and list(scores) == ["0.001", "0.01", "0.1", "1"]
    )


def _labelled_folder(root: Path, per_class: dict[str, int]) -> None:
    """Two classes of 16x16 grey images: a bright square top-left, or bottom-right."""
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for label, corner in (("a", 0), ("b", 8)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                image = rng.integers(0, 60, (16, 16), dtype=np.uint8)
                image[corner : corner + 8, corner : corner + 8] = 220
                Image.fromarray(image).save(folder / f"{i}.png")


def test_cli_probe_writes_every_features_x_protocol_pairing(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _labelled_folder(tmp_path / "data", {"train": 30, "test": 10})
    out = tmp_path / "probe.json"
    code = main([
        "probe", str(tiny_run), "--data", str(tmp_path / "data"), "--val-size", "20", "--labels-per-class", "3",
        "--draws", "2", "--C", "0.01,1", "--max-iter", "50", "--json", str(out), "--markdown", str(tmp_path / "probe.md"), "--quiet",
    ])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    pairs = {(r["features"], r["protocol"]) for r in report["results"]}
    assert pairs == {(f, p) for f in ("trained", "random", "pixels") for p in ("full", "few")}
    for r in report["results"]:
        assert 0 <= r["accuracy"] <= 1 and r["ci95"] >= 0 and len(r["accuracies"]) == r["draws"]
    assert report["settings"]["labels_per_class"] == 3 and report["feature_dims"]["pixels"] == 256
    assert report["feature_dims"]["trained"] == report["feature_dims"]["random"] == (8 + 16) * 16
    assert "pixels" in capsys.readouterr().out and (tmp_path / "probe.md").read_text().startswith("| features")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "7"], "does not exist"),
        (["--no-full"], "needs --labels-per-class"),
        (["--features", "trained,bogus"], "--features must list"),
        (["--data", "NODATA"], "neither a data set name"),
    ],
)
def test_cli_bad_input_exits_2_with_one_sentence(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    _labelled_folder(tmp_path / "data", {"train": 12, "test": 4})
    data = [] if "--data" in args else ["--data", str(tmp_path / "data")]
    assert main(["probe", str(tiny_run), *data, "--val-size", "4", "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("error:") and "\n" not in err


def test_missing_checkpoint_exits_2_and_an_unlabelled_folder_is_refused(tmp_path: Path, tiny_run: Path) -> None:
    assert main(["probe", str(tmp_path / "nope")]) == 2
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "flat" / "x.png")
    with pytest.raises(DataError, match="train/ and test/"):
        from dcgan.probe import probe

        probe(tiny_run, ProbeSettings(data=str(tmp_path / "flat")))
