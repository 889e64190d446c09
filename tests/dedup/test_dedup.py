"""Deduplication: planted copies (byte-identical and altered) are grouped with their originals, distinct images
are kept, `--apply` writes a list `dcgan train` loads, the user's files are never touched, bad input exits 2."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from dcgan.cli import main
from dcgan.data import load_images
from dcgan.dedup import (
    DedupResult,
    HashAutoencoder,
    deduplicate,
    dhash,
    load_autoencoder,
    phash,
    save_autoencoder,
    train_autoencoder,
)
from dcgan.dedup.groups import group_duplicates, hamming, near_pairs
from dcgan.errors import DataError

STEPS = 40  # a tiny training budget: the planted copies below are easy (copies <= 5 bits apart, others >= 29)


def _distinct(n: int, seed: int = 0) -> list[Image.Image]:
    """n unrelated 64x64 pictures: smooth random colour fields with a bright disc somewhere."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        field = torch.from_numpy(rng.integers(0, 256, (1, 3, 4, 4)).astype(np.float32))
        field = torch.nn.functional.interpolate(field, size=(64, 64), mode="bicubic", align_corners=False)
        array = field[0].clamp(0, 255).permute(1, 2, 0).numpy().astype(np.uint8)
        yy, xx = np.mgrid[:64, :64]
        cy, cx, r = rng.integers(12, 52), rng.integers(12, 52), rng.integers(6, 14)
        array[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.integers(0, 256, 3)
        images.append(Image.fromarray(array))
    return images


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """40 distinct images plus 5 planted copies: {copy path: original path}."""
    folder = tmp_path_factory.mktemp("planted") / "photos"
    (folder / "sub").mkdir(parents=True)
    originals = _distinct(40)
    for i, image in enumerate(originals):
        image.save(folder / f"img_{i:03d}.png")
    copies = {
        "sub/exact_copy.png": 3,  # byte-identical, in a sub-folder
        "jpeg_q30.jpg": 7,
        "resized_48.png": 11,
        "shifted.png": 15,
        "brighter.png": 19,
    }
    shutil.copyfile(folder / "img_003.png", folder / "sub/exact_copy.png")
    (folder / "jpeg_q30.jpg").write_bytes(_jpeg(originals[7], 30))
    originals[11].resize((48, 48), Image.Resampling.LANCZOS).save(folder / "resized_48.png")
    originals[15].crop((2, 1, 64, 64)).resize((64, 64), Image.Resampling.BICUBIC).save(folder / "shifted.png")
    ImageEnhance.Brightness(originals[19]).enhance(1.08).save(folder / "brighter.png")
    truth = {str(folder / c): str(folder / f"img_{i:03d}.png") for c, i in copies.items()}
    return folder, truth


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in files} | {
        str(p): ("folder", p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_dir()
    }


@pytest.fixture(scope="module")
def first_run(planted: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> DedupResult:
    """The planted folder deduplicated once, training the autoencoder (saved in the report folder)."""
    return deduplicate(planted[0], tmp_path_factory.mktemp("first") / "report", steps=STEPS, radius=8)


def test_planted_duplicates_are_found_and_distinct_images_kept(
    planted: tuple[Path, dict[str, str]], first_run: DedupResult
) -> None:
    folder, truth = planted
    result = first_run
    group_of = {p: g for g, members in enumerate(result.groups) for p in members}
    for copy, original in truth.items():
        assert copy in group_of and group_of[copy] == group_of.get(original), f"{Path(copy).name} not found"
    originals_per_group = [sum(Path(p).name.startswith("img_") for p in g) for g in result.groups]
    assert max(originals_per_group) == 1, "two distinct images were grouped together"
    assert result.exact_groups == [[str(folder / "img_003.png"), str(folder / "sub/exact_copy.png")]]
    kept = {result.ids[i] for i in result.kept_positions}
    assert len(kept) == 40 and all(sum(p in kept for p in g) == 1 for g in result.groups)
    for name in ("jpeg_q30.jpg", "resized_48.png"):  # the copy with more pixels, then the bigger file, is kept
        assert str(folder / name) not in kept and truth[str(folder / name)] in kept
    assert {p.name for p in result.files_written} == {"report.json", "groups_000.png", "autoencoder.safetensors"}


def test_apply_writes_a_kept_list_that_trains(
    planted: tuple[Path, dict[str, str]], first_run: DedupResult, tmp_path: Path
) -> None:
    folder, _ = planted
    before = _snapshot(folder)
    out = tmp_path / "report"
    model = first_run.model_path
    args = ["dedup", "--data", str(folder), "--out", str(out), "--apply", "--links", "--model", str(model)]
    assert main([*args, "--radius", "8", "--no-progress"]) == 0
    kept = (out / "kept.txt").read_text().split()
    report = json.loads((out / "report.json").read_text())
    assert len(kept) == 40 and all(sum(p in kept for p in g) == 1 for g in report["groups"])
    assert all(g[0] in kept for g in report["groups"])  # the one kept comes first
    assert load_images(str(out / "kept.txt"), image_size=16, use_cache=False).files == kept
    assert len(load_images(str(out / "kept"), image_size=16, use_cache=False)) == 40  # the folder of links
    assert report["counts"]["images"] == 45 and report["counts"]["kept"] == 40
    assert all(len(g) >= 2 for g in report["groups"]) and sorted(out.glob("groups_*.png"))
    assert report["groups"] == first_run.groups  # the saved model hashes as the trained one did
    assert _snapshot(folder) == before  # nothing in the user's folder changed, nothing was added


def test_chunk_size_does_not_change_the_groups(planted: tuple[Path, dict[str, str]]) -> None:
    folder, _ = planted
    model = train_autoencoder(np.zeros((4, 3, 32, 32), np.uint8) + 128, steps=1)  # any fixed model will do
    a = deduplicate(folder, model=model, chunk=7, radius=2)
    b = deduplicate(folder, model=model, chunk=1000, radius=2)
    assert a.groups == b.groups and a.kept_positions == b.kept_positions


def test_saved_model_gives_the_same_hashes(tmp_path: Path) -> None:
    images = np.stack([np.asarray(im.resize((32, 32))).transpose(2, 0, 1) for im in _distinct(20)])
    model = train_autoencoder(images, steps=5)
    loaded = load_autoencoder(save_autoencoder(model, tmp_path / "ae.safetensors"))
    x = torch.from_numpy(images)
    assert np.array_equal(model.hash(x), loaded.hash(x)) and model.hash(x).shape == (20, 16)


def test_training_lowers_the_reconstruction_error() -> None:
    images = np.stack([np.asarray(im.resize((32, 32))).transpose(2, 0, 1) for im in _distinct(64)])
    x = torch.from_numpy(images)

    def error(model: HashAutoencoder) -> float:
        with torch.no_grad():
            inputs = model.inputs(x)
            return float(((model(inputs) - inputs) ** 2).mean())

    assert error(train_autoencoder(images, steps=60)) < 0.6 * error(train_autoencoder(images, steps=0))


def test_near_collision_search_finds_exactly_the_pairs_within_the_radius() -> None:
    codes = np.unique(np.random.default_rng(1).integers(0, 256, (400, 2), dtype=np.uint8), axis=0)  # 16 bits
    d = hamming(codes, codes)
    for radius in (1, 3):
        pairs, _ = near_pairs(codes, radius, pair_batch=50)  # small batches: many of them
        found = {(min(i, j), max(i, j)) for i, j in pairs.tolist()}
        assert found == {(i, j) for i in range(len(codes)) for j in range(i + 1, len(codes)) if d[i, j] <= radius}


def test_a_hash_with_k_bits_flipped_joins_its_original_only_within_radius_k() -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (30, 16), dtype=np.uint8)  # random 128-bit codes: ~64 bits apart
    flips = np.zeros((30, 128), np.uint8)
    k = np.arange(30) % 7  # copy i differs from original i in k[i] bits
    for row in range(30):
        flips[row, rng.choice(128, k[row], replace=False)] = 1
    codes = np.concatenate([base, base ^ np.packbits(flips, axis=1)])
    for radius in (0, 3, 6):
        groups, _, _ = group_duplicates(codes, radius=radius)
        assert sorted(tuple(g) for g in groups) == [(i, i + 30) for i in range(30) if k[i] <= radius]


def test_perceptual_hashes_see_through_small_changes() -> None:
    a, b = _distinct(2, seed=5)
    brighter = ImageEnhance.Brightness(a).enhance(1.05)
    x = np.stack([np.asarray(im.resize((32, 32))).transpose(2, 0, 1) for im in (a, brighter, b)])
    for fn in (dhash, phash):
        codes = fn(x)
        assert codes.shape == (3, 8)
        d = hamming(codes, codes)
        assert d[0, 1] <= 4 < d[0, 2]


def test_a_standard_set_by_name_reports_indices(tmp_path: Path) -> None:
    result = deduplicate("mnist5k", tmp_path / "out", steps=10, train_images=500, apply=True)
    assert result.ids[0] == "mnist5k[0]" and len(result.ids) == 5000
    assert (tmp_path / "out" / "kept_indices.txt").exists() and not (tmp_path / "out" / "kept.txt").exists()


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p.mkdir(), "holds no image files"),
        (lambda p: None, "neither a data set name"),
    ],
)
def test_bad_data_exits_2_with_one_sentence(make, expected, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    make(tmp_path / "data")
    assert main(["dedup", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0 and "Traceback" not in err


def test_bad_model_and_out_inside_the_data_exit_2(planted: tuple[Path, dict[str, str]], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder, _ = planted
    bad = tmp_path / "model.safetensors"
    bad.write_text("not a model")
    assert main(["dedup", "--data", str(folder), "--out", str(tmp_path / "o"), "--model", str(bad)]) == 2
    assert "safetensors" in capsys.readouterr().err
    assert main(["dedup", "--data", str(folder), "--out", str(folder / "report")]) == 2
    assert "inside the data folder" in capsys.readouterr().err
    assert not (folder / "report").exists()
    with pytest.raises(DataError):
        deduplicate(tmp_path / "missing")
