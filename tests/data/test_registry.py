"""The data set registry: each entry is complete, every layer that needs a data set reads it from the table, and
a new data set is one entry plus its reader."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dcgan.cli import main
from dcgan.data import load_images, native_channels, registry
from dcgan.data.registry import DataSet, Request, Split
from dcgan.dedup import deduplicate
from dcgan.dedup.stream import open_source
from dcgan.errors import ConfigError, DataError
from dcgan.metrics.extractors import ARCHES, default_features, load_features
from dcgan.metrics.fit import default_arch, fit
from dcgan.metrics.nearest import memorisation_check
from dcgan.models import Generator
from dcgan.probe.run import load_labelled, paper_accuracy

ENTRIES = registry.entries()


def _a_name(entry: DataSet) -> str:
    """A name the entry reads: its own, or a member of its family (`lsun:example`)."""
    return f"{entry.prefix}example" if entry.prefix else entry.name


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _help(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: argparse would break names at hyphens
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda d: d.name)
def test_every_entry_is_complete_and_consistent(entry: DataSet) -> None:
    assert callable(entry.read) and entry.layout
    assert registry.find(_a_name(entry)) is entry and registry.get(_a_name(entry)) is entry
    assert entry.channels in (1, 3) and (entry.size is None or entry.size > 0)
    assert entry.classes is None or (entry.labelled and len(set(entry.classes)) == len(entry.classes) >= 2)
    assert entry.fit_arch is None or entry.fit_arch in ARCHES
    if entry.download is not None:
        assert "--download" in entry.hint, "the error for a missing set should say --download fetches it"
    if entry.fittable:
        assert entry.features == f"{entry.fit_arch}-{entry.name}", "a set an extractor is fitted on uses it"
    if entry.features != "inception":
        arch, _, trained_on = entry.features.partition("-")
        maker = registry.get(trained_on)
        assert maker.fittable and maker.fit_arch == arch, f"{entry.features} is not what `extractor fit` makes"


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda d: d.name)
def test_the_layers_read_the_registry(entry: DataSet) -> None:
    name = _a_name(entry)
    assert native_channels(name) == entry.channels
    assert default_features(name) == entry.features
    assert default_arch(name) == (entry.fit_arch or "cnn")
    for (protocol, labels_per_class), accuracy in entry.paper_probe.items():
        assert paper_accuracy(name, protocol, labels_per_class) == accuracy


@pytest.mark.parametrize("entry", [d for d in ENTRIES if d.hint], ids=lambda d: d.name)
def test_a_missing_set_says_where_it_looked_and_how_to_get_it(entry: DataSet, tmp_path: Path) -> None:
    """load_images and dedup both take every name; where the files are missing the error ends with the hint."""
    for load in (
        lambda: load_images(_a_name(entry), root=tmp_path, image_size=8, use_cache=False),
        lambda: open_source(_a_name(entry), root=tmp_path),
    ):
        try:
            load()
        except DataError as exc:
            assert "looked for" in str(exc) and str(exc).endswith(entry.hint)


def test_unknown_names_are_answered_with_the_registry_names(tmp_path: Path) -> None:
    for load in (lambda: load_images("no-such-set"), lambda: open_source("no-such-set")):
        with pytest.raises(DataError, match="neither a data set name") as caught:
            load()
        assert all(name in str(caught.value) for name in registry.names())
    assert not registry.is_standard(str(tmp_path)) and registry.find("lsun") is None


def test_a_missing_extractor_names_the_sets_fit_takes(cache: Path) -> None:
    fittable = "|".join(d.name for d in ENTRIES if d.fittable)
    with pytest.raises(ConfigError, match=re.escape(f"--data {fittable}` makes one")):
        load_features("lenet-no-such-set")


def test_cli_help_lists_the_registry_sets(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fit_help = _help(["extractor", "fit"], capsys, monkeypatch)
    probe_help = _help(["probe"], capsys, monkeypatch)
    assert all(d.name in fit_help for d in ENTRIES if d.fittable)
    assert all(d.name in probe_help for d in ENTRIES if d.labelled and d.separate_test)


def test_register_refuses_a_taken_name_and_unregister_undoes_it() -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(ENTRIES[0])
    registry.register(DataSet("scratch", read_tiny, channels=3, size=8))
    assert registry.is_standard("scratch")
    registry.unregister("scratch")
    assert not registry.is_standard("scratch") and registry.entries() == ENTRIES


# The worked example: a data set that is one entry and its reader, and nothing else edited.


def read_tiny(request: Request) -> Split:
    """40 grey 8x8 images per split, dark ones labelled 0 and bright ones 1, a different draw per split."""
    rng = np.random.default_rng(0 if request.split == "train" else 1)
    labels = np.arange(40) % 2
    images = rng.integers(0, 100, (40, 1, 8, 8), dtype=np.uint8) + (150 * labels).astype(np.uint8)[:, None, None, None]
    return Split(images, labels, source="numpy")


@pytest.fixture
def tiny(cache: Path) -> Iterator[DataSet]:
    entry = DataSet(
        "tiny", read_tiny, channels=1, size=8, labelled=True, classes=("dark", "bright"), separate_test=True,
        features="lenet-tiny", fit_arch="lenet",
    )  # fmt: skip
    registry.register(entry)
    yield entry
    registry.unregister("tiny")


def test_a_new_data_set_is_one_entry_and_its_reader(
    tiny: DataSet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # load_images reads it by name, at any size and channel count, both splits.
    train = load_images("tiny", image_size=16)
    assert (
        train.images.shape == (40, 1, 16, 16) and train.labels is not None and train.labels[:4].tolist() == [0, 1, 0, 1]
    )
    assert load_images("tiny", image_size=16, channels=3, split="test").images.shape == (40, 3, 16, 16)

    # Deduplication takes it by name, at its own size.
    source = open_source("tiny")
    assert len(source.ids) == 40 and source.channels == 1 and source.read([0]).areas.tolist() == [8 * 8]
    assert len(deduplicate("tiny", method="dhash").ids) == 40

    # The metrics: its default extractor is lenet-tiny, which `extractor fit` makes with the registry's network...
    with pytest.raises(ConfigError, match="`dcgan extractor fit --data tiny` makes it"):
        load_features(None, "tiny")
    fit("tiny", epochs=1, batch_size=20)
    extractor = load_features(None, "tiny")
    assert extractor.name == "lenet-tiny" and extractor.arch == "lenet"
    # ...and the memorisation check measures against its separate test split.
    generator = Generator(image_size=16, channels=1, nz=8, ngf=8)
    result = memorisation_check(generator, data="tiny", features=extractor, n=10, show=2, k=2)
    assert len(result.test_nearest) == 10

    # The probe reads its labels, and the CLI's help offers it.
    assert load_labelled("tiny", None, 16, 1, "test").labels[:2].tolist() == [0, 1]
    assert "tiny" in _help(["extractor", "fit"], capsys, monkeypatch)
    assert "tiny" in _help(["probe"], capsys, monkeypatch)


def test_a_read_only_source_array_loads_without_a_warning(cache: Path) -> None:
    """A reader that hands back a read-only array (a memory-mapped or Debian-packaged file) loads without torch's
    "not writable" UserWarning, and the loaded images can be written to without touching the source."""
    source = read_tiny(Request("frozen", "train", (), 8, 1))
    source.images.setflags(write=False)
    registry.register(DataSet("frozen", lambda request: source, channels=1, size=8))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loaded = load_images("frozen", image_size=8, use_cache=False)
    finally:
        registry.unregister("frozen")
    loaded.images[0] = 0
    assert source.images[0].any(), "the source array is untouched"
