"""Learning-rate and margin schedules: pure functions of the optimiser step.

:class:`LRSchedule` is a callable ``step -> learning rate`` used as the ``lr_lambda`` of a
:class:`torch.optim.lr_scheduler.LambdaLR` over an optimiser whose base learning rate is 1.0, so
the factor *is* the learning rate (as in the original project's trainer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("one_cycle", "cosine")


@dataclass(frozen=True)
class LRSchedule:
    """Linear warm-up then decay, as a function of the optimiser step.

    ``one_cycle`` is the original trainer's schedule: linear from ``start_lr`` to ``max_lr`` over
    the first ``warmup_pct`` of ``total_steps``, then linear down to ``end_lr`` at
    ``total_steps``. ``cosine`` has the same warm-up followed by a cosine decay to ``end_lr``.
    Past ``total_steps`` the rate stays at ``end_lr``.

    Attributes:
        kind: "one_cycle" or "cosine".
        start_lr: learning rate at step 0.
        max_lr: peak learning rate, reached at the end of the warm-up.
        end_lr: learning rate at ``total_steps``.
        warmup_pct: fraction of ``total_steps`` spent warming up, in [0, 1).
        total_steps: length of the schedule in optimiser steps (>= 1).

    Raises:
        ValueError: unknown ``kind``, ``warmup_pct`` outside [0, 1) or ``total_steps`` < 1.
    """

    kind: str
    start_lr: float
    max_lr: float
    end_lr: float
    warmup_pct: float
    total_steps: int

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; valid: {list(SCHEDULES)}")
        if not 0.0 <= self.warmup_pct < 1.0:
            raise ValueError(f"warmup_pct must be in [0, 1), got {self.warmup_pct}")
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")

    def __call__(self, step: int) -> float:
        """Learning rate at optimiser step ``step`` (0-based)."""
        warmup = int(self.warmup_pct * self.total_steps)
        if step < warmup:
            return self.start_lr + (self.max_lr - self.start_lr) * step / warmup
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        if self.kind == "one_cycle":
            return self.max_lr + (self.end_lr - self.max_lr) * progress
        return self.end_lr + 0.5 * (self.max_lr - self.end_lr) * (
            1.0 + math.cos(math.pi * progress)
        )


def margin_at(step: int, margin: float, warmup_pct: float, total_steps: int) -> float:
    """AAM margin at ``step``: ramped linearly from 0 to ``margin`` over ``warmup_pct`` of training.

    ``warmup_pct == 0`` gives the full margin from the first step.
    """
    warmup = warmup_pct * total_steps
    if warmup <= 0:
        return margin
    return margin * min(1.0, step / warmup)
