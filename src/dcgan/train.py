"""The DCGAN training loop (paper section 4), readable top to bottom.

One step: D is updated on a real and a fake batch, which batchnorm normalises each on its own (two forward and
backward passes, or with `Trainer.one_pass_d` one pass of both: the same step), then G with the non-saturating
loss -log D(G(z)). A class-conditional run (`--conditional`) gives D each real image's label and draws the fake
batch in the real batch's labels. Precision is one autocast context plus a GradScaler that is only enabled for
fp16; DDP is detected from torchrun's variables. The data order is a seeded permutation per epoch, so the step
number alone fixes where in the data a run is, and a resumed run replays exactly what an uninterrupted one would
have done.

`Trainer.train_step` is the step and `Trainer.fit` the loop. What happens around them (the log, the sample
grids and figures, evaluation and best.pt, signals, NaN rollback) is in `dcgan.training`, one collaborator each;
the run folder's layout and the checkpoint's contents are `dcgan.run`'s.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
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
from dcgan import run as runs
from dcgan.config import TrainConfig
from dcgan.data import ImageData, as_trained, load_images
from dcgan.data.balance import draw_weights
from dcgan.data.balance import shares as balance_shares
from dcgan.data.folder import data_progress, examples
from dcgan.errors import CheckpointError, ConfigError, DataError
from dcgan.gemm_conv import use_gemm_conv
from dcgan.models import Generator, recalibrate_batchnorm, sample_prior
from dcgan.plan import ModelShape, plan_for_run
from dcgan.training.augment import augment, parse_policy, step_generator
from dcgan.training.balance import (
    GroupBalancer,
    JointBalance,
    parse_balance_groups,
    reads_members,
    samples_per_reading,
)
from dcgan.training.dry_run import DryRunReport, dry_run
from dcgan.training.ema import update_ema
from dcgan.training.evaluation import BestCheckpoint
from dcgan.training.log import TrainingLog
from dcgan.training.resume import newest_state
from dcgan.training.rollback import NanRollback, NumericalFault
from dcgan.training.samples import SampleMonitor
from dcgan.training.signals import GracefulStop, Interrupted
from dcgan.training.speed import keep_freed_memory, resolve_precision

#: Below this sample diversity (generated spread / real spread) the run warns of mode collapse.
COLLAPSE_THRESHOLD = 0.15
NUM_FIXED = 64


@dataclass
class TrainResult:
    out: Path
    step: int
    checkpoint: Path | None
    stopped_early: bool = False


def step_counts(config: TrainConfig, images: int) -> tuple[int, int]:
    """(steps per epoch, the run's total steps) for a data set of `images` images."""
    per_epoch = images // config.batch_size
    if per_epoch == 0:
        raise DataError(f"The data holds {images} images, fewer than one batch of {config.batch_size}.")
    return per_epoch, config.steps or (config.epochs or 5) * per_epoch


def _adam(params: Iterator[nn.Parameter], config: TrainConfig) -> torch.optim.Adam:
    # fused Adam is one kernel per step instead of ~10 per tensor; fall back to foreach where unsupported.
    kwargs: dict[str, Any] = {"lr": config.lr, "betas": (config.beta1, config.beta2)}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, foreach=True, **kwargs)


class Trainer:
    """A run's models, optimisers and position; `fit()` trains to the configured number of steps.

    Building a Trainer reads (the data, a checkpoint to resume) and settles the execution plan (`dcgan.plan`: the
    run's stored one, the cached one, or measured once per machine and shape when the run is long enough to pay
    for it), writing nothing but the plan cache; `fit()` writes the run folder. It switches `dcgan.gemm_conv` to
    the plan's setting process-wide; `fit()` puts the previous setting back.
    """

    #: True: D sees the real and the fake batch in one forward and one backward pass, its batchnorm layers
    #: normalising each on its own (`Discriminator.forward`'s `parts`): the same step as two passes. Off until it
    #: is measured to pay (benchmarks/train_speed.py): on the 2-core CPU it was not clearly faster.
    one_pass_d = False

    def __init__(
        self,
        config: TrainConfig,
        out: str | Path,
        *,
        resume: bool = False,
        data: ImageData | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
        ddp_timeout: float | None = None,
    ) -> None:
        config.validate()
        self.config, self.folder = config, runs.RunFolder(out)
        self.out = self.folder.root
        self.dist, self.device = distributed.setup(torch.device(device) if device else None, ddp_timeout)
        self.progress = progress and self.dist.is_main
        try:
            self._start(config, resume, data)
        except BaseException:
            distributed.teardown(self.dist)  # a rank that stops here leaves no process group behind to abort at exit
            raise

    def _start(self, config: TrainConfig, resume: bool, data: ImageData | None) -> None:
        """The rest of `__init__`: the checkpoint, the data, the plan, the models and the optimisers."""
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        # Rank 0 reads the checkpoint and hands it over: the other ranks may be on nodes without the run folder.
        state = distributed.from_main(lambda: newest_state(self.folder, config, resume=resume, talk=True), self.dist)
        resolve_precision(config.precision, self.device)  # a precision the device lacks fails before the data loads
        if self.device.type == "cpu":
            keep_freed_memory()

        # A resumed run keeps the channels it began with; a new one without --channels trains grey data in one.
        channels = config.channels or (state.get("channels") if state is not None else None)
        with data_progress(self.progress):  # no listing or decoding bars either with progress off
            self.data = data or load_images(
                config.data, root=config.data_root, image_size=config.image_size, channels=channels,
                download=config.download, labels_from_name=config.labels_from_name,
            )  # fmt: skip
        #: Said at the start of `fit` when grey images decoded to three channels are trained in one.
        self.grey_note: str | None = None
        if (grey := as_trained(self.data, channels)) is not self.data:
            self.data = grey
            self.grey_note = (
                f"Every image of {self.data.source} is grey: training in 1 channel (--channels 3 keeps three)."
            )
        distributed.check_same_data(self.data.images, self.data.labels, self.dist, self.device)
        self.channels = self.data.channels
        #: Each image's weight in an epoch's draws under --class-weights (None: each image once per epoch).
        self.draw_weights = draw_weights(config.class_weights, self.data)
        #: --balance-groups: what sets each image's draw weight from G's measured groups, one classifier or
        #: several (None when off).
        self.balance = self._balance_groups(config) if config.balance_groups else None
        #: The classes a conditional run draws (label i is classes[i]); () for an unconditional run.
        self.classes = classes_to_draw(config, self.data)
        if state is not None:
            _check_classes(state, self.classes, config)
        if config.batch_size % self.dist.world:
            raise ConfigError(f"--batch-size {config.batch_size} must divide evenly over {self.dist.world} processes.")
        self.steps_per_epoch, self.total_steps = step_counts(config, len(self.data))
        # The run's plan: the one it stored when resumed, else cached or measured (see dcgan.plan.plan_for_run).
        self.plan_choice = plan_for_run(
            config, ModelShape.of(config, self.channels, self.dist.world), self.device, stored=config.plan,
            resumed=state["config"] if state is not None else None,
            remaining_steps=self.total_steps - (int(state["step"]) if state is not None else 0),
            distributed=self.dist.enabled,
        )  # fmt: skip
        self.plan = self.plan_choice.plan
        self.precision = self.plan.precision
        self.config = config = dataclasses.replace(config, plan=self.plan.to_dict())  # saved with the run
        #: --augment's transformations of every image D sees (() when off), read once from the config.
        self.augment_policy = parse_policy(config.augment)

        torch.manual_seed(config.seed)
        self.G, self.D = runs.build_models(config, self.channels, self.classes, class_shares(self.data, self.classes))
        self.memory_format = self.plan.memory_format
        self.G.to(self.device).to(memory_format=self.memory_format)
        self.D.to(self.device).to(memory_format=self.memory_format)
        if self.dist.enabled and config.sync_batchnorm:
            self.G = distributed.sync_batchnorm(self.G, self.device)  # type: ignore[assignment]
            self.D = distributed.sync_batchnorm(self.D, self.device)  # type: ignore[assignment]
        # An exponential moving average of G's weights: smoother samples, and what evaluation uses when on.
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if config.ema > 0 else None
        #: The step and sampling copy `sampling_generator` made last: a step's grid, checkpoint and snapshot share it.
        self._eval_copy: tuple[int, Generator] | None = None
        self.opt_g, self.opt_d = _adam(self.G.parameters(), config), _adam(self.D.parameters(), config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.noise = torch.Generator(self.device).manual_seed(config.seed + 1)
        self.fixed_z = sample_prior(NUM_FIXED, config.nz, config.prior, torch.Generator().manual_seed(config.seed + 2))
        self._order: tuple[int, torch.Tensor, torch.Tensor | None] | None = None  # an epoch, its order and mirrors
        self.step = 0
        self.best = BestCheckpoint(config, self.channels, self.folder.best)
        self.rollback = NanRollback(
            self.folder, config.max_nan_retries, config.seed, warn=self.dist.is_main,
            share=lambda read: distributed.from_main(read, self.dist),
        )  # fmt: skip
        if state is not None:
            self._restore(state)
        self.g_train, self.d_train = self._wrap(self.G), self._wrap(self.D)
        self._gemm_before = use_gemm_conv(self.plan.gemm_conv)  # last: nothing after this can fail

    def _balance_groups(self, config: TrainConfig) -> JointBalance:
        """The --balance-groups controllers, one per classifier: the classifiers load on every rank (all before
        any reads the images: an unknown name fails at once), the images' groups are read on rank 0 and handed to
        the others, so every rank draws the same images."""
        from dcgan.metrics.extractors import load_features
        from dcgan.metrics.reference import reference_groups

        names = parse_balance_groups(config.balance_groups)
        extractors = [load_features(name, device=self.device) for name in names]
        for name, extractor in zip(names, extractors, strict=True):
            reads_members(extractor, name, config.balance_by)  # refused before the images are read
        balancers = []
        for name, extractor in zip(names, extractors, strict=True):
            read = functools.partial(reference_groups, extractor, self.data, progress=self.progress)
            groups = distributed.from_main(read, self.dist)
            balancers.append(
                GroupBalancer(extractor, groups, name=name, every=config.balance_every, by=config.balance_by)
            )
        return JointBalance(balancers)

    def _reads_fakes(self, step: int) -> bool:
        """Whether --balance-groups reads the fakes of `step`'s training step (`--balance-read fakes`)."""
        assert self.balance is not None
        return self.config.balance_read == "fakes" and step % self.balance.observe_every == 0

    def _reads_samples(self, step: int) -> bool:
        """Whether --balance-groups reads samples of G after `step` (`--balance-read samples`)."""
        return self.config.balance_read == "samples" and step % self.config.snapshot_every == 0

    def _read_samples(self) -> None:
        """`--balance-read samples`: the classifiers read samples of the sampling copy of G as it is now (the
        snapshot this step writes). Their latents depend only on the seed and the step, so a resumed run reads the
        same samples."""
        from dcgan.sample import generate, latents

        assert self.balance is not None
        cfg = self.config
        count = samples_per_reading(cfg.balance_every, cfg.snapshot_every)
        z = latents(count, cfg.nz, cfg.prior, seed=cfg.seed * 1_000_003 + self.step)
        self.balance.observe(generate(self.sampling_generator(), z))

    def _update_balance(self, log: TrainingLog) -> None:
        """The weights rank 0's readings of the fakes set, in force on every rank from this step on."""
        assert self.balance is not None
        balance = self.balance
        updates = distributed.from_main(lambda: balance.update(self.step), self.dist)
        balance.apply(self.step, updates)
        values, lines = balance.report(self.step, updates)
        if self.dist.is_main and values:
            log.row(self.step, values, group="balance")
            for line in lines:
                log.note(line)

    def _wrap(self, module: nn.Module) -> nn.Module:
        wrapped = module
        if self.plan.compile:
            wrapped = torch.compile(wrapped)  # type: ignore[assignment]
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DistributedDataParallel(wrapped, device_ids=ids)
        return wrapped

    # ----------------------------------------------------------------------------------------- checkpoints
    def _snapshot(self) -> dict[str, Any]:
        # Step 0's checkpoint is there to roll back to, and is not sampled from: re-estimating its batchnorm
        # statistics (a second of a 64x64 run's start) is left to whoever opens it, as for older checkpoints.
        sampling = self.sampling_generator() if self.step else None
        return runs.make_checkpoint(
            config=self.config, channels=self.channels, step=self.step, steps_per_epoch=self.steps_per_epoch,
            generator=self.G, generator_ema=self.G_ema, generator_eval=sampling,
            discriminator=self.D,
            training={
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "scaler": self.scaler.state_dict(),
                "noise_rng": self.noise.get_state(), "rng": ckpt.rng_state(),
                "nan_retries": self.rollback.retries, "best_value": self.best.value,
                "balance": self.balance.state_dict() if self.balance is not None else None,
            },
        )  # fmt: skip

    def _restore(self, state: dict[str, Any]) -> None:
        where = f"step {state['step']}"
        if int(state.get("channels", self.channels)) != self.channels:
            raise CheckpointError(
                f"The checkpoint has {state['channels']} channels but the data has {self.channels}; pass --channels."
            )
        runs.load_weights(self.G, state["generator"], "generator", where)
        runs.load_weights(self.D, state["discriminator"], "discriminator", where)
        if self.G_ema is not None:
            runs.load_weights(self.G_ema, state.get("generator_ema") or state["generator"], "EMA generator", where)
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.scaler.load_state_dict(state["scaler"])
            self.noise.set_state(state["noise_rng"])
            ckpt.set_rng_state(state["rng"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"The checkpoint at {where} lacks a complete training state ({exc}).") from exc
        self.step = int(state["step"])
        self._eval_copy = None
        self.rollback.retries = int(state.get("nan_retries", 0))
        self.best.value = state.get("best_value")
        if self.balance is not None:
            self.balance.load_state_dict(state.get("balance"))
        self._order = None  # drawn again from the restored weights

    def save_checkpoint(self) -> Path | None:
        """Write `checkpoints/step-XXXXXXXX.pt` unless the weights are not finite; every rank calls it.

        Rank 0 writes, and its outcome reaches every rank: when the write fails (a full disk) all ranks stop
        with the same sentence instead of the others waiting for a rank 0 that has gone.
        """
        return distributed.from_main(self._write_checkpoint, self.dist)

    def _write_checkpoint(self) -> Path | None:
        if not all(torch.isfinite(p).all() for p in [*self.G.parameters(), *self.D.parameters()]):
            warnings.warn(f"Not saving step {self.step}: the weights hold NaN or Inf.", stacklevel=2)
            return None
        try:
            path = ckpt.atomic_save(self._snapshot(), self.folder.checkpoint(self.step))
        except CheckpointError as exc:
            raise self._with_resume_hint(exc) from exc
        self.folder.prune(self.config.keep_checkpoints)
        return path

    def _write_snapshot(self) -> Path | None:
        """G's sampling weights now, into `snapshots/` (the newest `--snapshots` kept), unless they are not finite."""
        generator = self.sampling_generator()
        if not all(torch.isfinite(p).all() for p in generator.parameters()):
            return None
        try:
            return self.folder.save_snapshot(self.step, generator, self.config.snapshots)
        except CheckpointError as exc:
            raise self._with_resume_hint(exc) from exc

    def _with_resume_hint(self, exc: CheckpointError) -> CheckpointError:
        """A failed write (a full disk) said with what to do once it is mended: what was saved is intact."""
        return CheckpointError(
            f"{str(exc).rstrip('.')}; once there is room, dcgan train --out {self.out} --resume continues from the "
            "newest checkpoint."
        )

    def sampling_generator(self) -> Generator:
        """What samples, evaluations and `load_generator` use: a copy of G (its EMA when on) in eval mode with
        batchnorm statistics re-estimated for its current weights. The training state is left untouched."""
        if self._eval_copy is not None and self._eval_copy[0] == self.step:  # a grid, a checkpoint, a snapshot
            return self._eval_copy[1]
        source = self.G_ema if self.G_ema is not None else self.G
        # Rank 0 alone runs this copy: its batchnorm layers must not wait for the other ranks.
        own = distributed.local_batchnorm(copy.deepcopy(source))
        copied = recalibrate_batchnorm(own, self.config.prior, seed=self.config.seed + 3)  # type: ignore[arg-type]
        self._eval_copy = (self.step, copied)
        return copied

    def _share_batchnorm_statistics(self) -> None:
        # Running statistics drift apart between ranks (each normalises its own share), so rank 0's are given to
        # all: every rank ends with the weights the checkpoint holds.
        distributed.broadcast_buffers([self.G, self.D, *([self.G_ema] if self.G_ema else [])], self.dist)

    def _start_folder(self) -> None:
        self.folder.create()
        self.config.save(self.folder.config)
        if not self.folder.list_checkpoints():
            self._write_checkpoint()  # step 0: a NaN before the first interval still has a state to roll back to
        if self.config.eval_every:
            self.best.prepare()

    def _skipped_summary(self) -> str:
        """One line on the data files that could not be decoded: how many, a few names, where the list is."""
        skipped = self.data.skipped
        line = f"Skipped {len(skipped):,} files that could not be decoded (e.g. {examples(skipped, self.data.source)})"
        try:
            self.folder.skipped_files.write_text("".join(f"{name}\n" for name in skipped))
        except OSError as exc:
            return f"{line}; their list could not be written to {self.folder.skipped_files} ({exc.strerror})."
        return f"{line}; all of them are listed in {self.folder.skipped_files}."

    def _balance_reads(self) -> str:
        """What --balance-groups reads, as its start line says it."""
        cfg = self.config
        if cfg.balance_read == "fakes":
            return "the fakes read since"
        count = samples_per_reading(cfg.balance_every, cfg.snapshot_every)
        return f"{count:,} samples of G's sampling copy read every {cfg.snapshot_every} steps since"

    def _draw_note(self) -> str:
        """What --class-weights does to the draws: each class's share of them against its share of the images."""
        assert self.draw_weights is not None and self.data.labels is not None
        names = self.data.class_names
        drawn = balance_shares(self.draw_weights, self.data.labels, len(names))
        held = balance_shares(torch.ones_like(self.draw_weights), self.data.labels, len(names))
        parts = ", ".join(f"{n} {100 * d:.1f}% ({100 * h:.1f}%)" for n, d, h in zip(names, drawn, held, strict=True))
        return f"--class-weights {self.config.class_weights}: each class's share of the draws (of the images): {parts}."

    # ----------------------------------------------------------------------------------------- one step
    def _batch_index(self, step: int) -> torch.Tensor:
        """Which images make this rank's share of the global batch for `step`: a slice of the epoch's seeded
        permutation (the epoch's order is kept, as images and labels both ask for it)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            noise = torch.Generator().manual_seed(self.config.seed * 7919 + epoch)
            weights = self.draw_weights
            if self.balance is not None:  # the weights in force at the epoch's first step
                weights = self.balance.image_weights(epoch * self.steps_per_epoch)
            if weights is None:
                order = torch.randperm(len(self.data), generator=noise)
            else:  # as many draws as images, with replacement, each image as likely as its class's weight says
                order = torch.multinomial(weights, len(self.data), replacement=True, generator=noise)
            # Which images the epoch mirrors: drawn after the order, so a run without --flip keeps its old order.
            mirrored = torch.rand(len(self.data), generator=noise) < 0.5 if self.config.flip else None
            self._order = epoch, order, mirrored
        batch = self._order[1][index * self.config.batch_size : (index + 1) * self.config.batch_size]
        return batch[self.dist.rank :: self.dist.world].sort().values

    def real_batch(self, step: int) -> torch.Tensor:
        """This rank's share of the global batch for `step`: a slice of the epoch's seeded permutation, with the
        epoch's chosen half mirrored under --flip (per image and epoch, so every rank and a resume agree)."""
        index = self._batch_index(step)
        pixels = self.data.images[index]
        mirrored = self._order[2] if self._order is not None else None
        if mirrored is not None:
            flip = mirrored[index]
            pixels[flip] = pixels[flip].flip(-1)
        if self.device.type == "cuda":
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        # uint8 -> [-1, 1] on the fly: the data stays 4x smaller than float in memory.
        return pixels.to(torch.float32).div_(127.5).sub_(1).contiguous(memory_format=self.memory_format)

    def real_labels(self, step: int) -> torch.Tensor | None:
        """The labels of `real_batch(step)`'s images, in the same order; None for an unconditional run.

        The fake batch is drawn in these labels too: D then sees the same classes, as often, in its real and its
        fake half, so how often a class comes up tells it nothing, and G learns each class as often as the data
        holds it (an unbalanced set, such as UTKFace's races, keeps its balance).
        """
        if not self.classes:
            return None
        assert self.data.labels is not None
        return self.data.labels[self._batch_index(step)].to(self.device, torch.long)

    def latent_batch(self) -> torch.Tensor:
        z = sample_prior(self.config.batch_size, self.config.nz, self.config.prior, self.noise, self.device)
        return z[self.dist.rank :: self.dist.world]

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def train_step(self, real: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One D update and one G update; returns [loss_d, loss_g, D(x), D(G(z))] as a tensor (no host sync).

        `labels` (a conditional run's): the real images' classes, which the fake batch is drawn in as well.
        """
        if bool(self.classes) != (labels is not None):
            raise ValueError("a conditional run's step needs the real batch's labels; an unconditional one's none")
        y = () if labels is None else (labels,)  # an unconditional step calls G and D exactly as before
        ones = torch.ones(real.shape[0], device=self.device)
        zeros = torch.zeros(real.shape[0], device=self.device)
        scaler = self.scaler
        # An "acgan" D also names each image's class (its columns 1..K); its cross-entropy against the class the
        # image is (real) or was drawn in (fake) joins D's loss for both batches and G's loss for the fakes.
        aux = {"classes": True} if self.config.model_conditioning == "acgan" else {}
        # --augment: every image D sees, real or fake, goes through a fresh draw of the same differentiable
        # transformations (the fakes' gradient to G flows through them); the draws are fixed by the seed and step.
        policy = self.augment_policy
        rng = step_generator(self.config.seed, self.step, self.dist.rank) if policy else None

        def seen(x: torch.Tensor) -> torch.Tensor:
            return augment(x, policy, rng) if rng is not None else x

        def loss(out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(real/fake logits, loss) from D's output: BCE, plus the class cross-entropy for "acgan"."""
            logits = out[:, 0] if aux else out
            value = F.binary_cross_entropy_with_logits(logits.float(), target)
            if aux:
                assert labels is not None
                value = value + F.cross_entropy(out[:, 1:].float(), labels)
            return logits, value

        # D: maximise log D(x) + log(1 - D(G(z))). Batchnorm normalises the real and the fake batch each on its
        # own (the paper's separate batches); in one pass of both, D's batchnorm layers split them (`parts=2`).
        self.opt_d.zero_grad(set_to_none=True)
        if self.one_pass_d:
            with self._autocast():
                fake = self.g_train(z, *y)
                both = () if labels is None else (torch.cat([labels, labels]),)
                pair = torch.cat([seen(real), seen(fake.detach())])
                out_real, out_fake = self.d_train(pair, *both, parts=2, **aux).chunk(2)
                logits_real, loss_real = loss(out_real, ones)
                logits_fake, loss_fake = loss(out_fake, zeros)
            scaler.scale(loss_real + loss_fake).backward()
        else:  # the same step in two forward/backward passes
            with self._autocast():
                logits_real, loss_real = loss(self.d_train(seen(real), *y, **aux), ones)
            scaler.scale(loss_real).backward()
            with self._autocast():
                fake = self.g_train(z, *y)
                logits_fake, loss_fake = loss(self.d_train(seen(fake.detach()), *y, **aux), zeros)
            scaler.scale(loss_fake).backward()
        scaler.step(self.opt_d)
        if self.balance is not None and self.dist.is_main and self._reads_fakes(self.step):
            self.balance.observe(fake.detach())  # --balance-groups reads the groups of what G draws for D

        # G: the non-saturating loss -log D(G(z)). D's weights are frozen so no gradient is spent on them (and the
        # plain D, not its DDP wrapper, runs: there is nothing of D's to all-reduce).
        self.opt_g.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)
        with self._autocast():
            _, loss_g = loss(self.D(seen(fake), *y, **aux), ones)
        scaler.scale(loss_g).backward()
        self.D.requires_grad_(True)
        scaler.step(self.opt_g)
        scaler.update()
        if self.G_ema is not None:
            update_ema(self.G_ema, self.G, self.config.ema, self.step)
        d_x = torch.sigmoid(logits_real.detach().float()).mean()
        d_g_z = torch.sigmoid(logits_fake.detach().float()).mean()
        return torch.stack([(loss_real + loss_fake).detach(), loss_g.detach(), d_x, d_g_z])

    # ----------------------------------------------------------------------------------------- the loop
    def fit(self, on_step: Callable[[Trainer, torch.Tensor], None] | None = None) -> TrainResult:
        """Train until `total_steps`; checkpoints, samples and logs go into the run folder."""
        cfg, folder, main = self.config, self.folder, self.dist.is_main
        samples = SampleMonitor(
            folder, self.fixed_z, self.data.images[:NUM_FIXED], COLLAPSE_THRESHOLD, num_classes=len(self.classes)
        )
        last: Path | None = None
        if main:
            print(self.plan_choice, flush=True)
            if self.grey_note:
                print(self.grey_note, flush=True)
            if self.draw_weights is not None:
                print(self._draw_note(), flush=True)
            if self.balance is not None:
                for line in self.balance.describe(cfg.balance_every, self._balance_reads()):
                    print(line, flush=True)
        with (
            _gemm_conv(self.plan.gemm_conv, then=self._gemm_before),
            TrainingLog(folder, self.step, self.total_steps, writes=main, progress=self.progress) as log,
            GracefulStop() as stop,
        ):
            # Every rank waits here: any of them may roll back to the step-0 checkpoint, and if rank 0 cannot write
            # the folder all stop with its sentence.
            distributed.from_main(self._start_folder, self.dist)
            if self.data.skipped and main:
                log.note(self._skipped_summary())
            while self.step < self.total_steps:
                labels = self.real_labels(self.step)  # a conditional run's; an unconditional step is called as before
                y = () if labels is None else (labels,)
                stats = self.train_step(self.real_batch(self.step), self.latent_batch(), *y)
                if on_step is not None:
                    on_step(self, stats)
                # On a GPU, looking at the losses syncs the host, so look every log_every steps (on a CPU: every
                # step). Under DDP every rank takes part in the same check, so all roll back or stop together.
                nonfinite, stopping = False, stop.requested and not self.dist.enabled
                if self.device.type == "cpu" or (self.step + 1) % cfg.log_every == 0:
                    flags = [not bool(torch.isfinite(stats).all()), stop.requested]
                    nonfinite, stopping = distributed.any_flags(flags, self.dist, self.device)
                if nonfinite:
                    self.rollback(self.step, self._restore, self.noise)
                    log.rewind(self.step)
                    continue
                self.step += 1
                log.add(stats)
                # An epoch's end also gets a grid, a checkpoint and the figures, unless epochs are shorter than the
                # sample interval (the default job's are 39 steps): then the intervals alone set the pace.
                final = self.step == self.total_steps
                epoch_end = self.step % self.steps_per_epoch == 0 and self.steps_per_epoch >= cfg.sample_every
                if self.step % cfg.log_every == 0 or final:
                    log.losses(self.step, self.step / self.steps_per_epoch, cfg.batch_size)
                if main and (self.step % cfg.sample_every == 0 or epoch_end or final):
                    samples.sample(self.step, self.sampling_generator(), log)
                if main and self.best.due(self.step, final):
                    self.best.evaluate(self.step, self.sampling_generator(), log, self._snapshot)
                # Before the checkpoint, which then holds the weights the next epochs draw with (and the counts).
                # A run's last step reads too: a run trained on from its checkpoint counts those samples.
                if self.balance is not None and main and self._reads_samples(self.step):
                    self._read_samples()
                if self.balance is not None and self.step % cfg.balance_every == 0 and not final:
                    self._update_balance(log)
                if cfg.snapshots > 1 and self.step % cfg.snapshot_every == 0:
                    distributed.from_main(self._write_snapshot, self.dist)  # as a checkpoint: one outcome for all
                if self.step % cfg.checkpoint_every == 0 or epoch_end or final:
                    last = self.save_checkpoint() or last
                    if main and not final:  # the final figures follow the loop
                        samples.figures()
                if stopping:
                    self._share_batchnorm_statistics()
                    self.save_checkpoint()
                    if main:
                        samples.figures()
                    raise stop.interrupted(self.step, self.total_steps, self.out)
            self._share_batchnorm_statistics()
        if main:
            samples.figures()
            last = last or folder.list_checkpoints()[-1]
        return TrainResult(self.out, self.step, last)


def classes_to_draw(config: TrainConfig, data: ImageData) -> tuple[str, ...]:
    """The class names a run with `config` draws on `data` (label i is the i-th); () unless `config.conditional`.

    Raises:
        DataError: a conditional run on data without labels, or with fewer than two classes.
    """
    if not config.conditional:
        return ()
    if data.labels is None:
        raise DataError(
            f"--conditional needs labelled images and --data {config.data} has no labels: use a labelled set "
            "(mnist, fashion-mnist, cifar10, svhn, imagenet), a folder with one subfolder per class, or "
            "--labels-from-name gender|race|age for UTKFace-style file names."
        )
    count = data.num_classes or 0
    if count < 2:
        raise DataError(f"--conditional needs at least two classes and --data {config.data} has {count}.")
    return data.class_names


def class_shares(data: ImageData, classes: tuple[str, ...]) -> tuple[float, ...] | None:
    """Each class's share among the training images (share i for label i), which a conditional G keeps so that
    samples meant to stand for the whole data set come in the data's mix of classes; None when unconditional."""
    if not classes or data.labels is None:
        return None
    counts = torch.bincount(data.labels[data.labels >= 0], minlength=len(classes))[: len(classes)].double()
    return tuple((counts / counts.sum()).tolist())


def _check_classes(state: dict[str, Any], classes: tuple[str, ...], config: TrainConfig) -> None:
    """A resumed conditional run must go on with as many classes as its models were built for."""
    saved = int(state.get("num_classes", 0))
    if saved and saved != len(classes):
        raise CheckpointError(
            f"The checkpoint's models draw {saved} classes but --data {config.data} has {len(classes)}; resume on "
            "the data the run was trained on, or start a new --out."
        )


@contextlib.contextmanager
def _gemm_conv(enabled: bool, *, then: bool) -> Iterator[None]:
    """`dcgan.gemm_conv` set to `enabled` for the block, and to `then` after it, however it ends."""
    use_gemm_conv(enabled)
    try:
        yield
    finally:
        use_gemm_conv(then)


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    data: ImageData | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    ddp_timeout: float | None = None,
) -> TrainResult:
    """Train a DCGAN as `config` describes, writing the run folder `out`; returns where it ended.

    To continue a run with only some settings changed, as `dcgan train --out DIR --resume --steps N` does, give
    the run's saved config with those changes: `train(dcgan.resume_config(DIR, steps=N), DIR, resume=True)`.

    Args:
        config: the run's settings (see `dcgan.build_config` for presets, `dcgan.resume_config` for a resume).
        out: the run folder; it must not hold a run unless `resume` is true.
        resume: continue from the newest checkpoint in `out` (`config.steps` is the run's total); the
            checkpoint's model must match `config`'s.
        data: images to train on instead of loading `config.data`.
        device: "cpu", "cuda" or a torch.device; defaults to the GPU when there is one.
        progress: show a progress bar.
        ddp_timeout: under torchrun, seconds a rank waits for the others before it stops with `PeersLost`
            (default torch's 30 minutes); keep it above the longest pause of rank 0 alone (samples, evaluation).
    """
    with distributed.peers_answer(ddp_timeout, out):
        trainer = Trainer(
            config, out, resume=resume, data=data, device=device, progress=progress, ddp_timeout=ddp_timeout
        )
        finished = False
        try:
            result = trainer.fit()
            finished = True
            return result
        finally:
            distributed.teardown(trainer.dist, finished=finished)


__all__ = [
    "COLLAPSE_THRESHOLD",
    "DryRunReport",
    "Interrupted",
    "NumericalFault",
    "TrainResult",
    "Trainer",
    "class_shares",
    "classes_to_draw",
    "dry_run",
    "keep_freed_memory",
    "resolve_precision",
    "step_counts",
    "train",
]
