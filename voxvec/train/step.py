"""One optimisation step: precision, the model + loss module, AdamW and its schedule.

:class:`TrainStep` wraps the encoder and the :class:`~voxvec.losses.combined.SpeakerLoss` into
one module, so DistributedDataParallel synchronises the gradients of both. It calls the model on
the waveform batch (the model runs its own front-end, in float32) under autocast at the run's
precision; the loss is always computed in float32.

Precision vocabulary: inference's (:data:`voxvec.runtime.PRECISIONS`: ``"auto"``, ``"float32"``,
``"bfloat16"``), plus ``"float16"`` for training (autocast with a gradient scaler, CUDA only).
``"auto"`` is bfloat16 where the device computes it natively, float32 elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from voxvec.losses.combined import SpeakerLoss
from voxvec.models.base import SpeakerEncoder
from voxvec.runtime import PRECISIONS as RUNTIME_PRECISIONS
from voxvec.runtime import resolve_precision as resolve_runtime_precision
from voxvec.train.schedule import SCHEDULES, LRSchedule

PRECISIONS = (*RUNTIME_PRECISIONS, "float16")
_AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run on ``device`` trains in.

    Args:
        precision: one of :data:`PRECISIONS`.
        device: the training device.

    Returns:
        ``"float32"``, ``"bfloat16"`` or ``"float16"`` (``"auto"`` resolved).

    Raises:
        ValueError: an unknown precision, or float16 on a device other than CUDA.
    """
    if precision != "float16":
        return resolve_runtime_precision(precision, device)
    if device.type != "cuda":
        raise ValueError(
            f"precision=float16 needs a CUDA device, not {device}; use auto, bfloat16 or float32"
        )
    return precision


class TrainStep(nn.Module):
    """Model + loss as one module, so DDP synchronises the gradients of both.

    Args:
        model: the encoder.
        loss: the objective.
        precision: the resolved precision (see :func:`resolve_precision`).
    """

    def __init__(self, model: SpeakerEncoder, loss: SpeakerLoss, precision: str) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.precision = precision
        self.autocast_dtype = _AUTOCAST_DTYPES[precision]

    def forward(
        self,
        wav: Tensor,
        lengths: Tensor,
        labels: Tensor,
        n_speakers: int,
        teacher: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss of a speaker-major waveform batch.

        Args:
            wav: ``(N * M, T)`` float32 at the model's sample rate.
            lengths: ``(N * M,)`` samples.
            labels: ``(N * M,)`` speaker labels.
            n_speakers: N.
            teacher: ``(N * M, D_t)`` the teacher's embeddings of the batch (distillation).

        Returns:
            As :meth:`SpeakerLoss.forward`.
        """
        with torch.autocast(
            device_type=wav.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            embeddings = self.model(wav, lengths)  # (N*M, D); the front-end runs in float32
        return self.loss(embeddings.float(), labels, n_speakers, teacher)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and its learning-rate schedule.

    Attributes:
        max_steps: optimiser steps to train for; null = n_epochs passes over the sampler.
        n_epochs: passes over the training data when max_steps is null.
        schedule: learning-rate schedule, one_cycle (linear up then linear down, the
            original's) or cosine (linear up then cosine down).
        start_lr: learning rate at step 0.
        max_lr: peak learning rate, reached after warmup_pct of training.
        end_lr: learning rate at the last step.
        warmup_pct: fraction of training spent warming up, in [0, 1).
        betas: AdamW betas.
        weight_decay: AdamW decoupled weight decay (on weight matrices; never on biases, norms,
            GE2E w/b).
        grad_clip: clip the gradient norm of the model (and, apart, of the loss) to this.

    Raises:
        ValueError: an unknown schedule, or a step count, warm-up or clip out of range.
    """

    max_steps: int | None = None
    n_epochs: int = 50
    schedule: str = "one_cycle"
    start_lr: float = 1e-6
    max_lr: float = 5e-5
    end_lr: float = 3e-7
    warmup_pct: float = 0.15
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.01
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        checks = [
            (
                self.schedule in SCHEDULES,
                f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}",
            ),
            (
                self.max_steps is None or self.max_steps >= 1,
                f"max_steps must be >= 1 or null, got {self.max_steps}",
            ),
            (self.n_epochs >= 1, f"n_epochs must be >= 1, got {self.n_epochs}"),
            (0 <= self.warmup_pct < 1, f"warmup_pct must be in [0, 1), got {self.warmup_pct}"),
            (self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"optim.{message}")


def param_groups(*modules: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices and kernels; none on biases, norms, scalars.

    Args:
        modules: the modules whose trainable parameters are optimised.
        weight_decay: the decay of the first group.

    Returns:
        Two parameter groups, ``[decayed, not decayed]``.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    config: OptimConfig, total_steps: int, *modules: nn.Module
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``modules`` and its schedule (the schedule's factor is the learning rate).

    Args:
        config: the optim section.
        total_steps: the run's length in optimiser steps.
        modules: what to optimise (the model and the loss).

    Returns:
        ``(optimizer, scheduler)``; call ``scheduler.step()`` after every optimiser step.
    """
    optimizer = torch.optim.AdamW(
        param_groups(*modules, weight_decay=config.weight_decay),
        lr=1.0,  # the schedule's factor is the learning rate
        betas=config.betas,
    )
    schedule = LRSchedule(
        config.schedule,
        config.start_lr,
        config.max_lr,
        config.end_lr,
        config.warmup_pct,
        total_steps,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
