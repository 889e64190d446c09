"""The DCGAN training loop (paper section 4), readable top to bottom.

One step: D sees a real batch and a fake batch in two separate forward/backward passes (so batchnorm
normalises each on its own), then G is updated with the non-saturating loss -log D(G(z)). Precision is one
autocast context plus a GradScaler that is only enabled for fp16; DDP is detected from torchrun's variables.
The data order is a seeded permutation per epoch, so the step number alone fixes where in the data a run is,
and a resumed run replays exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dcgan import checkpoint as ckpt
from dcgan import distributed
from dcgan.config import TrainConfig
from dcgan.data import ImageData, load_images
from dcgan.errors import CheckpointError, ConfigError, DataError, DcganError
from dcgan.gemm_conv import use_gemm_conv
from dcgan.models import Generator, recalibrate_batchnorm, sample_prior
from dcgan.sample import diversity, generate, plot_losses, save_gif, save_grid

#: Below this sample diversity (generated spread / real spread) the run warns of mode collapse.
COLLAPSE_THRESHOLD = 0.15
NUM_FIXED = 64


@dataclass
class TrainResult:
    out: Path
    step: int
    checkpoint: Path | None
    stopped_early: bool = False


class NumericalFault(DcganError):
    """Training produced NaN or Inf and ran out of rollbacks."""


class Interrupted(DcganError):
    """SIGINT or SIGTERM stopped the run after a checkpoint was written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 on GPUs that have it (else fp16) and on CPUs with AMX/AVX-512-bf16 (else fp32)."""
    if precision != "auto":
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("--precision bf16 needs a GPU that supports bfloat16; use fp16 or auto.")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    fast = (
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    )
    return "bf16" if fast else "fp32"


def keep_freed_memory() -> bool:
    """Stop glibc from handing large freed blocks back to the OS; returns whether it took effect.

    A training step allocates and frees the same large temporaries every time (im2col buffers, activations).
    By default glibc serves each from a fresh mmap and unmaps it on free, so every step page-faults hundreds
    of megabytes back in; on this project's 2-core CPU that was a quarter of the GEMM layers' time. Keeping
    freed memory in the heap trades a flat resident size (the peak step's) for that. `DCGAN_MALLOPT=0` opts
    out. Linux with glibc only; elsewhere this does nothing.
    """
    if os.environ.get("DCGAN_MALLOPT", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def _adam(params: Iterator[nn.Parameter], config: TrainConfig, device: torch.device) -> torch.optim.Adam:
    # fused Adam is one kernel per step instead of ~10 per tensor; fall back to foreach where unsupported.
    kwargs: dict[str, Any] = {"lr": config.lr, "betas": (config.beta1, config.beta2)}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, foreach=True, **kwargs)


class Trainer:
    """Holds a run's models, optimisers and position; `fit()` trains to the configured number of steps."""

    def __init__(
        self,
        config: TrainConfig,
        out: str | Path,
        *,
        resume: bool = False,
        data: ImageData | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
    ) -> None:
        config.validate()
        self.out = Path(out)
        self.dist, self.device = distributed.setup(torch.device(device) if device else None)
        self.progress = progress and self.dist.is_main
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        state = self._prepare_run_folder(config, resume)
        if state is not None:
            config = self._merge_resumed_config(config, state)
        self.config = config
        self.precision = resolve_precision(config.precision, self.device)
        use_gemm_conv(config.gemm_conv)
        if self.device.type == "cpu":
            keep_freed_memory()

        self.data = data or load_images(
            config.data, root=config.data_root, image_size=config.image_size, channels=config.channels,
            download=config.download,
        )  # fmt: skip
        self.channels = self.data.channels
        if config.batch_size % self.dist.world:
            raise ConfigError(f"--batch-size {config.batch_size} must divide evenly over {self.dist.world} processes.")
        self.steps_per_epoch = len(self.data) // config.batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"The data holds {len(self.data)} images, fewer than one batch of {config.batch_size}.")
        self.total_steps = config.steps or (config.epochs or 5) * self.steps_per_epoch

        torch.manual_seed(config.seed)
        self.G, self.D = ckpt.build_models(config, self.channels)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.memory_format = memory_format
        self.G.to(self.device).to(memory_format=memory_format)
        self.D.to(self.device).to(memory_format=memory_format)
        if config.sync_batchnorm and self.device.type != "cuda":
            raise ConfigError("--sync-batchnorm needs GPUs: PyTorch's SyncBatchNorm does not run on CPU processes.")
        if self.dist.enabled and config.sync_batchnorm:
            self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)  # type: ignore[assignment]
            self.D = nn.SyncBatchNorm.convert_sync_batchnorm(self.D)  # type: ignore[assignment]
        # An exponential moving average of G's weights: smoother samples, and what evaluation uses when on.
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if config.ema > 0 else None
        self.opt_g = _adam(self.G.parameters(), config, self.device)
        self.opt_d = _adam(self.D.parameters(), config, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.noise = torch.Generator(self.device).manual_seed(config.seed + 1)
        self.fixed_z = sample_prior(NUM_FIXED, config.nz, config.prior, torch.Generator().manual_seed(config.seed + 2))
        self.step = 0
        self.nan_retries = 0
        self.best_diversity = 0.0
        self.best_value: float | None = None
        self.evaluator = self._make_evaluator() if config.eval_every and self.dist.is_main else None
        if state is not None:
            self._restore(state)
        self.g_train, self.d_train = self._wrap(self.G), self._wrap(self.D)
        self._stop_signal: int | None = None

    # ----------------------------------------------------------------------------------------- run folder
    def _prepare_run_folder(self, config: TrainConfig, resume: bool) -> dict[str, Any] | None:
        existing = ckpt.list_checkpoints(self.out)
        if existing and not resume:
            raise ConfigError(f"{self.out} already holds a run; add --resume to continue it or pick another --out.")
        if self.dist.is_main:
            for sub in ("", "checkpoints", "samples"):
                (self.out / sub).mkdir(parents=True, exist_ok=True)
        distributed.barrier(self.dist)
        if not existing:
            if resume and self.dist.is_main:
                print(f"No checkpoint in {self.out}: starting a new run there.")
            return None
        for path in reversed(existing):  # the newest readable one; a corrupt newest file is reported and skipped
            try:
                return ckpt.load(path)
            except CheckpointError as exc:
                if path == existing[0]:
                    raise
                warnings.warn(f"{exc} Falling back to the previous checkpoint.", stacklevel=2)
        return None

    @staticmethod
    def _merge_resumed_config(config: TrainConfig, state: dict[str, Any]) -> TrainConfig:
        saved = ckpt.config_of(state).architecture()
        wanted = config.architecture()
        if wanted != saved:
            diff = ", ".join(f"{k} {saved[k]} vs {wanted[k]}" for k in saved if saved[k] != wanted[k])
            raise CheckpointError(
                f"The checkpoint's model does not match this run's ({diff}); resume with the same model settings "
                "or start a new --out."
            )
        return config

    def _wrap(self, module: nn.Module) -> nn.Module:
        wrapped = module
        if self.config.compile:
            wrapped = torch.compile(wrapped)  # type: ignore[assignment]
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DistributedDataParallel(wrapped, device_ids=ids)
        return wrapped

    # ----------------------------------------------------------------------------------------- checkpoints
    def _snapshot(self) -> dict[str, Any]:
        return {
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            "config": self.config.to_dict(),
            "channels": self.channels,
            "generator": self.G.state_dict(),
            "generator_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "generator_eval": self.sampling_generator().state_dict(),
            "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "batch_in_epoch": self.step % self.steps_per_epoch,
            "noise_rng": self.noise.get_state(),
            "rng": ckpt.rng_state(),
            "nan_retries": self.nan_retries,
            "best_value": self.best_value,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        where = f"step {state['step']}"
        if int(state.get("channels", self.channels)) != self.channels:
            raise CheckpointError(
                f"The checkpoint has {state['channels']} channels but the data has {self.channels}; pass --channels."
            )
        ckpt.load_state_dict(self.G, state["generator"], "generator", where)
        ckpt.load_state_dict(self.D, state["discriminator"], "discriminator", where)
        if self.G_ema is not None:
            ckpt.load_state_dict(self.G_ema, state.get("generator_ema") or state["generator"], "EMA generator", where)
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.scaler.load_state_dict(state["scaler"])
            self.noise.set_state(state["noise_rng"])
            ckpt.set_rng_state(state["rng"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"The checkpoint at {where} lacks a complete training state ({exc}).") from exc
        self.step = int(state["step"])
        self.nan_retries = int(state.get("nan_retries", 0))
        self.best_value = state.get("best_value")
        self._forget_metrics_after(self.step)

    def _forget_metrics_after(self, step: int) -> None:
        """Drop log rows past the checkpoint being resumed: the run replays those steps exactly."""
        path = self.out / "metrics.jsonl"
        if not self.dist.is_main or not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a kill
        path.write_text("".join(f"{line}\n" for line in keep))

    def save_checkpoint(self) -> Path | None:
        """Write `checkpoints/step-XXXXXXXX.pt` (rank 0 only) unless the weights are not finite."""
        if not self.dist.is_main:
            return None
        if not all(torch.isfinite(p).all() for p in [*self.G.parameters(), *self.D.parameters()]):
            warnings.warn(f"Not saving step {self.step}: the weights hold NaN or Inf.", stacklevel=2)
            return None
        path = ckpt.atomic_save(self._snapshot(), self.out / ckpt.CHECKPOINT_DIR / ckpt.checkpoint_name(self.step))
        ckpt.prune(self.out, self.config.keep_checkpoints)
        return path

    # ----------------------------------------------------------------------------------------- one step
    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def real_batch(self, step: int) -> torch.Tensor:
        """This rank's share of the global batch for `step`: a slice of the epoch's seeded permutation."""
        epoch, index = divmod(step, self.steps_per_epoch)
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.config.seed * 7919 + epoch))
        batch = order[index * self.config.batch_size : (index + 1) * self.config.batch_size]
        pixels = self.data.images[batch[self.dist.rank :: self.dist.world].sort().values]
        if self.device.type == "cuda":
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        # uint8 -> [-1, 1] on the fly: the data stays 4x smaller than float in memory.
        return pixels.to(torch.float32).div_(127.5).sub_(1).contiguous(memory_format=self.memory_format)

    def latent_batch(self) -> torch.Tensor:
        z = sample_prior(self.config.batch_size, self.config.nz, self.config.prior, self.noise, self.device)
        return z[self.dist.rank :: self.dist.world]

    def train_step(self, real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One D update and one G update; returns [loss_d, loss_g, D(x), D(G(z))] as a tensor (no host sync)."""
        ones = torch.ones(real.shape[0], device=self.device)
        zeros = torch.zeros(real.shape[0], device=self.device)
        d_module = self.D
        scaler = self.scaler

        # D: maximise log D(x) + log(1 - D(G(z))), real and fake in separate passes (batchnorm statistics).
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            logits_real = self.d_train(real)
            loss_real = F.binary_cross_entropy_with_logits(logits_real.float(), ones)
        scaler.scale(loss_real).backward()
        with self._autocast():
            fake = self.g_train(z)
            logits_fake = self.d_train(fake.detach())
            loss_fake = F.binary_cross_entropy_with_logits(logits_fake.float(), zeros)
        scaler.scale(loss_fake).backward()
        scaler.step(self.opt_d)

        # G: the non-saturating loss -log D(G(z)). D's weights are frozen so no gradient is spent on them.
        self.opt_g.zero_grad(set_to_none=True)
        d_module.requires_grad_(False)
        with self._autocast():
            logits_g = d_module(fake)
            loss_g = F.binary_cross_entropy_with_logits(logits_g.float(), ones)
        scaler.scale(loss_g).backward()
        d_module.requires_grad_(True)
        scaler.step(self.opt_g)
        scaler.update()
        if self.G_ema is not None:
            self._update_ema()
        return torch.stack(
            [
                (loss_real + loss_fake).detach(),
                loss_g.detach(),
                torch.sigmoid(logits_real.detach().float()).mean(),
                torch.sigmoid(logits_fake.detach().float()).mean(),
            ]
        )

    @torch.no_grad()
    def _update_ema(self) -> None:
        assert self.G_ema is not None
        ema_params: list[torch.Tensor] = list(self.G_ema.parameters())
        params: list[torch.Tensor] = list(self.G.parameters())
        torch._foreach_lerp_(ema_params, params, 1.0 - self.config.ema)
        for ema_buffer, buffer in zip(self.G_ema.buffers(), self.G.buffers()):
            ema_buffer.copy_(buffer)

    def sampling_generator(self) -> Generator:
        """What samples, evaluations and `load_generator` use: a copy of G (its EMA when on) in eval mode with
        batchnorm statistics re-estimated for its current weights. The training state is left untouched."""
        source = self.G_ema if self.G_ema is not None else self.G
        return recalibrate_batchnorm(copy.deepcopy(source), self.config.prior, seed=self.config.seed + 3)

    # ----------------------------------------------------------------------------------------- the loop
    def fit(self, on_step: Callable[[Trainer, torch.Tensor], None] | None = None) -> TrainResult:
        """Train until `total_steps`; checkpoints, samples and logs go into the run folder."""
        from tqdm import tqdm

        cfg = self.config
        if self.dist.is_main:
            cfg.save(self.out / "config.json")
            if not ckpt.list_checkpoints(self.out):
                self.save_checkpoint()  # step 0: a NaN before the first interval still has a state to roll back to
        writer = self._tensorboard()
        bar = tqdm(
            total=self.total_steps, initial=self.step, disable=not self.progress, unit="step", dynamic_ncols=True
        )
        if self.progress and self.data.skipped:
            bar.write(
                f"Skipped {len(self.data.skipped)} files that could not be decoded (e.g. {self.data.skipped[0]})."
            )
        previous = self._install_signal_handlers()
        stats_sum = torch.zeros(4, device=self.device)
        stats_count, tick, last = 0, time.perf_counter(), None
        try:
            while self.step < self.total_steps:
                stats = self.train_step(self.real_batch(self.step), self.latent_batch())
                if on_step is not None:
                    on_step(self, stats)
                # On a GPU, looking at the losses syncs the host, so look every log_every steps (on a CPU: every
                # step). Under DDP every rank takes part in the same check, so all roll back or stop together.
                check_now = self.device.type == "cpu" or (self.step + 1) % cfg.log_every == 0
                nonfinite, stop = False, self._stop_signal is not None and not self.dist.enabled
                if check_now:
                    local = [not bool(torch.isfinite(stats).all()), self._stop_signal is not None]
                    nonfinite, stop = distributed.any_flags(local, self.dist, self.device)
                if nonfinite:
                    self._roll_back(bar)
                    stats_sum.zero_()
                    stats_count, tick = 0, time.perf_counter()
                    continue
                self.step += 1
                stats_sum += stats
                stats_count += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    now = time.perf_counter()
                    rate = stats_count * cfg.batch_size / max(now - tick, 1e-9)
                    self._log(stats_sum / stats_count, rate, writer, bar)
                    stats_sum.zero_()
                    stats_count, tick = 0, now
                epoch_end = self.step % self.steps_per_epoch == 0
                if self.step % cfg.sample_every == 0 or epoch_end or self.step == self.total_steps:
                    self._write_samples(writer)
                if self.evaluator is not None and (self.step % cfg.eval_every == 0 or self.step == self.total_steps):
                    self._evaluate(writer)
                if self.step % cfg.checkpoint_every == 0 or epoch_end or self.step == self.total_steps:
                    last = self.save_checkpoint() or last
                    if epoch_end and self.dist.is_main:
                        self._write_figures()
                if stop:
                    self._stop(bar, writer)
            # Batchnorm running statistics drift apart between ranks (each normalises its own share), so
            # rank 0's are given to all: every rank ends with the weights the checkpoint holds.
            distributed.broadcast_buffers([self.G, self.D, *([self.G_ema] if self.G_ema else [])], self.dist)
        finally:
            self._restore_signal_handlers(previous)
            bar.close()
            if writer is not None:
                writer.close()
        if self.dist.is_main:
            self._write_figures()
            if last is None:
                last = ckpt.list_checkpoints(self.out)[-1]
        return TrainResult(self.out, self.step, last)

    def _roll_back(self, bar: Any) -> None:
        self.nan_retries += 1
        if self.nan_retries > self.config.max_nan_retries:
            raise NumericalFault(
                f"Training produced NaN/Inf at step {self.step + 1} again after {self.config.max_nan_retries} "
                f"rollbacks; try a lower --lr or --precision fp32. The last good checkpoint is in {self.out}."
            )
        path = ckpt.list_checkpoints(self.out)[-1]
        retries = self.nan_retries
        self._restore(ckpt.load(path))
        self.nan_retries = retries
        # A different noise stream, or the same batch would produce the same NaN again.
        self.noise.manual_seed(self.config.seed + 1 + 1_000_003 * retries)
        bar.n = self.step
        bar.refresh()
        if self.dist.is_main:
            warnings.warn(
                f"NaN/Inf in the losses: rolled back to {path.name} (retry {retries} of "
                f"{self.config.max_nan_retries}) with a fresh noise stream.",
                stacklevel=2,
            )

    def _log(self, mean: torch.Tensor, rate: float, writer: Any, bar: Any) -> None:
        loss_d, loss_g, d_x, d_g_z = (float(v) for v in mean.tolist())
        row = {
            "step": self.step, "epoch": self.step / self.steps_per_epoch, "loss_d": loss_d, "loss_g": loss_g,
            "d_x": d_x, "d_g_z": d_g_z, "img_per_s": rate, "time": time.time(),
        }  # fmt: skip
        bar.set_postfix(loss_d=f"{loss_d:.3f}", loss_g=f"{loss_g:.3f}", D_x=f"{d_x:.2f}", D_G_z=f"{d_g_z:.2f}",
                        img_s=f"{rate:.0f}")  # fmt: skip
        if self.dist.is_main:
            self._append_metrics(row)
            if writer is not None:
                for key in ("loss_d", "loss_g", "d_x", "d_g_z", "img_per_s"):
                    writer.add_scalar(f"train/{key}", row[key], self.step)

    def _append_metrics(self, row: dict[str, Any]) -> None:
        try:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as exc:
            warnings.warn(f"Could not append to metrics.jsonl ({exc.strerror}); training goes on.", stacklevel=2)

    def _write_samples(self, writer: Any) -> None:
        if not self.dist.is_main:
            return
        images = generate(self.sampling_generator(), self.fixed_z.to(self.device))
        try:
            save_grid(images, self.out / "samples" / f"step-{self.step:08d}.png", nrow=8)
        except OSError as exc:
            warnings.warn(f"Could not write a sample grid ({exc.strerror}); training goes on.", stacklevel=2)
        real = self.data.images[: images.shape[0]].float() / 127.5 - 1
        score = diversity(images, real)
        self._append_metrics({"step": self.step, "diversity": score})
        if writer is not None:
            writer.add_scalar("train/diversity", score, self.step)
            writer.add_image("samples", (images[:64] + 1) / 2, self.step, dataformats="NCHW")
        # A collapse is a fall: early samples are all alike too, so compare against the best diversity so far.
        self.best_diversity = max(self.best_diversity, score)
        if score < COLLAPSE_THRESHOLD and score < 0.5 * self.best_diversity:
            warnings.warn(
                f"Possible mode collapse at step {self.step}: sample diversity {score:.3f} of the real data's.",
                stacklevel=2,
            )

    def _make_evaluator(self) -> Any:
        from dcgan.metrics import TrainingEvaluator

        cfg = self.config
        return TrainingEvaluator(
            cfg.data, root=cfg.data_root, image_size=cfg.image_size, channels=self.channels, metric=cfg.eval_metric,
            n=cfg.eval_n, features=cfg.eval_features, prior=cfg.prior, seed=cfg.seed,
        )  # fmt: skip

    def _evaluate(self, writer: Any) -> None:
        """Score the sampling generator; log it; keep `checkpoints/best.pt` when it beats the best so far."""
        assert self.evaluator is not None
        values = self.evaluator(self.sampling_generator())
        value = float(values[self.evaluator.key])
        self._append_metrics({"step": self.step, **values})
        if writer is not None:
            for key, v in values.items():
                writer.add_scalar(f"eval/{key}", v, self.step)
        if self.evaluator.is_better(value, self.best_value):
            self.best_value = value
            best = self.out / ckpt.CHECKPOINT_DIR / "best.pt"
            ckpt.atomic_save({**self._snapshot(), "metrics": values}, best)

    def _write_figures(self) -> None:
        """The training animation and the loss curves; a failure here (e.g. a full disk) only warns."""
        try:
            save_gif(sorted((self.out / "samples").glob("step-*.png")), self.out / "progress.gif")
            if (self.out / "metrics.jsonl").exists():
                plot_losses(self.out / "metrics.jsonl", self.out / "losses.png")
        except OSError as exc:
            warnings.warn(f"Could not write progress.gif or losses.png ({exc.strerror}).", stacklevel=2)

    def _tensorboard(self) -> Any:
        if not self.dist.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step or None)

    # ----------------------------------------------------------------------------------------- signals
    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}

        def handler(signum: int, _frame: Any) -> None:
            if self._stop_signal is not None:  # a second Ctrl-C: stop now, the last checkpoint stands
                raise KeyboardInterrupt
            self._stop_signal = signum

        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    def _stop(self, bar: Any, writer: Any) -> None:
        signum = self._stop_signal or signal.SIGINT
        distributed.broadcast_buffers([self.G, self.D, *([self.G_ema] if self.G_ema else [])], self.dist)
        self.save_checkpoint()
        if self.dist.is_main:
            self._write_figures()
        name = signal.Signals(signum).name
        raise Interrupted(
            f"Stopped by {name} at step {self.step} of {self.total_steps}; a checkpoint is saved. "
            f"Resume with: dcgan train --out {self.out} --resume",
            signum,
        )


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    data: ImageData | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a DCGAN as `config` describes, writing the run folder `out`; returns where it ended.

    Args:
        config: the run's settings (see `dcgan.build_config` for presets and validation).
        out: the run folder; it must not hold a run unless `resume` is true.
        resume: continue from the newest checkpoint in `out` (`config.steps` is the run's total).
        data: images to train on instead of loading `config.data`.
        device: "cpu", "cuda" or a torch.device; defaults to the GPU when there is one.
        progress: show a progress bar.
    """
    trainer = Trainer(config, out, resume=resume, data=data, device=device, progress=progress)
    try:
        return trainer.fit()
    finally:
        distributed.teardown(trainer.dist)


__all__ = ["Interrupted", "NumericalFault", "TrainResult", "Trainer", "resolve_precision", "train"]
