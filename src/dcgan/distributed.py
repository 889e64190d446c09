"""torchrun / DistributedDataParallel, detected from the environment (like nanoGPT): nothing to configure."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device | None) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPUs) and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device or default_device()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank), device


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()


def teardown(info: Dist) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def any_flags(flags: list[bool], info: Dist, device: torch.device) -> list[bool]:
    """Each flag, true on every rank if it is true on any rank (so all ranks stop or roll back together)."""
    if not info.enabled:
        return flags
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def broadcast_buffers(modules: list[torch.nn.Module], info: Dist) -> None:
    """Give every rank rank 0's buffers (batchnorm running statistics)."""
    if not info.enabled:
        return
    with torch.no_grad():
        for module in modules:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)
