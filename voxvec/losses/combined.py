"""The training objective: GE2E, AAM-softmax or their weighted sum, from a typed config.

:class:`LossConfig` is the ``loss`` section of a training config; :class:`SpeakerLoss` builds
the loss modules it names and computes the objective of a speaker-major batch of ``N x M``
embeddings (M consecutive rows per speaker, as :class:`voxvec.data.sampler.SpeakerBatchSampler`
yields them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from voxvec.losses.distill import DistillLoss
from voxvec.losses.ge2e import GE2E_METHODS, GE2ELoss, GE2EMethod
from voxvec.losses.margin import AAMSoftmax

LOSSES = ("ge2e", "aam", "ge2e+aam")


@dataclass(frozen=True)
class GE2EConfig:
    """The GE2E term (see :class:`voxvec.losses.ge2e.GE2ELoss`).

    Attributes:
        weight: weight of the GE2E term when combined with AAM (kind ge2e+aam; 1 otherwise).
        method: GE2E variant, softmax or contrast.
        init_w: initial similarity scale w (> 0, kept positive).
        init_b: initial similarity bias b.
    """

    weight: float = 1.0
    method: str = "softmax"
    init_w: float = 10.0
    init_b: float = -5.0


@dataclass(frozen=True)
class AAMConfig:
    """The AAM-softmax term (see :class:`voxvec.losses.margin.AAMSoftmax`).

    Attributes:
        weight: weight of the AAM term when combined with GE2E (kind ge2e+aam; 1 otherwise).
        margin: additive angular margin in radians, in [0, pi/2).
        scale: logit scale s (> 0).
        subcentres: sub-centres per class (1 = plain AAM-softmax).
        margin_warmup_pct: fraction of training over which the margin ramps linearly from 0.
    """

    weight: float = 1.0
    margin: float = 0.2
    scale: float = 30.0
    subcentres: int = 1
    margin_warmup_pct: float = 0.0


@dataclass(frozen=True)
class LossConfig:
    """Which objective to train with, and its parameters.

    Attributes:
        kind: training objective, ge2e, aam or ge2e+aam (their weighted sum).
        ge2e: the GE2E term (used when kind contains ge2e).
        aam: the AAM-softmax term (used when kind contains aam).

    Raises:
        ValueError: an unknown kind or GE2E method, or margin_warmup_pct outside [0, 1].
    """

    kind: str = "ge2e"
    ge2e: GE2EConfig = field(default_factory=GE2EConfig)
    aam: AAMConfig = field(default_factory=AAMConfig)

    def __post_init__(self) -> None:
        if self.kind not in LOSSES:
            raise ValueError(f"loss.kind must be one of {list(LOSSES)}, got {self.kind!r}")
        if self.ge2e.method not in GE2E_METHODS:
            raise ValueError(
                f"loss.ge2e.method must be one of {list(GE2E_METHODS)}, got {self.ge2e.method!r}"
            )
        if not 0.0 <= self.aam.margin_warmup_pct <= 1.0:
            raise ValueError(
                f"loss.aam.margin_warmup_pct must be in [0, 1], got {self.aam.margin_warmup_pct}"
            )

    @property
    def uses_ge2e(self) -> bool:
        """Whether the objective has a GE2E term (which needs N >= 2 speakers x M >= 2)."""
        return "ge2e" in self.kind

    @property
    def uses_aam(self) -> bool:
        """Whether the objective has an AAM-softmax term."""
        return "aam" in self.kind


class SpeakerLoss(nn.Module):
    """The training objective of :class:`LossConfig`: GE2E, AAM-softmax or their weighted sum.

    Args:
        config: the loss section.
        embed_dim: D of the embeddings.
        n_classes: training speakers (the AAM classes).
        distill: a distillation term added to the objective, or None.

    Attributes:
        ge2e: the GE2E module, or None.
        aam: the AAM-softmax module, or None (its ``margin`` may be changed between steps).

    Raises:
        ValueError: parameters the loss modules refuse (a non-positive scale, ...).
    """

    def __init__(
        self,
        config: LossConfig,
        embed_dim: int,
        n_classes: int,
        distill: DistillLoss | None = None,
    ) -> None:
        super().__init__()
        self.distill = distill
        self.ge2e = (
            GE2ELoss(
                config.ge2e.init_w, config.ge2e.init_b, method=cast(GE2EMethod, config.ge2e.method)
            )
            if config.uses_ge2e
            else None
        )
        self.aam = (
            AAMSoftmax(
                embed_dim,
                n_classes,
                margin=config.aam.margin,
                scale=config.aam.scale,
                n_subcentres=config.aam.subcentres,
            )
            if config.uses_aam
            else None
        )
        both = config.uses_ge2e and config.uses_aam
        self.ge2e_weight = config.ge2e.weight if both else 1.0
        self.aam_weight = config.aam.weight if both else 1.0

    def forward(
        self, embeddings: Tensor, labels: Tensor, n_speakers: int, teacher: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss of a speaker-major batch.

        Args:
            embeddings: ``(N * M, D)``, M consecutive rows per speaker.
            labels: ``(N * M,)`` speaker labels.
            n_speakers: N.
            teacher: ``(N * M, D_t)`` the teacher's embeddings of the same crops, for the
                distillation term (required when there is one).

        Returns:
            ``(loss, parts)``: the scalar loss and detached parts for logging
            (``ge2e``, ``aam``, ``aam_accuracy``, ``distill``, ``distill_cosine``,
            ``distill_similarity`` as present).

        Raises:
            ValueError: a distillation term without ``teacher`` embeddings.
        """
        total = embeddings.new_zeros((), dtype=torch.float32)
        parts: dict[str, Tensor] = {}
        if self.ge2e is not None:
            ge2e = self.ge2e(embeddings.view(n_speakers, -1, embeddings.shape[-1]))  # (N, M, D)
            total = total + self.ge2e_weight * ge2e
            parts["ge2e"] = ge2e.detach()
        if self.aam is not None:
            aam, accuracy = self.aam(embeddings, labels)
            total = total + self.aam_weight * aam
            parts["aam"] = aam.detach()
            parts["aam_accuracy"] = accuracy.detach()
        if self.distill is not None:
            if teacher is None:
                raise ValueError("the objective has a distillation term but got no teacher")
            distill, distill_parts = self.distill(embeddings, teacher)
            total = total + distill
            parts["distill"] = distill.detach()
            parts.update(distill_parts)
        return total, parts
