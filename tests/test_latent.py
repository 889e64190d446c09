"""Walks, z files, exemplars, arithmetic and directions on tiny generators, and their commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.cli import main
from dcgan.errors import ConfigError, DataError
from dcgan.latent import (
    attribute_direction,
    interpolate,
    interpolate_chain,
    label_groups,
    load_z,
    numbered_sheet,
    resolve_ids,
    save_z,
    slerp,
    vector_arithmetic,
)
from dcgan.models import Generator
from dcgan.sample import generate, grid_image, latents


@pytest.fixture(scope="module")
def tiny_g() -> Generator:
    torch.manual_seed(0)
    return Generator(16, 1, nz=8, ngf=8).eval()


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_walk_endpoints_are_the_endpoints_samples(tiny_g: Generator, method: str) -> None:
    z0, z1 = latents(2, 8, "uniform", seed=3)
    path = interpolate(z0, z1, steps=7, method=method)
    images = generate(tiny_g, path)
    assert path.shape == (7, 8)
    torch.testing.assert_close(images[0], generate(tiny_g, z0[None])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(images[-1], generate(tiny_g, z1[None])[0], atol=1e-5, rtol=0)
    assert not torch.allclose(images[3], images[0])  # the middle is somewhere else


def test_slerp_keeps_norms_and_blends_unequal_ones() -> None:
    g = torch.Generator().manual_seed(1)
    z0, z1 = torch.randn(100, generator=g), torch.randn(100, generator=g)
    z1 = z1 / z1.norm() * z0.norm()
    path = interpolate(z0, z1, steps=11, method="slerp")
    torch.testing.assert_close(path.norm(dim=1), z0.norm().expand(11), rtol=1e-5, atol=1e-5)
    linear = interpolate(z0, z1, steps=11, method="linear")
    assert linear.norm(dim=1)[5] < 0.8 * z0.norm()  # the straight line cuts through the middle of the ball
    half = slerp(z0, 3 * z1, torch.tensor([0.5]))[0]
    assert half.norm() == pytest.approx(2 * float(z0.norm()), rel=1e-5)


def test_chain_passes_through_every_point_once() -> None:
    points = latents(4, 8, "normal", seed=0)
    chain = interpolate_chain(points, steps=5, method="slerp")
    assert chain.shape == (3 * 4 + 1, 8)
    for k in range(4):
        torch.testing.assert_close(chain[4 * k], points[k])


def test_bad_walk_settings_are_refused() -> None:
    z = torch.zeros(2, 8)
    with pytest.raises(ConfigError, match="at least 2"):
        interpolate(z[0], z[1], steps=1)
    with pytest.raises(ConfigError, match="method"):
        interpolate(z[0], z[1], method="cubic")


def test_z_files_round_trip_and_refuse_bad_files(tmp_path: Path) -> None:
    z = latents(3, 8, "uniform", seed=0)
    torch.testing.assert_close(load_z(save_z(z, tmp_path / "z.npy"), nz=8), z)
    np.save(tmp_path / "one.npy", z[0].numpy())
    assert load_z(tmp_path / "one.npy").shape == (1, 8)
    with pytest.raises(DataError, match="nz=5"):
        load_z(tmp_path / "z.npy", nz=5)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a NumPy"):
        load_z(tmp_path / "objects.npy")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(DataError):
        load_z(tmp_path / "text.npy")
    with pytest.raises(DataError, match="No such"):
        load_z(tmp_path / "missing.npy")


def test_ids_name_sheet_numbers_z_files_and_images(tmp_path: Path) -> None:
    sheet = latents(50, 8, "uniform", seed=7)
    save_z(sheet[:2] * 0.5, tmp_path / "two.npy")
    (tmp_path / "face.png").write_bytes(b"")  # existence is all resolve_ids checks; the projector reads it
    projected = torch.full((1, 8), 0.25)
    found = resolve_ids(
        f"12,{tmp_path / 'two.npy'},{tmp_path / 'face.png'},40", 8, "uniform", 7, lambda paths: projected
    )
    assert found.z.shape == (5, 8)
    torch.testing.assert_close(found.z[0], sheet[12])
    torch.testing.assert_close(found.z[1:3], sheet[:2] * 0.5)
    torch.testing.assert_close(found.z[3], projected[0])
    torch.testing.assert_close(found.z[4], sheet[40])
    assert found.sources[0] == "sheet 12 (seed 7)"
    with pytest.raises(ConfigError, match="neither a sheet number"):
        resolve_ids("12,nope", 8, "uniform", 7)
    with pytest.raises(ConfigError, match="too large"):
        resolve_ids("100000", 8, "uniform", 7)
    with pytest.raises(ConfigError, match="empty item"):
        resolve_ids("12,,3", 8, "uniform", 7)
    with pytest.raises(ConfigError, match="projection"):
        resolve_ids(str(tmp_path / "face.png"), 8, "uniform", 7)


def test_arithmetic_with_a_equal_b_returns_c(tiny_g: Generator) -> None:
    z = latents(9, 8, "uniform", seed=2)
    a, c = z[:3], z[6:]
    result = vector_arithmetic(tiny_g, a, a.clone(), c, noise=0.25, n_noisy=8, seed=0)
    torch.testing.assert_close(result.result, c.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(result.result_images[0], generate(tiny_g, c.mean(0, keepdim=True))[0], atol=1e-5, rtol=0)
    assert result.noisy.shape == (8, 8)
    assert (result.noisy - result.result).abs().max() <= 0.25
    assert (result.noisy - result.result).abs().max() > 0.1
    torch.testing.assert_close(result.pixel_result, generate(tiny_g, c).mean(0).clamp(-1, 1), atol=1e-5, rtol=0)


def test_arithmetic_refuses_groups_of_the_wrong_size(tiny_g: Generator) -> None:
    with pytest.raises(ConfigError, match="Group B"):
        vector_arithmetic(tiny_g, torch.zeros(3, 8), torch.zeros(3, 5), torch.zeros(3, 8))


def test_direction_is_the_difference_of_means_and_t0_is_the_start(tiny_g: Generator) -> None:
    z = latents(10, 8, "uniform", seed=4)
    result = attribute_direction(tiny_g, z[:3], z[3:6], z[6:8], steps=5, span=1.0)
    torch.testing.assert_close(result.direction, z[:3].mean(0) - z[3:6].mean(0))
    assert result.images.shape == (10, 1, 16, 16)
    torch.testing.assert_close(result.images[2], generate(tiny_g, z[6:7])[0], atol=1e-5, rtol=0)  # t = 0
    torch.testing.assert_close(result.z[4], z[6] + result.direction)  # t = +1


def test_label_groups_read_utkface_names(tmp_path: Path) -> None:
    for name in ("20_0_1_x.jpg.chip.jpg", "30_1_2_y.jpg.chip.jpg", "40_1_0_z.jpg.chip.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    women, men = label_groups(tmp_path, 1, ["1", "0"])
    assert [p.name for p in women] == ["30_1_2_y.jpg.chip.jpg", "40_1_0_z.jpg.chip.jpg"]
    assert [p.name for p in men] == ["20_0_1_x.jpg.chip.jpg"]
    assert [p.name for p in label_groups(tmp_path, 1, ["1"], limit=1)[0]] == ["30_1_2_y.jpg.chip.jpg"]
    with pytest.raises(DataError, match="'7'"):
        label_groups(tmp_path, 1, ["7"])


def test_numbered_sheet_draws_numbers_on_the_grid(tiny_g: Generator) -> None:
    images = generate(tiny_g, latents(12, 8, "uniform", seed=0))
    plain = grid_image(images, 4).convert("RGB")
    sheet = numbered_sheet(images, 4)
    assert sheet.size == plain.size
    assert np.asarray(sheet)[2:12, 2:10].tolist() != np.asarray(plain)[2:12, 2:10].tolist()


# ----------------------------------------------------------------------------------------------- commands


def test_interpolate_command_writes_walks_and_a_record(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "walk"
    assert main(["interpolate", str(tiny_run), "--rows", "3", "--steps", "4", "--seed", "5", "--out", str(out)]) == 0
    assert Image.open(out / "walk.png").size == (4 * 18 + 2, 3 * 18 + 2)
    assert Image.open(out / "walk.gif").n_frames == 2 * 4 - 2
    record = json.loads((out / "record.json").read_text())
    assert record["options"]["seed"] == 5 and record["step"] == 8
    z = load_z(out / "z.npy")
    torch.testing.assert_close(z[0], latents(2, 8, "uniform", 5)[0])


def test_interpolate_chain_through_named_points(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "chain"
    assert main(["interpolate", str(tiny_run), "--points", "0,3,5", "--steps", "4", "--out", str(out)]) == 0
    z = load_z(out / "z.npy")
    assert z.shape[0] == 7
    torch.testing.assert_close(z[-1], latents(6, 8, "uniform", 0)[5])


def test_arithmetic_and_direction_commands(tiny_run: Path, tmp_path: Path) -> None:
    assert (
        main(
            ["arithmetic", str(tiny_run), "--a", "1,2,3", "--b", "4,5,6", "--c", "7,8,9", "--out", str(tmp_path / "ar")]
        )
        == 0
    )
    assert (tmp_path / "ar" / "arithmetic.png").is_file()
    assert load_z(tmp_path / "ar" / "z.npy").shape == (9, 8)
    assert main(["direction", str(tiny_run), "--a", "1,2", "--b", "3,4", "--rows", "2", "--steps", "3", "--out", str(tmp_path / "dir")]) == 0  # fmt: skip
    assert Image.open(tmp_path / "dir" / "direction.png").size == (3 * 18 + 2, 2 * 18 + 2)
    torch.testing.assert_close(load_z(tmp_path / "dir" / "a.npy"), latents(3, 8, "uniform", 0)[1:3])


def test_sample_sheet_flag(tiny_run: Path, tmp_path: Path) -> None:
    assert main(["sample", str(tiny_run), "--n", "16", "--sheet", "--out", str(tmp_path / "s")]) == 0
    sheet = Image.open(tmp_path / "s" / "sheet.png")
    assert sheet.size == Image.open(tmp_path / "s" / "grid.png").size


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["arithmetic", "RUN", "--a", "1,x", "--b", "2", "--c", "3"], "neither a sheet number"),
        (["arithmetic", "RUN", "--a", "missing.npy", "--b", "2", "--c", "3"], "No such z file"),
        (["arithmetic", "RUN", "--a", "BAD_NZ", "--b", "2", "--c", "3"], "nz=8"),
        (["direction", "RUN", "--a", "1"], "Give either"),
        (["direction", "RUN", "--labels-from", "nowhere", "--a-label", "1", "--b-label", "0"], "no such folder"),
        (["interpolate", "RUN", "--points", "3"], "at least 2"),
        (["project", "RUN", "NOT_AN_IMAGE"], "not an image"),
        (["interpolate", "NO_RUN"], "No such checkpoint"),
    ],
)
def test_bad_ids_and_files_exit_2_with_one_sentence(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    np.save(tmp_path / "bad_nz.npy", np.zeros((1, 5), dtype=np.float32))
    (tmp_path / "not_image.png").write_text("not an image")
    swap = {"RUN": str(tiny_run), "BAD_NZ": str(tmp_path / "bad_nz.npy"), "NOT_AN_IMAGE": str(tmp_path / "not_image.png"), "NO_RUN": str(tmp_path / "none")}  # fmt: skip
    assert main([swap.get(a, a) for a in argv] + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------- a conditional run
def panel_at(figure: Image.Image, panel: Image.Image, top: int) -> np.ndarray:
    """The part of a per-class figure where a panel of `panel`'s size starts `top` pixels down."""
    return np.asarray(figure.convert("RGB").crop((0, top, panel.width, top + panel.height)))


def test_latent_commands_draw_within_a_class_or_the_same_z_in_every_class(
    tiny_conditional_run: Path, tmp_path: Path
) -> None:
    from dcgan.conditional import ClassGenerator
    from dcgan.run import Run

    g = Run.open(tiny_conditional_run).generator()
    light, dark = ClassGenerator(g, 0), ClassGenerator(g, 1)
    run, walk = str(tiny_conditional_run), ["--rows", "2", "--steps", "4"]
    assert main(["interpolate", run, *walk, "--class", "dark", "--out", str(tmp_path / "dark")]) == 0
    z = load_z(tmp_path / "dark" / "z.npy")
    want = grid_image(generate(dark, z), nrow=4)
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "dark" / "walk.png").convert("RGB")), np.asarray(want.convert("RGB"))
    )
    record = json.loads((tmp_path / "dark" / "record.json").read_text())
    assert record["class"] == {"id": 1, "name": "dark"} and record["options"]["class"] == "dark"

    # the same walk in every class: one captioned panel per class, each the walk drawn in that class
    assert main(["interpolate", run, *walk, "--every-class", "--out", str(tmp_path / "every")]) == 0
    torch.testing.assert_close(load_z(tmp_path / "every" / "z.npy"), z)  # z does not depend on the class
    figure = Image.open(tmp_path / "every" / "walk.png")
    first, second = grid_image(generate(light, z), nrow=4).convert("RGB"), want.convert("RGB")
    assert figure.height == 2 * (14 + first.height) + 8
    assert np.array_equal(panel_at(figure, first, 14), np.asarray(first))
    assert np.array_equal(panel_at(figure, second, 14 + first.height + 8 + 14), np.asarray(second))
    assert json.loads((tmp_path / "every" / "record.json").read_text())["classes"] == ["light", "dark"]

    sums = ["--a", "1,2", "--b", "3", "--c", "4"]
    assert main(["arithmetic", run, *sums, "--class", "0", "--out", str(tmp_path / "ar0")]) == 0
    assert main(["arithmetic", run, *sums, "--every-class", "--out", str(tmp_path / "ar")]) == 0
    torch.testing.assert_close(load_z(tmp_path / "ar" / "z.npy"), load_z(tmp_path / "ar0" / "z.npy"))
    one = Image.open(tmp_path / "ar0" / "arithmetic.png")
    assert Image.open(tmp_path / "ar" / "arithmetic.png").height == 2 * (14 + one.height) + 8
    assert main(["direction", run, "--a", "1", "--b", "2", "--rows", "2", "--steps", "3", "--every-class",
                 "--out", str(tmp_path / "dir")]) == 0  # fmt: skip
    assert Image.open(tmp_path / "dir" / "direction.png").height == 2 * (14 + 2 * 18 + 2) + 8


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["interpolate", "COND"],
            "This generator is class-conditional: give --class NAME|ID or --every-class (its classes: 0 (light), 1 (dark)).",
        ),
        (["project", "COND", "IMAGE"], "give --class NAME|ID (its classes"),
        (
            ["interpolate", "COND", "--class", "cow"],
            "Unknown class 'cow': this generator's classes are 0 (light), 1 (dark).",
        ),
        (["arithmetic", "COND", "--a", "1", "--b", "2", "--c", "3", "--class", "2"], "Class id 2 is out of range"),
        (["interpolate", "COND", "--class", "0", "--every-class"], "Give --class or --every-class, not both."),
        (["interpolate", "COND", "--every-class", "--points", "1,IMAGE"], "Images are projected within one class"),
        (["interpolate", "PLAIN", "--every-class"], "--every-class needs a class-conditional generator"),
        (["interpolate", "PLAIN", "--class", "0"], "This generator is unconditional"),
    ],
)
def test_classes_given_wrongly_exit_2_with_one_sentence(
    tiny_conditional_run: Path,
    tiny_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    image = tmp_path / "image.png"
    Image.new("L", (16, 16), 128).save(image)
    swap = {"COND": str(tiny_conditional_run), "PLAIN": str(tiny_run), "IMAGE": str(image)}
    argv = [swap.get(a, a.replace("IMAGE", str(image))) for a in argv]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
