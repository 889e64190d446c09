"""torchrun / DistributedDataParallel, detected from the environment (like nanoGPT): nothing to configure.

Rank 0 owns the run folder: it alone reads the checkpoint a run resumes from (and hands it to the others over
the process group) and alone writes, so the other ranks, on this machine or on other nodes, need the data and
nothing else. A rank that stops answering is noticed after the process group's timeout (`--ddp-timeout`), and
the others stop with one sentence instead of waiting for ever.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from dcgan.errors import DataError, DcganError

T = TypeVar("T")


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
        """Rank 0 of the whole group (not of its node): the one process that writes the run folder."""
        return self.rank == 0


class PeersLost(DcganError):
    """Another process of the group died or stopped answering within the timeout."""


def setup(device: torch.device | None, timeout: float | None = None) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPUs) and pick this rank's device.

    `RANK` is the rank in the whole group; `LOCAL_RANK`, the rank on this node, only picks the GPU. `timeout`
    (seconds, default torch's 30 minutes) is how long a collective waits for a rank that does not answer.
    """
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
    if rank == 0 and os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") != "0" and _shares_launcher_store():
        warnings.warn(
            "torchrun shares its store with the workers, and a restarted group can hang on the keys the group "
            "before it left there (pytorch/pytorch#135712): start torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1.",
            stacklevel=2,
        )
    if not dist.is_initialized():
        wait = datetime.timedelta(seconds=timeout) if timeout else None
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=wait)
    return Dist(rank, world, local_rank), device


def _shares_launcher_store() -> bool:
    return os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()


def teardown(info: Dist, *, finished: bool = False) -> None:
    """Destroy the process group. With `finished` (every rank ended the run normally), first wait for all ranks:
    a rank that destroys the group while another still sends its last collective can make gloo abort the process
    at exit (exit 134, which torchrun takes for a crash and answers with a restart of a finished run)."""
    if info.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


#: What gloo's and NCCL's errors say when a peer died or a collective timed out (they raise plain RuntimeError).
_PEER_FAILURES = ("timed out", "timeout", "connection reset", "connection closed", "broken pipe", "gloo", "nccl")


@contextlib.contextmanager
def peers_answer(timeout: float | None, out: object) -> Iterator[None]:
    """Turn a collective that failed because another rank died or hung into one sentence (`PeersLost`).

    Under `torchrun --max-restarts N` the non-zero exit that follows makes the launcher restart the group, which
    resumes from the last checkpoint in `out`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        yield
    except RuntimeError as exc:  # the group may be torn down by now: the rank and size come from torchrun's env
        text = str(exc).lower()
        if world <= 1 or isinstance(exc, DcganError) or not any(sign in text for sign in _PEER_FAILURES):
            raise
        waited = f"within --ddp-timeout {timeout:g} s" if timeout else "within the process group's timeout"
        what = "did not answer " + waited if "time" in text else "closed its connection (it died)"
        raise PeersLost(
            f"Rank {os.environ.get('RANK', '?')} of {world} stopped: another process {what}. The last "
            f"checkpoint is in {out}; torchrun --max-restarts restarts the group from it, or rerun with --resume."
        ) from exc


def from_main(read: Callable[[], T], info: Dist) -> T:
    """`read()` on rank 0, its result handed to every rank (pickled over the process group, whose peers are this
    run's own processes). A `DcganError` rank 0 meets is raised on every rank, so all stop with one sentence."""
    if not info.enabled:
        return read()
    box: list[Any] = [None]
    if info.is_main:
        try:
            box[0] = ("value", read())
        except DcganError as exc:
            box[0] = ("error", type(exc), str(exc))
    dist.broadcast_object_list(box, src=0)
    if box[0][0] == "error":
        raise box[0][1](box[0][2])
    return box[0][1]  # type: ignore[no-any-return]


def any_flags(flags: list[bool], info: Dist, device: torch.device) -> list[bool]:
    """Each flag, true on every rank if it is true on any rank (so all ranks stop or roll back together)."""
    if not info.enabled:
        return flags
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Six int64 numbers that two decodings of a data set share only if they hold the same images in the same
    order with the same labels (short of a deliberate collision): the count, pixels per image, the pixel sum, the
    images' pixel sums weighted by the image's position, the same of pixel-position-weighted sums, and the labels'
    position-weighted sum. Integer sums (wrapping on overflow) come out the same on any rank whatever its thread
    count; 4,096 images at a time, so the int64 copy stays small."""
    count, pixels = len(images), images[0].numel() if len(images) else 0
    within = torch.arange(1, pixels + 1, dtype=torch.int64)
    sums = torch.zeros(3, dtype=torch.int64)
    for start in range(0, count, 4096):
        x = images[start : start + 4096].flatten(1).to(torch.int64)
        position = torch.arange(start + 1, start + len(x) + 1, dtype=torch.int64)
        per_image, placed = x.sum(1), (x * within).sum(1)
        sums += torch.stack([per_image.sum(), (per_image * position).sum(), (placed * position).sum()])
    position = torch.arange(1, count + 1, dtype=torch.int64)
    label_sum = (labels.to(torch.int64) * position).sum() if labels is not None else torch.tensor(-1)
    return torch.cat([torch.tensor([count, pixels]), sums, label_sum.reshape(1)])


def check_same_data(images: torch.Tensor, labels: torch.Tensor | None, info: Dist, device: torch.device) -> None:
    """Stop every rank with one sentence if any decoded other data than rank 0 (other files on another node, a
    folder that changed between two ranks' reads): each rank takes its slice of one global order, so different
    sets would train on neither. Raises `DataError` on every rank."""
    if not info.enabled:
        return
    mine = data_fingerprint(images, labels).to(device)
    every = [torch.empty_like(mine) for _ in range(info.world)]
    dist.all_gather(every, mine)
    differ = [rank for rank, theirs in enumerate(every) if not torch.equal(theirs, every[0])]
    if differ:
        counts = ", ".join(f"rank {rank}: {int(every[rank][0])}" for rank in [0, *differ])
        raise DataError(
            f"The processes decoded different data ({counts} images; {len(differ)} of {info.world} ranks differ "
            "from rank 0): every rank must read the same --data, the same files in the same state on every node."
        )


def broadcast_buffers(modules: list[torch.nn.Module], info: Dist) -> None:
    """Give every rank rank 0's buffers (batchnorm running statistics)."""
    if not info.enabled:
        return
    with torch.no_grad():
        for module in modules:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


# ----------------------------------------------------------------------------------------- synchronised batchnorm
class SyncBatchNorm(nn.BatchNorm2d):
    """Batchnorm over the whole global batch, on any device all_reduce runs on (torch's `nn.SyncBatchNorm` needs
    GPUs). Under DDP it makes the step the one a single process takes with the global batch, up to the order of
    floating-point sums. Outside training, or in one process, it is plain `BatchNorm2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        assert self.num_batches_tracked is not None and self.running_mean is not None
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        return _GlobalBatchNorm.apply(
            x, self.weight, self.bias, self.running_mean, self.running_var, momentum, self.eps
        )


class _GlobalBatchNorm(torch.autograd.Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias with mean and var over every rank's share, and its
    gradient, which needs two more sums over all ranks. The weight's and bias's gradients are this rank's part;
    DDP's all-reduce adds them up."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
        running_var: torch.Tensor, momentum: float, eps: float,
    ) -> torch.Tensor:  # fmt: skip
        shape, dims = (1, -1, 1, 1), (0, 2, 3)
        sums = torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])])
        dist.all_reduce(sums)
        count, mean = sums[-1], sums[:-1] / sums[-1]
        centred = x - mean.view(shape)
        var = centred.square().sum(dims)  # two passes, as batchnorm's own kernel: no cancellation
        dist.all_reduce(var)
        var /= count
        invstd = torch.rsqrt(var + eps)
        normed = centred * invstd.view(shape)
        with torch.no_grad():
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var * count / (count - 1), momentum)
        ctx.save_for_backward(normed, weight, invstd)
        ctx.count = count
        return normed * weight.view(shape) + bias.view(shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        normed, weight, invstd = ctx.saved_tensors
        shape, dims = (1, -1, 1, 1), (0, 2, 3)
        grad_bias, grad_weight = grad.sum(dims), (grad * normed).sum(dims)
        sums = torch.cat([grad_bias, grad_weight])
        dist.all_reduce(sums)
        mean_grad, mean_grad_normed = (sums / ctx.count).chunk(2)
        grad_x = (grad - mean_grad.view(shape) - normed * mean_grad_normed.view(shape)) * (weight * invstd).view(shape)
        wants = ctx.needs_input_grad
        return grad_x, grad_weight if wants[1] else None, grad_bias if wants[2] else None, None, None, None, None


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` with its batchnorm layers normalising over the global batch: torch's `nn.SyncBatchNorm` on GPUs,
    `SyncBatchNorm` above elsewhere (gloo on CPUs). The state dict keeps its keys."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _swap_batchnorm(module, SyncBatchNorm)


def local_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with synchronised batchnorm layers made plain again, in place: for a copy that one rank runs on
    its own (sampling, evaluation), where a synchronised layer would wait for ranks that never join."""
    return _swap_batchnorm(module, nn.BatchNorm2d)


def _swap_batchnorm(module: nn.Module, kind: type[nn.BatchNorm2d]) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and type(child) is not kind:
            new = kind(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.to(next(child.buffers()).device).train(child.training)
            new.requires_grad_(any(p.requires_grad for p in child.parameters()))
            setattr(module, name, new)
        else:
            _swap_batchnorm(child, kind)
    return module
