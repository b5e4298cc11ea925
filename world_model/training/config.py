"""Configuration of a training run: one dataclass, stored in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass

AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass
class TrainConfig:
    """Optimisation, schedule, precision and bookkeeping of ``world_model.training.train``."""

    epochs: int = 10
    """Epochs to train at most; the LR schedule spans all of them."""
    batch_size: int = 256
    """Samples per optimizer step *per process* (the DistributedSampler convention: the global batch is
    ``batch_size * world_size``). The trainer does not build loaders, so it never reads this: the task's
    ``train_loader`` does."""
    lr: float = 1e-3
    """Peak learning rate, reached at the end of the warmup."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay, applied to matrices only (not to biases, norms, or parameters marked
    ``_no_weight_decay = True``: decaying a scale or an SSM's ``A_log`` towards 0 changes what it means)."""
    warmup_fraction: float = 0.05
    """Share of all optimizer steps with a linear warmup from ``lr / warmup_steps`` to ``lr``; a cosine decay
    to ``min_lr_ratio * lr`` follows. Adam's second-moment estimates are noisy at first, so a full step then
    can throw the model off early."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of ``lr``."""
    grad_clip: float = 1.0
    """Maximum global L2 norm of the gradients; 0 turns clipping off (the norm is still logged)."""
    amp: str = "auto"
    """Mixed precision: "auto" is bf16 autocast on CUDA and off on CPU (CPU autocast is slower for small
    models); "bf16"; "fp16" (with a GradScaler, since fp16 gradients underflow); "off"."""
    seed: int = 0
    """Seeds python, numpy and torch before the model is built (same initialisation on every rank), then
    ``seed + rank`` for training (different dropout masks per rank)."""
    patience: int = 3
    """Early stopping: stop after this many consecutive epochs without an improvement of the task's monitored
    validation metric; 0 turns early stopping off."""
    device: str = "auto"
    """ "auto": CUDA when available (GPU ``LOCAL_RANK`` under torchrun), else CPU; or a torch device string."""
    num_workers: int = 0
    """DataLoader worker processes, for the task's loaders (the trainer does not read it)."""
    progress: bool = True
    """Show a progress bar per epoch (rank 0 only)."""
    log_every: int = 50
    """Optimizer steps between TensorBoard train scalars; 0 logs none (validation is still logged)."""
    max_steps_per_epoch: int | None = None
    """Cap on optimizer steps per epoch, for smoke tests and benchmarks; None trains on every batch."""

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1], got {self.warmup_fraction}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1 or None, got {self.max_steps_per_epoch}")

    def to_dict(self) -> dict:
        return asdict(self)
