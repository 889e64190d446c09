"""Feature extractors: the domain classifiers (fit, save, find by name) and the FID Inception's weight file."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dcgan.cli import main
from dcgan.data import ImageData
from dcgan.errors import CheckpointError, ConfigError
from dcgan.metrics import LeNet, SmallCNN, fid_inception_v3, fit_extractor, load_features, save_extractor
from dcgan.metrics.extractors import extractor_dir
from dcgan.metrics.inception import WEIGHTS_FILE, InceptionExtractor, _BlockA, _BlockEMax
from dcgan.metrics.inception import tv as torchvision_inception
from tests.conftest import SHARED_DATA


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("net", [LeNet, SmallCNN])
@pytest.mark.parametrize(("channels", "size"), [(1, 16), (3, 32), (1, 64)])
def test_extractors_take_any_size_and_channel_count(net: type, channels: int, size: int) -> None:
    features = net().extract(_images(5, channels, size), logits=True)
    assert features.features.shape == (5, net.feature_dim)
    assert features.logits is not None and features.logits.shape == (5, 10)


def test_extract_rejects_float_images() -> None:
    with pytest.raises(ConfigError, match="uint8"):
        LeNet().extract(torch.rand(2, 1, 32, 32))


def _bars(n: int, seed: int) -> ImageData:
    """A two-class toy set: a vertical or a horizontal bright bar on noise."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (n, 1, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(2, 14, (n,), generator=g)
    for i in range(n):
        if labels[i]:
            images[i, 0, :, where[i]] = 250
        else:
            images[i, 0, where[i], :] = 250
    return ImageData(images, labels, "bars", "train", "synthetic")


def test_fit_learns_and_saves_its_test_accuracy_and_is_found_by_name(cache: Path) -> None:
    model, meta = fit_extractor(_bars(512, 0), _bars(200, 1), arch="lenet", epochs=3, batch_size=32)
    assert float(meta["test_accuracy"]) > 0.95
    path = save_extractor(model, extractor_dir() / f"{model.name}.safetensors")
    assert path == cache / "extractors" / "lenet-bars.safetensors"
    loaded = load_features("lenet-bars")
    assert loaded.meta["test_accuracy"] == meta["test_accuracy"] and loaded.name == "lenet-bars"
    x = _images(4, 1, 32)
    assert torch.equal(loaded.extract(x).features, model.extract(x).features)
    assert load_features(path).fingerprint == loaded.fingerprint != "untrained"


def test_fit_needs_labels() -> None:
    data = _bars(8, 0)
    data.labels = None
    with pytest.raises(Exception, match="no class labels"):
        fit_extractor(data, _bars(8, 1))


def test_a_missing_extractor_says_how_to_make_it(cache: Path) -> None:
    with pytest.raises(ConfigError, match=r"dcgan extractor fit --data fashion-mnist"):
        load_features(None, "fashion-mnist")  # the default for Fashion-MNIST


def test_a_file_that_is_not_an_extractor_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_features(junk)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not a dcgan feature extractor"):
        load_features(other)


# The FID Inception: tested with a randomly initialised network saved in the standard file's layout.


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME whose hub cache holds random FID-Inception weights under the standard file name."""
    home = tmp_path_factory.mktemp("torch-home")
    path = home / "hub" / "checkpoints" / WEIGHTS_FILE
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(fid_inception_v3().state_dict(), path)
    return path


def test_inception_loads_from_the_torch_hub_cache(inception_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(inception_file.parents[2]))
    with pytest.warns(UserWarning, match="not the standard FID Inception file"):
        extractor = load_features("inception")
    assert isinstance(extractor, InceptionExtractor) and extractor.meta["standard_weights"] == "no"
    out = extractor.extract(_images(2, 1, 32), logits=True)  # grey 32x32 in, resized to 299 RGB
    assert out.features.shape == (2, 2048) and out.logits is not None and out.logits.shape == (2, 1008)
    assert torch.allclose(out.logits, out.features @ extractor.net.fc.weight.T, atol=1e-4)  # no bias
    with pytest.warns(UserWarning):
        again = load_features(inception_file)  # the same file by path
    assert again.fingerprint == extractor.fingerprint


def test_missing_inception_weights_say_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(CheckpointError) as info:
        load_features("inception")
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / WEIGHTS_FILE) in message and "--features" in message


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_inception_file_with_code_or_the_wrong_layout_is_refused(tmp_path: Path) -> None:
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, ...]:
            return (Path.touch, (ran,))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, evil)  # torch's own format: only weights_only stands between it and the code
    with pytest.raises(CheckpointError, match="Refusing"):
        load_features(evil)
    assert not ran.exists()
    with open(evil, "wb") as f:  # a bare pickle is not a torch file at all
        pickle.dump({"x": Payload()}, f)
    with pytest.raises(CheckpointError, match=r"truncated or corrupt|Refusing"):
        load_features(evil)
    assert not ran.exists()
    wrong = tmp_path / "wrong.pth"
    torch.save(LeNet().state_dict(), wrong)
    with pytest.raises(CheckpointError, match="does not fit the FID Inception"):
        load_features(wrong)


def test_the_fid_blocks_pool_like_tensorflow() -> None:
    """Average pooling ignores padding (only border pixels of the pool branch change); the last block max-pools."""
    torch.manual_seed(0)
    ours, theirs = _BlockA(8, pool_features=4).eval(), torchvision_inception.InceptionA(8, pool_features=4).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(1, 8, 6, 6) + 1
    a, b = ours(x), theirs(x)
    assert torch.equal(a[:, :-4], b[:, :-4])  # the other branches are untouched
    pool_diff = (a[:, -4:] - b[:, -4:]).abs().sum(1)[0]
    assert pool_diff[1:-1, 1:-1].max() < 1e-6 and pool_diff[0, 0] > 1e-4
    e_ours, e_theirs = _BlockEMax(8).eval(), torchvision_inception.InceptionE(8).eval()
    e_theirs.load_state_dict(e_ours.state_dict())
    assert not torch.allclose(e_ours(x)[:, -192:], e_theirs(x)[:, -192:])
    max_pooled = e_ours.branch_pool(F.max_pool2d(x, kernel_size=3, stride=1, padding=1))
    torch.testing.assert_close(e_ours(x)[:, -192:], max_pooled, atol=1e-6, rtol=0)  # the pool branch max-pools


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="needs ../shared/data/mnist")
def test_cli_extractor_fit_then_list(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(SHARED_DATA / "mnist")
    assert main(["extractor", "fit", "--data", "mnist", "--data-root", root, "--epochs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "lenet-mnist: test accuracy" in printed and "--features lenet-mnist" in printed
    assert float(load_features("lenet-mnist").meta["test_accuracy"]) > 0.8  # one epoch: far above chance (0.1)
    assert main(["extractor", "list"]) == 0
    assert "lenet-mnist" in capsys.readouterr().out
