"""Sampling from a run: N separate PNGs plus a grid, the same images for the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan.checkpoint import load_generator
from dcgan.cli import main
from dcgan.sample import write_samples


def test_sample_writes_n_pngs_and_a_grid(tiny_run: Path, tmp_path: Path) -> None:
    assert main(["sample", str(tiny_run), "--n", "10", "--out", str(tmp_path / "a"), "--seed", "3"]) == 0
    files = sorted((tmp_path / "a").glob("0*.png"))
    assert len(files) == 10
    assert Image.open(files[0]).size == (16, 16)
    assert (tmp_path / "a" / "grid.png").exists()
    assert np.load(tmp_path / "a" / "z.npy").shape == (10, 8)


def test_same_seed_same_images_other_seed_other_images(tiny_run: Path, tmp_path: Path) -> None:
    g = load_generator(tiny_run)
    write_samples(g, 5, tmp_path / "a", seed=1)
    write_samples(g, 8, tmp_path / "b", seed=1)  # a longer sheet starts with the same images
    write_samples(g, 5, tmp_path / "c", seed=2)
    a, b, c = (np.asarray(Image.open(tmp_path / d / "000004.png")) for d in "abc")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_load_generator_is_in_eval_mode(tiny_run: Path) -> None:
    g = load_generator(tiny_run)
    assert not g.training and g.image_size == 16 and g.nz == 8


def test_saved_generator_has_batchnorm_statistics_that_fit_its_weights(tiny_run: Path) -> None:
    """Eval-mode samples from the saved copy match what the weights draw with live batch statistics; the raw
    training copy's running averages trail the weights."""
    import torch

    from dcgan.sample import latents

    z = latents(512, 8, "uniform", seed=5)
    gaps = {}
    for ema in (True, False):
        g = load_generator(tiny_run, ema=ema)
        with torch.no_grad():
            eval_mode = g(z)
            live = g.train()(z)
        gaps[ema] = (eval_mode - live).abs().mean().item()
    assert gaps[True] < 0.5 * gaps[False], gaps


def test_write_samples_draws_z_from_the_generators_prior(tmp_path: Path) -> None:
    """A G trained on z ~ N(0, I) gets normal z by default, not the uniform cube [-1, 1]."""
    import json

    from dcgan.models import Generator

    write_samples(Generator(16, 1, 8, 8, prior="normal").eval(), 64, tmp_path / "n")
    z = np.load(tmp_path / "n" / "z.npy")
    assert np.abs(z).max() > 1 and json.loads((tmp_path / "n" / "samples.json").read_text())["prior"] == "normal"
    write_samples(Generator(16, 1, 8, 8).eval(), 64, tmp_path / "u")
    assert np.abs(np.load(tmp_path / "u" / "z.npy")).max() <= 1


# ------------------------------------------------------------------------------------------- class-conditional
def _flat_light_class(run: Path, out: Path) -> Path:
    """The run's checkpoint with G's last batchnorm zeroed for class 0 ("light"): that class draws one flat colour
    whatever z is, class 1 ("dark") varied images. A G whose output visibly depends on the label."""
    from dcgan import checkpoint as ckpt

    state = ckpt.load(run)
    for weights in (state["generator"], state["generator_eval"]):
        last = max(k for k in weights if k.endswith(".1.embed.weight"))
        weights[last] = weights[last].clone()
        weights[last][0] = 0
    return ckpt.atomic_save(state, out)


def test_sample_class_draws_that_class_and_the_sheet_has_a_column_per_class(
    tiny_conditional_run: Path, tmp_path: Path
) -> None:
    import json

    crafted = _flat_light_class(tiny_conditional_run, tmp_path / "crafted.pt")
    for name in ("light", "DARK", "1"):
        assert main(["sample", str(crafted), "--n", "6", "--out", str(tmp_path / name), "--class", name]) == 0
    spread = {
        name: np.stack([np.asarray(Image.open(f), dtype=float) for f in sorted((tmp_path / name).glob("0*.png"))]).std()
        for name in ("light", "DARK", "1")
    }
    assert spread["light"] == 0 and spread["DARK"] > 1, "every sample is drawn in the class asked for"
    assert np.array_equal(np.load(tmp_path / "DARK" / "z.npy"), np.load(tmp_path / "light" / "z.npy"))
    assert json.loads((tmp_path / "1" / "samples.json").read_text())["classes"] == ["dark"] * 6

    assert main(["sample", str(crafted), "--n", "4", "--out", str(tmp_path / "s"), "--class-sheet", "3"]) == 0
    sheet = np.asarray(Image.open(tmp_path / "s" / "classes.png"), dtype=float)
    assert sheet.shape == (2 + 3 * 18, 2 + 2 * 18), "3 rows of z, one column per class"
    columns = [sheet[2:-2, 2 + 18 * c : 18 * (c + 1)] for c in (0, 1)]
    rows_light = [columns[0][18 * r : 18 * r + 16] for r in range(3)]
    assert all(np.array_equal(rows_light[0], r) for r in rows_light), "z does not change the flat class"
    assert columns[1].std() > 1


def test_sample_class_errors_are_one_sentence(
    tiny_conditional_run: Path, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (
            tiny_conditional_run,
            ["--class", "boot"],
            "Unknown class 'boot': this generator's classes are 0 (light), 1 (dark).",
        ),
        (tiny_conditional_run, ["--class", "2"], "Class id 2 is out of range: this generator has 2 classes"),
        (tiny_run, ["--class", "0"], "This generator is unconditional"),
        (tiny_run, ["--class-sheet"], "--class-sheet draws one column per class, and this generator is unconditional"),
    ]
    for run, flags, message in cases:
        assert main(["sample", str(run), "--out", str(tmp_path / "x"), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists(), "nothing is written"


def test_info_lists_a_conditional_runs_classes(tiny_conditional_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tiny_conditional_run)]) == 0
    assert "classes: 0 light, 1 dark" in capsys.readouterr().out


def test_losses_png_adds_the_eval_score_with_its_best_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run trained with --eval-every gets a third panel in losses.png: the tracked score against step, its best
    point named (the lowest FID; a step scored twice, after a resume, counts once with its last value)."""
    import json

    from matplotlib.axes import Axes

    from dcgan.sample import plot_losses

    rows = [{"step": s, "loss_d": 1.0, "loss_g": 2.0, "d_x": 0.6, "d_g_z": 0.3} for s in (100, 200, 300, 400)]
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 40')  # a line cut short by a kill
    scored = tmp_path / "scored.jsonl"
    evals = [{"step": 200, "fid2k": 80.0}, {"step": 400, "fid2k": 20.5}, {"step": 400, "fid2k": 30.25}]
    evals.append({"step": 300, "diversity": 0.9})
    scored.write_text("".join(json.dumps(r) + "\n" for r in [*rows, *evals]))
    notes: list[str] = []
    real_annotate = Axes.annotate
    monkeypatch.setattr(
        Axes, "annotate", lambda self, text, *a, **k: notes.append(text) or real_annotate(self, text, *a, **k)
    )

    with (
        Image.open(plot_losses(plain, tmp_path / "plain.png")) as two,
        Image.open(plot_losses(scored, tmp_path / "scored.png")) as three,
    ):
        assert three.height == two.height * 3 // 2, "one more panel of the same height"
    assert notes == ["best 30.25 at step 400"], "the last value of step 400 replaces the first; lower FID is better"
