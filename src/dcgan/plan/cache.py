"""Measurements on disk, keyed by what makes them valid: the machine, the torch version, dcgan's kernels, the device
and the shape."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dcgan import gemm_conv
from dcgan.data.cache import cache_dir
from dcgan.errors import ConfigError
from dcgan.plan.plans import ExecutionPlan, InferenceShape, ModelShape
from dcgan.plan.timing import Measurement

CACHE_FILE = "plans.json"
CACHE_VERSION = 1


def machine(device: torch.device) -> dict[str, Any]:
    """What the cache is keyed on about the machine: CPU model and features, core counts, the GPU if used."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
        "avx512_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
        "cpus": os.cpu_count(),
        "usable_cpus": usable,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class PlanCache:
    """Measurements on disk (`cache_dir()/plans.json`, or `path`), keyed by machine, torch version, device and shape.

    An unreadable file is reported with a warning and measured over; a failed write only costs a re-measurement.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / CACHE_FILE

    @staticmethod
    def key(shape: ModelShape | InferenceShape, device: torch.device) -> dict[str, Any]:
        """Also keyed on `gemm_conv.KERNELS`: a new version of dcgan's own convolution path is measured again."""
        return {
            "machine": machine(device),
            "torch": torch.__version__,
            "kernels": gemm_conv.KERNELS,
            "device": device.type,
            "shape": shape.__dict__,
        }

    def find(self, key: dict[str, Any], plans: Sequence[ExecutionPlan]) -> Measurement | None:
        """The newest measurement under `key` that covers `plans`, if any."""
        for entry in reversed(self._entries(warn=True)):
            if all(entry.get(k) == v for k, v in key.items()):
                try:
                    found = Measurement.from_dict(entry["measurement"])
                except (KeyError, TypeError, ValueError, ConfigError):
                    continue
                if found.covers(plans):
                    return found
        return None

    def store(self, key: dict[str, Any], measurement: Measurement) -> None:
        """Add `measurement` under `key`, replacing older ones of the same key that it covers."""
        plans = [t.plan for t in measurement.timings]
        kept = []
        for entry in self._entries(warn=False):
            same = all(entry.get(k) == v for k, v in key.items())
            considered = [t.get("plan") for t in entry.get("measurement", {}).get("timings", [])]
            if not (same and all(p in [plan.to_dict() for plan in plans] for p in considered)):
                kept.append(entry)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        entry = {**key, "measured_at": stamp, "provisional": measurement.provisional}
        kept.append({**entry, "measurement": measurement.to_dict()})
        text = json.dumps({"version": CACHE_VERSION, "entries": kept}, indent=1) + "\n"
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            warnings.warn(f"Could not write the plan cache {self.path} ({exc.strerror or exc}); the next run "
                          "measures again.", stacklevel=3)  # fmt: skip

    def _entries(self, *, warn: bool) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text())
            entries = data["entries"] if isinstance(data, dict) and data.get("version") == CACHE_VERSION else None
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise ValueError("not a dcgan plan cache")
            return entries
        except (OSError, ValueError, KeyError) as exc:
            if warn:
                warnings.warn(f"The plan cache {self.path} is unreadable ({exc}); measuring again and rewriting it.",
                              stacklevel=4)  # fmt: skip
            return []
