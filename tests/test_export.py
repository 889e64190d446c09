"""`dcgan export`: the generator as ONNX, TorchScript and safetensors gives the same images as in PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dcgan.checkpoint import load_generator
from dcgan.cli import main
from dcgan.errors import CheckpointError, ConfigError
from dcgan.export import export_generator, load_safetensors_generator
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
