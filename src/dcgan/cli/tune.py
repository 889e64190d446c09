"""`dcgan tune`: time the execution plans a run of this model shape could use on this machine and show them as a
table; the choice is cached, so the next `dcgan train` of the same shape starts with it (`dcgan.plan`)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from dcgan.cli.train import CONFIG_FLAGS, DEFAULT_PRESET, add_plan_switches

if TYPE_CHECKING:
    from dcgan.config import TrainConfig

#: The train flags that fix what a step costs: the model's shape and the precision; the data only for its channels.
SHAPE_FLAGS = ("--data", "--data-root", "--image-size", "--channels", "--nz", "--ngf", "--ndf", "--batch-size",
               "--precision")  # fmt: skip


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="time the execution plans (precision, layout, convolutions) for a model on this machine",
        description="Time a few real training steps of each candidate plan for the model the flags describe (the "
        "same flags as `dcgan train`; no data is read, except a --data folder, decoded to see whether every image is "
        "grey, which trains in one channel), print the timings and cache the fastest: `dcgan train` of the same "
        "shape then starts with it. Flags that force a switch leave it out of the candidates.",
    )
    p.add_argument("--preset", help=f"a named setup (see `dcgan presets`; default {DEFAULT_PRESET})")
    for flag in SHAPE_FLAGS:
        p.add_argument(flag, default=None, **CONFIG_FLAGS[flag][1])
    add_plan_switches(p)
    p.add_argument("--compile", action="store_true", default=None, help="the run will torch.compile (timed eager)")
    p.add_argument("--all", action="store_true", help="time every candidate, however slow its warm-up step")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: the GPU if there is one)")
    p.add_argument("--json", action="store_true", help="print the machine, the shape and the timings as JSON")
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    import torch

    from dcgan.config import build_config
    from dcgan.distributed import default_device
    from dcgan.errors import ConfigError
    from dcgan.plan import ModelShape, PlanChoice, forced_by, machine, select_plan

    given = {CONFIG_FLAGS[flag][0]: getattr(args, flag[2:].replace("-", "_")) for flag in SHAPE_FLAGS}
    given.update(channels_last=args.channels_last, gemm_conv=args.gemm_conv, compile=args.compile)
    config = build_config(args.preset or DEFAULT_PRESET, **given)
    try:
        device = torch.device(args.device) if args.device else default_device()
    except RuntimeError:
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {args.device!r}.") from None
    shape = ModelShape.of(config, trained_channels(config, given_data=args.data is not None))
    choice = select_plan(shape, device, forced_by(config), retune=True, prune=not args.all)
    assert isinstance(choice, PlanChoice)  # select_plan returns None only when told not to measure
    if args.json:
        report = {
            "machine": machine(device), "torch": torch.__version__, "device": str(device), "shape": shape.__dict__,
            "chosen": choice.plan.to_dict(), "source": choice.source, "cache": str(choice.cache or ""),
            "measurement": choice.measurement.to_dict() if choice.measurement else None,
        }  # fmt: skip
        print(json.dumps(report, indent=2))
        return 0
    facts = machine(device)
    features = ", ".join(f"{name} {'yes' if facts[name] else 'no'}" for name in ("amx", "avx512_bf16"))
    print(f"{facts['cpu']} ({facts['capability']}; {features}; {facts['usable_cpus']} usable CPUs)"
          + (f", {facts['gpu']}" if "gpu" in facts else "") + f"; torch {torch.__version__}")  # fmt: skip
    print(f"model {shape} on {device}")
    rows = choice.rows()
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(choice)
    if choice.measurement is not None:
        noise = choice.measurement.noise
        print(f"Measured in {choice.measurement.seconds:.0f} s; plans within {noise:.0%} (the noise between rounds) "
              "of the fastest count as ties, and the simplest of those is chosen.")  # fmt: skip
        load = choice.measurement.load
        if load is not None:
            verdict = "busy: provisional" if load.busy else "quiet enough to keep"
            print(f"Load while measuring: {load}, leaving {load.share:.0%} of the CPU its threads needed ({verdict}).")
    return 0


def trained_channels(config: TrainConfig, given_data: bool) -> int:
    """The channels `dcgan train` with this config would train in: `--channels`, else a named set's own, else (a
    folder given with --data) one when every image is grey, as the Trainer decides (`dcgan.data.as_trained`). The
    folder is decoded for that, into the cache the run then reads."""
    from dcgan.data import as_trained, load_images, native_channels, registry

    if config.channels or not given_data or registry.find(config.data) is not None:
        return int(config.channels or native_channels(config.data))
    data = load_images(config.data, root=config.data_root, image_size=config.image_size)
    return as_trained(data, None).channels
