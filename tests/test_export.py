"""`dcgan export`: the generator as ONNX, TorchScript and safetensors gives the same images as in PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dcgan.checkpoint import load_generator
from dcgan.cli import main
from dcgan.errors import CheckpointError, ConfigError
from dcgan.export import CLASSES_FILE, export_generator, load_safetensors_generator
from dcgan.models import Generator
from dcgan.sample import latents


def reference(run: Path, n: int = 5) -> tuple[torch.Tensor, np.ndarray]:
    """z of a batch size the export never saw, and G(z) in PyTorch."""
    generator = load_generator(run)
    z = latents(n, generator.nz, "uniform", seed=4)
    with torch.no_grad():
        return z, generator(z).numpy()


def test_onnx_matches_pytorch_in_onnxruntime(tiny_run_rgb: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "g.onnx"
    assert main(["export", str(tiny_run_rgb), "--format", "onnx", "--out", str(out)]) == 0
    assert "onnx" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["g.onnx"]  # one self-contained file, no temporary left
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z"]
    for n in (1, 5):
        z, want = reference(tiny_run_rgb, n)
        (got,) = session.run(["images"], {"z": z.numpy()})
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_torchscript_matches_pytorch(tiny_run_rgb: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.pt"
    assert main(["export", str(tiny_run_rgb), "--format", "torchscript", "--out", str(out)]) == 0
    module = torch.jit.load(str(out))
    z, want = reference(tiny_run_rgb, 3)
    with torch.no_grad():
        np.testing.assert_allclose(module(z).numpy(), want, atol=1e-6)


def test_safetensors_rebuilds_the_generator(tiny_run_rgb: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.safetensors"
    assert main(["export", str(tiny_run_rgb), "--format", "safetensors", "--out", str(out)]) == 0
    generator, prior = load_safetensors_generator(out)
    assert prior == "uniform"
    z, want = reference(tiny_run_rgb, 3)
    with torch.no_grad():
        np.testing.assert_allclose(generator(z).numpy(), want, atol=1e-6)


def test_export_refuses_bad_input(tiny_run_rgb: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):  # argparse: an unknown format
        main(["export", str(tiny_run_rgb), "--format", "pickle", "--out", str(tmp_path / "g")])
    assert main(["export", str(tmp_path / "missing"), "--format", "onnx", "--out", str(tmp_path / "g")]) == 2
    assert "No such checkpoint" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="onnx, torchscript, safetensors"):
        export_generator(load_generator(tiny_run_rgb), "tflite", tmp_path / "g")
    not_safetensors = tmp_path / "x.safetensors"
    not_safetensors.write_bytes(b"definitely not")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_safetensors_generator(not_safetensors)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not a dcgan generator"):
        load_safetensors_generator(other)


# ----------------------------------------------------------------------------------------------- conditional G
def conditional_g(conditioning: str) -> Generator:
    """A class-conditional G whose classes draw visibly different images (weights moved off their init)."""
    torch.manual_seed(0)
    g = Generator(16, 1, nz=8, ngf=8, num_classes=3, conditioning=conditioning)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    g.classes = ("cat", "dog", "emu")
    return g.eval()


def conditional_reference(g: Generator, labels: list[int]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    z = latents(len(labels), g.nz, "uniform", seed=4)
    y = torch.tensor(labels)
    with torch.no_grad():
        return z, y, g(z, y).numpy()


def test_conditional_onnx_takes_z_and_labels(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    g = conditional_g("cbn")  # the conditional batchnorm's per-class tables must be inputs-driven, not traced in
    out = export_generator(g, "onnx", tmp_path / "g.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("z", "tensor(float)"), ("labels", "tensor(int64)")]
    for labels in ([2], [0, 1, 2, 2, 1]):
        z, y, want = conditional_reference(g, labels)
        (got,) = session.run(["images"], {"z": z.numpy(), "labels": y.numpy()})
        np.testing.assert_allclose(got, want, atol=1e-5)
    z, _, want = conditional_reference(g, [0, 1, 2, 2, 1])
    (other,) = session.run(["images"], {"z": z.numpy(), "labels": np.array([1, 2, 0, 0, 2])})
    assert np.abs(other - want).max() > 0.05  # the label is an input: other classes, other images
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["classes"]) == ["cat", "dog", "emu"]


@pytest.mark.parametrize("conditioning", ["concat", "cbn"])
def test_conditional_torchscript_and_safetensors_take_z_and_labels(conditioning: str, tmp_path: Path) -> None:
    g = conditional_g(conditioning)
    z, y, want = conditional_reference(g, [0, 1, 2, 2, 1])
    classes = {CLASSES_FILE: ""}
    module = torch.jit.load(str(export_generator(g, "torchscript", tmp_path / "g.pt")), _extra_files=classes)
    with torch.no_grad():
        np.testing.assert_allclose(module(z, y).numpy(), want, atol=1e-6)
        np.testing.assert_allclose(module(z[:2], y[:2]).numpy(), want[:2], atol=1e-6)  # another batch size
        assert np.abs(module(z, (y + 1) % 3).numpy() - want).max() > 0.05
    assert json.loads(classes[CLASSES_FILE]) == ["cat", "dog", "emu"]
    rebuilt, prior = load_safetensors_generator(export_generator(g, "safetensors", tmp_path / "g.safetensors"))
    assert (rebuilt.num_classes, rebuilt.conditioning, rebuilt.classes, prior) == (
        3,
        conditioning,
        ("cat", "dog", "emu"),
        "uniform",
    )
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt(z, y).numpy(), want, atol=0)
    with pytest.raises(ValueError, match="class-conditional"):
        rebuilt(z)  # still conditional: it needs its labels


def test_export_command_of_a_conditional_run(
    tiny_conditional_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from dcgan.run import Run

    out = tmp_path / "g.safetensors"
    assert main(["export", str(tiny_conditional_run), "--format", "safetensors", "--out", str(out)]) == 0
    assert "and labels (batch,) int64 class ids 0 to 1 (light, dark) -> images" in capsys.readouterr().out
    rebuilt, _ = load_safetensors_generator(out)
    g = Run.open(tiny_conditional_run).generator()
    z, y = latents(4, g.nz, g.prior, seed=1), torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(z, y), g(z, y), atol=0, rtol=0)
    assert rebuilt.classes == ("light", "dark")
