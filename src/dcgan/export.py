"""The generator, exported for serving elsewhere: ONNX (onnxruntime, browsers, C++), TorchScript (libtorch) or
safetensors (the weights and the few numbers that rebuild `Generator`, for any framework that can read them).

Every format takes z of shape (batch, nz), any batch size, and gives images (batch, channels, size, size) in
[-1, 1]; nothing but the generator leaves the checkpoint (no discriminator, no optimiser state). A
class-conditional G takes (z, labels): labels of shape (batch,), int64 class ids from 0 to num_classes - 1, and
every format records the class names (ONNX: the model's metadata `classes`; TorchScript: the extra file
`classes.json`; safetensors: its metadata), so label i can be named without the checkpoint.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path

import torch

from dcgan.config import PRIORS
from dcgan.errors import CheckpointError, ConfigError
from dcgan.models import Generator

FORMATS = ("onnx", "torchscript", "safetensors")

#: safetensors metadata keys; values are strings, as the format requires.
_META_KEYS = ("image_size", "channels", "nz", "ngf")
#: The name of the extra file holding a conditional G's class names in a TorchScript export.
CLASSES_FILE = "classes.json"


def export_generator(generator: Generator, fmt: str, out: str | Path, *, prior: str | None = None) -> Path:
    """Write `generator` (in eval mode) to `out` as `fmt`; returns the path written.

    Args:
        generator: a trained G, e.g. `dcgan.Run.open(run).generator()`.
        fmt: "onnx" (input "z", output "images", any batch size; needs the packages `onnx` and `onnxscript`),
            "torchscript" (a traced module for `torch.jit.load`) or "safetensors" (weights plus metadata). A
            conditional G's exports take a second input, "labels" (batch,) int64.
        out: the file to write; its folder is created. The file is written whole or not at all.
        prior: the latent prior recorded with the weights ("uniform" on [-1, 1] or "normal"); by default the one
            G was trained with (`generator.prior`).

    Raises:
        ConfigError: an unknown format, or the ONNX exporter's packages are not installed.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    generator = generator.cpu().eval()
    example: tuple[torch.Tensor, ...] = (torch.zeros(2, generator.nz),)
    if generator.num_classes:  # labels 0 and 1: two different rows of every per-class table are traced
        example += (torch.arange(2, dtype=torch.long),)
    classes = json.dumps(list(generator.classes)) if generator.num_classes else None
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")  # renamed over `out` once complete
    try:
        if fmt == "onnx":
            _export_onnx(generator, example, tmp, classes)
        elif fmt == "torchscript":
            with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; libtorch still loads it
                warnings.simplefilter("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*deprecated.*")
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # the label-shape check
                traced = torch.jit.trace(generator, example)
            traced.save(str(tmp), _extra_files={CLASSES_FILE: classes} if classes else {})
        else:
            from safetensors.torch import save_file

            weights = {k: v.detach().contiguous() for k, v in generator.state_dict().items()}
            meta = {key: str(getattr(generator, key)) for key in _META_KEYS}
            meta |= {"prior": prior or generator.prior, "format": "dcgan-G"}
            if classes:
                meta |= {"num_classes": str(generator.num_classes), "conditioning": generator.conditioning}
                meta["classes"] = classes
            save_file(weights, str(tmp), metadata=meta)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _export_onnx(generator: Generator, example: tuple[torch.Tensor, ...], path: Path, classes: str | None) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter needs it too; say so before it fails deep inside)
    except ImportError as exc:
        raise ConfigError(
            f"ONNX export needs the packages onnx and onnxscript ({exc.name} is missing): pip install onnx onnxscript."
        ) from exc
    names = ["z", "labels"][: len(example)]
    if not hasattr(torch.onnx, "ONNXProgram"):  # torch < 2.5 has only the TorchScript-based exporter
        torch.onnx.export(
            generator, example, str(path), input_names=names, output_names=["images"], opset_version=17,
            dynamic_axes={**{name: {0: "batch"} for name in names}, "images": {0: "batch"}},
        )  # fmt: skip
    else:
        batch = torch.export.Dim("batch", min=1, max=4096)
        shapes = {"z": {0: batch}, "labels": {0: batch}}
        program = torch.onnx.export(
            generator,
            example,
            input_names=names,
            output_names=["images"],
            dynamic_shapes={name: shapes[name] for name in names},
            dynamo=True,
            verbose=False,
        )
        assert program is not None
        program.save(str(path), external_data=False)  # one self-contained file: G is far below ONNX's 2 GB limit
    if classes:
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, {"classes": classes})
        onnx.save(model, str(path))


def load_safetensors_generator(path: str | Path) -> tuple[Generator, str]:
    """A `Generator` (eval mode) and its prior from a file written by `export_generator(..., "safetensors")`.

    The prior is also the generator's `prior` attribute; a file from before priors were recorded is uniform. A
    conditional G comes back conditional, with its `classes` names.

    Raises:
        CheckpointError: the file is missing, not safetensors, or not a dcgan generator.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No such safetensors file: {path}.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            weights = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118  (safe_open has no __iter__)
    except (SafetensorError, OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a safetensors file ({type(exc).__name__}).") from exc
    if meta.get("format") != "dcgan-G" or not all(meta.get(k, "").isdigit() for k in _META_KEYS):
        raise CheckpointError(f"{path} is not a dcgan generator export (its metadata lacks {', '.join(_META_KEYS)}).")
    prior = meta.get("prior", "uniform")
    if prior not in PRIORS:
        raise CheckpointError(f"{path} records an unknown prior {prior!r} (expected one of {', '.join(PRIORS)}).")
    image_size, channels, nz, ngf = (int(meta[k]) for k in _META_KEYS)
    num_classes, conditioning, classes = _classes_of(meta, path)
    try:
        generator = Generator(image_size, channels, nz, ngf, prior=prior, num_classes=num_classes,
                              conditioning=conditioning)  # fmt: skip
        generator.load_state_dict(weights)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"The weights in {path} do not fit the generator its metadata describes.") from exc
    if classes:
        generator.classes = classes
    return generator.eval(), prior


def _classes_of(meta: dict[str, str], path: Path) -> tuple[int, str, tuple[str, ...]]:
    """(num_classes, conditioning, class names) recorded in a safetensors export; (0, "none", ()) for an
    unconditional G."""
    if "num_classes" not in meta:
        return 0, "none", ()
    try:
        num_classes, classes = int(meta["num_classes"]), json.loads(meta.get("classes", "[]"))
    except (ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} records its classes unreadably ({type(exc).__name__}).") from exc
    if not isinstance(classes, list) or len(classes) != num_classes:
        raise CheckpointError(f"{path} records {num_classes} classes but names {len(classes)}.")
    return num_classes, meta.get("conditioning", "none"), tuple(str(name) for name in classes)
