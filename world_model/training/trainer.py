"""The training loop shared by the world models: a task says what to train, ``train`` does the rest.

A ``TrainTask`` supplies the model, the per-epoch training batches (already sharded by rank), the loss and
the validation metrics. ``train`` owns everything a model author should not re-implement: AdamW with
decoupled weight decay on matrices only, a per-step warmup + cosine schedule, gradient clipping, mixed
precision, DistributedDataParallel under ``torchrun``, early stopping, checkpoints that resume exactly, and
TensorBoard logging.

Exact resumption rests on three things: the checkpoint holds every rank's RNG states at the end of the
epoch, the schedule's shape lives in the scheduler's state_dict (``WarmupCosine`` is an object, not a
closure), and the task's ``train_loader`` is a pure function of (its seed, epoch, rank, world size).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from world_model.errors import RetailSimError
from world_model.training.checkpoint import (
    BEST,
    FORMAT,
    LAST,
    TRAIN_STATE,
    capture_rng_state,
    copy_checkpoint,
    epoch_name,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    write_json,
)
from world_model.training.config import TrainConfig
from world_model.training.distributed import DistributedContext, distributed_session

TENSORBOARD = "tensorboard"
log = logging.getLogger("retailsim.training")  # under the CLI's "retailsim" handler: one line

# Config fields that change how a run is shown or where it runs, not what it computes: resuming with other
# values is fine.
_NEUTRAL_FIELDS = frozenset({"progress", "log_every", "num_workers", "device"})


class TrainTask(Protocol):
    """What ``train`` needs from a model. ``model_config() -> dict`` is optional: when a task has it, its
    result is stored in every checkpoint, so the model can be rebuilt without the task."""

    monitor: str
    """Key of ``validate()``'s dict that selects ``best.pt`` and drives early stopping."""
    monitor_mode: str
    """ "max" (accuracy-like) or "min" (loss-like)."""

    def build_model(self) -> nn.Module:
        """A fresh model; called after seeding, so its initialisation is reproducible."""

    def train_loader(self, epoch: int, rank: int, world_size: int) -> Iterable[dict[str, Tensor]]:
        """The batches of ``epoch`` for ``rank``: deterministic for (the task's seed, epoch), each rank a
        disjoint shard with the same number of batches (DDP steps all ranks together). Must have ``len``
        unless ``TrainConfig.max_steps_per_epoch`` is set."""

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss to minimise and extra scalars to log (floats or 0-d tensors). ``batch`` is on the
        device already. ``model`` may be DDP-wrapped: call ``model(...)``, not methods of the inner module,
        or gradients are not synchronised."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics; called on rank 0 only, with the unwrapped model in eval mode, under
        ``torch.no_grad()`` and the training autocast."""

    def batch_size_of(self, batch: dict[str, Tensor]) -> int:
        """Samples in a batch, for samples/s."""


class WarmupCosine:
    """LR multiplier of optimizer step ``step``: linear warmup to 1 over ``warmup_steps``, then a cosine to
    ``min_lr_ratio`` at ``total_steps`` (and flat after). An object rather than a closure because LambdaLR
    saves an object's fields in its state_dict: a resumed run keeps the schedule it started with."""

    def __init__(self, total_steps: int, warmup_fraction: float, min_lr_ratio: float) -> None:
        self.total_steps = total_steps
        self.warmup_steps = round(warmup_fraction * total_steps)
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps  # the first step already moves: no step at LR 0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: matrices decay; biases, norm scales (every 1-d parameter) and parameters marked
    ``_no_weight_decay = True`` (Mamba's ``A_log`` and ``D``) do not."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim <= 1 or getattr(parameter, "_no_weight_decay", False)
        (no_decay if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    on_cuda = next(model.parameters()).is_cuda
    return torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr, fused=on_cuda)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``TrainConfig.amp`` on ``device``; None: full precision."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CUDA generators too


@dataclass
class _Progress:
    """Where the run stands after its last finished epoch (-1: none); saved in every checkpoint."""

    epoch: int = -1
    step: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def record(self, epoch: int, entry: dict[str, float], value: float, mode: str) -> bool:
        """Add a validated epoch; True when ``value`` improves on the best (a NaN never does)."""
        self.epoch = epoch
        self.history.append(entry)
        improved = not math.isnan(value) and (
            self.best_value is None or (value > self.best_value if mode == "max" else value < self.best_value)
        )
        if improved:
            self.best_value, self.best_epoch, self.epochs_without_improvement = value, epoch, 0
        else:
            self.epochs_without_improvement += 1
        return improved

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> _Progress:
        return cls(**{name: checkpoint[name] for name in cls.__dataclass_fields__})

    def patience_exhausted(self, patience: int) -> bool:
        return patience > 0 and self.epochs_without_improvement >= patience


def train(task: TrainTask, config: TrainConfig, out_dir: Path | str, resume: bool = False) -> dict[str, Any]:
    """Train ``task`` into ``out_dir`` (see the module and ``checkpoint`` docstrings), single-process or
    under ``torchrun``. With ``resume``, continue from ``out_dir/last.pt`` exactly as if never stopped.

    Returns a summary (identical on every rank): ``epochs_run`` (finished epochs, resumed ones included),
    ``steps``, ``best_epoch``, ``best_value``, ``monitor``, ``history`` (per epoch: ``epoch``,
    ``train_loss`` and the validation metrics), ``samples_per_s`` (training throughput of all ranks in this
    call) and ``stopped_early``."""
    if task.monitor_mode not in ("max", "min"):
        raise ValueError(f"task.monitor_mode must be 'max' or 'min', got {task.monitor_mode!r}")
    with distributed_session(config.device) as context:
        return _Run(task, config, Path(out_dir), context, resume).run()


def _differences(was: dict, now: dict) -> list[tuple[str, Any, Any]]:
    """(key, was, now) of every key whose value differs, nested dicts compared key by key (``a.b``)."""
    out = []
    for key in sorted(was.keys() | now.keys()):
        old, new = was.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            out += [(f"{key}.{inner}", a, b) for inner, a, b in _differences(old, new)]
        elif old != new:
            out.append((key, old, new))
    return out


class _Run:
    """One call of ``train``: the model, optimizer and bookkeeping, set up from scratch or a checkpoint."""

    def __init__(self, task: TrainTask, config: TrainConfig, out_dir: Path, context: DistributedContext,
                 resume: bool) -> None:  # fmt: skip
        self.task, self.config, self.out_dir, self.context = task, config, out_dir, context
        checkpoint = self._checkpoint_to_resume(resume)
        device, rank = context.device, context.rank

        seed_everything(config.seed)
        self.raw_model = task.build_model().to(device)
        self.optimizer = build_optimizer(self.raw_model, config)
        self.amp_dtype = autocast_dtype(config.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        if checkpoint is None:
            self.progress = _Progress()
            seed_everything(config.seed + rank)
        else:
            try:
                self.raw_model.load_state_dict(checkpoint["model"])
            except RuntimeError as error:  # e.g. a checkpoint without model_config, of another model
                first = str(error).strip().splitlines()[0]
                raise RetailSimError(f"{self.out_dir / LAST}: its weights do not fit this model ({first})") from None
            self.progress = _Progress.from_checkpoint(checkpoint)
            best = self.out_dir / epoch_name(self.progress.best_epoch) if self.progress.best_epoch is not None else None
            if context.is_main and best is not None and best.exists():
                copy_checkpoint(best, self.out_dir / BEST)  # a kill between best.pt's and last.pt's copies
            states = checkpoint["rng"]  # one per rank; a job resumed on more ranks seeds the new ones
            if rank < len(states):
                restore_rng_state(states[rank])
            else:
                seed_everything(config.seed + rank)

        # built after the RNG is set, since a loader may draw from it; the schedule needs its length
        self.first_loader = task.train_loader(self.progress.epoch + 1, rank, context.world_size)
        total_steps = config.epochs * _steps_in(self.first_loader, config)
        schedule = WarmupCosine(total_steps, config.warmup_fraction, config.min_lr_ratio)
        self.scheduler = LambdaLR(self.optimizer, schedule)
        if checkpoint is not None:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
            if checkpoint["scaler"]:  # empty when the run had no float16 scaler: a new one starts afresh
                self.scaler.load_state_dict(checkpoint["scaler"])

        self.model: nn.Module = self.raw_model
        if context.world_size > 1:
            device_ids = [device.index] if device.type == "cuda" else None
            self.model = DistributedDataParallel(self.raw_model, device_ids=device_ids)
        self.writer = None
        if context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            purge_step = self.progress.step if checkpoint is not None else None  # drop a killed epoch's scalars
            self.writer = SummaryWriter(str(self.out_dir / TENSORBOARD), purge_step=purge_step)
        self.train_samples, self.train_seconds = 0, 0.0

    def _checkpoint_to_resume(self, resume: bool) -> dict[str, Any] | None:
        last = self.out_dir / LAST
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise RetailSimError(f"{self.out_dir}: exists and is not a directory")
        if not resume:
            if last.exists():
                raise RetailSimError(f"{self.out_dir}: holds a training run ({LAST}); resume it or use another directory")
            held = {p.name for p in self.out_dir.iterdir()} if self.out_dir.is_dir() else set()
            if held == {TENSORBOARD}:  # a run stopped in its first epoch: nothing to resume, its curves restart
                if self.context.is_main:
                    shutil.rmtree(self.out_dir / TENSORBOARD)
            elif held:  # other files: the run's best.pt and epoch files would land among (or over) them
                raise RetailSimError(f"{self.out_dir}: not empty and no training run to resume (no {LAST}); remove "
                                     "its files or use another directory")  # fmt: skip
            return None
        if not last.exists():
            raise RetailSimError(f"{last}: missing; nothing to resume (start the run without resume)")
        checkpoint = load_checkpoint(last)
        changed = sorted(key for key, value in checkpoint["config"].items()
                         if key not in _NEUTRAL_FIELDS and getattr(self.config, key, value) != value)  # fmt: skip
        changed += self._changed_model(last, checkpoint.get("model_config"))
        if changed:
            log.warning(f"{last}: resumed with changed {', '.join(changed)}; the result will differ from an uninterrupted run")
        trained_on = len(checkpoint["rng"])  # one RNG state per process
        if trained_on != self.context.world_size:
            log.warning(f"{last}: trained on {trained_on} process(es), resumed on {self.context.world_size}: an epoch's "
                        "steps change, and the learning-rate schedule keeps the length it was given at the start")  # fmt: skip
        return checkpoint

    def _changed_model(self, last: Path, saved: dict | None) -> list[str]:
        """The task options (``model_config()["task"]``) that differ from the checkpoint's; RetailSimError
        when the rest of ``model_config()`` (the model: its kind and config) does: the weights would be
        trained on as another model (the two context layouts have the same parameters) or fail to load."""
        current = self.task.model_config() if callable(getattr(self.task, "model_config", None)) else None
        if saved is None or current is None:
            return []
        current = json.loads(json.dumps(current))  # tuples as lists, as the checkpoint holds them
        model = _differences({k: v for k, v in saved.items() if k != "task"}, {k: v for k, v in current.items() if k != "task"})
        if model:
            detail = ", ".join(f"{key} {was!r} -> {now!r}" for key, was, now in model)
            raise RetailSimError(f"{last}: trained as another model ({detail}); resume with the options it was "
                                 "trained with, or start a new run in another directory")  # fmt: skip
        return [key for key, _, _ in _differences(saved.get("task", {}), current.get("task", {}))]

    def run(self) -> dict[str, Any]:
        # drop each loader after its epoch: a DataLoader with persistent workers keeps them while referenced
        loader, self.first_loader = self.first_loader, None
        try:
            for epoch in range(self.progress.epoch + 1, self.config.epochs):
                if self.progress.patience_exhausted(self.config.patience):
                    break
                if loader is None:
                    loader = self.task.train_loader(epoch, self.context.rank, self.context.world_size)
                self._epoch(epoch, loader)
                loader = None
        finally:
            if self.writer is not None:
                self.writer.close()
        return self._summary()

    def _epoch(self, epoch: int, loader: Iterable[dict[str, Tensor]]) -> None:
        started = time.perf_counter()
        train_loss = self._train_epoch(epoch, loader)
        if not math.isfinite(train_loss) and self._weights_diverged():  # the same on every rank: all stop here
            raise RetailSimError(f"epoch {epoch}: the training loss is {train_loss} (the run diverged; this epoch "
                                 "is not saved): lower --lr, or try --amp off")  # fmt: skip
        metrics = self.context.broadcast_object(self._validate())
        if self.task.monitor not in metrics:
            raise ValueError(f"validate() returned {sorted(metrics)}; the task's monitor {self.task.monitor!r} is not among them")
        improved = self.progress.record(epoch, {"epoch": epoch, "train_loss": train_loss, **metrics},
                                        metrics[self.task.monitor], self.task.monitor_mode)  # fmt: skip
        seconds = time.perf_counter() - started
        rng_states = self.context.all_gather_object(capture_rng_state())  # also: every rank is done with the epoch
        if self.context.is_main:
            for key, value in metrics.items():
                self.writer.add_scalar(f"val/{key}", value, self.progress.step)
            self.writer.add_scalar("epoch/seconds", seconds, self.progress.step)
            self.writer.flush()
            self._write_checkpoints(epoch, improved, rng_states)
        self.context.barrier()  # no rank goes on (or exits) before the checkpoint is on disk

    def _weights_diverged(self) -> bool:
        """Under float16 a step whose loss overflowed is skipped by the gradient scaler, so a non-finite
        epoch loss means divergence only when the weights are non-finite too; otherwise it always does."""
        if self.amp_dtype != torch.float16:
            return True
        return not all(bool(torch.isfinite(p).all()) for p in self.raw_model.parameters())

    def _train_epoch(self, epoch: int, loader: Iterable[dict[str, Tensor]]) -> float:
        """Train one epoch; returns the mean loss over all ranks' steps."""
        config, context, device = self.config, self.context, self.context.device
        steps = _steps_in(loader, config)
        counts = context.all_gather_object(steps)
        if len(set(counts)) > 1:
            raise RuntimeError(f"epoch {epoch}: ranks' train_loader shards have {counts} batches; DDP needs equal counts")
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # on the device: no sync per step
        taken = samples = window_samples = 0
        started = window_started = time.perf_counter()
        bar = tqdm(total=steps, desc=f"epoch {epoch}", unit="step", disable=not (config.progress and context.is_main))
        with bar:
            for batch in islice(loader, steps):
                batch = {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
                size = self.task.batch_size_of(batch)
                loss, extras, grad_norm, lr = self._step(batch)
                loss_sum += loss.detach()
                taken, samples, window_samples = taken + 1, samples + size, window_samples + size
                self.progress.step += 1
                bar.update()
                if self.writer is not None and config.log_every > 0 and self.progress.step % config.log_every == 0:
                    now = time.perf_counter()
                    rate = window_samples * context.world_size / max(now - window_started, 1e-9)
                    loss_value = loss.item()
                    self._log_step(loss_value, extras, grad_norm, lr, rate)
                    bar.set_postfix(loss=f"{loss_value:.4f}", samples_per_s=f"{rate:.0f}")
                    window_samples, window_started = 0, now
            totals = context.all_gather_object((taken, samples, loss_sum.item()))
            mean_loss = sum(t[2] for t in totals) / max(1, sum(t[0] for t in totals))
            bar.set_postfix(loss=f"{mean_loss:.4f}")
        self.train_samples += sum(t[1] for t in totals)
        self.train_seconds += time.perf_counter() - started
        return mean_loss

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.context.device.type, dtype=self.amp_dtype)

    def _step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any], Tensor, float]:
        """One optimizer step; returns the loss, the task's extras, the gradient norm before clipping and the
        learning rate the step used."""
        with self._autocast():
            loss, extras = self.task.loss(self.model, batch)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the fp16-scaled ones
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.raw_model.parameters(), max_norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss, extras, grad_norm, lr

    def _log_step(self, loss: float, extras: dict[str, Any], grad_norm: Tensor, lr: float, rate: float) -> None:
        """Train scalars (rank 0); the samples/s of all ranks assumes equal shards."""
        step = self.progress.step
        self.writer.add_scalar("train/loss", loss, step)
        for name, value in extras.items():
            self.writer.add_scalar(f"train/{name}", float(value), step)
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("train/grad_norm", grad_norm.item(), step)
        self.writer.add_scalar("train/samples_per_s", rate, step)

    def _validate(self) -> dict[str, float] | None:
        if not self.context.is_main:
            return None
        self.raw_model.eval()
        with torch.no_grad(), self._autocast():
            metrics = self.task.validate(self.raw_model)
        return {key: float(value) for key, value in metrics.items()}

    def _write_checkpoints(self, epoch: int, improved: bool, rng_states: list[dict[str, Any]]) -> None:
        progress = self.progress
        checkpoint = {
            "format": FORMAT,
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "step": progress.step,
            "best_value": progress.best_value,
            "best_epoch": progress.best_epoch,
            "epochs_without_improvement": progress.epochs_without_improvement,
            "history": progress.history,
            "rng": rng_states,
            "config": self.config.to_dict(),
            "monitor": self.task.monitor,
            "monitor_mode": self.task.monitor_mode,
        }
        model_config = getattr(self.task, "model_config", None)
        if callable(model_config):
            checkpoint["model_config"] = model_config()
        epoch_path = self.out_dir / epoch_name(epoch)
        save_checkpoint(epoch_path, checkpoint)
        if improved:
            copy_checkpoint(epoch_path, self.out_dir / BEST)
        copy_checkpoint(epoch_path, self.out_dir / LAST)
        state = {"epoch": epoch, "step": progress.step, "monitor": self.task.monitor, "best_value": progress.best_value,
                 "best_epoch": progress.best_epoch, "epochs_without_improvement": progress.epochs_without_improvement,
                 "history": progress.history}  # fmt: skip
        write_json(self.out_dir / TRAIN_STATE, state)

    def _summary(self) -> dict[str, Any]:
        progress = self.progress
        return {
            "epochs_run": progress.epoch + 1,
            "steps": progress.step,
            "best_epoch": progress.best_epoch,
            "best_value": progress.best_value,
            "monitor": self.task.monitor,
            "history": progress.history,
            "samples_per_s": self.train_samples / self.train_seconds if self.train_seconds else 0.0,
            "stopped_early": progress.epoch + 1 < self.config.epochs,
        }


def _steps_in(loader: Iterable[Any], config: TrainConfig) -> int:
    """Optimizer steps an epoch of ``loader`` takes: its length, capped by ``max_steps_per_epoch``."""
    cap = config.max_steps_per_epoch
    try:
        steps = len(loader)  # type: ignore[arg-type]
    except TypeError:
        if cap is None:
            raise TypeError("train_loader() returned an iterable without len(); set TrainConfig.max_steps_per_epoch") from None
        return cap
    if steps == 0:
        raise ValueError("train_loader() returned no batches: fewer training targets than one batch (under "
                         "DDP every rank takes whole global batches of batch_size x world_size)?")  # fmt: skip
    return steps if cap is None else min(steps, cap)
