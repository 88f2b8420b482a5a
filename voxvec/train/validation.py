"""Validation during training: EER and GE2E loss on a fixed set of held-out speakers' files.

Every ``interval`` steps, rank 0 embeds the fixed validation set of
:mod:`voxvec.data.validation` (a seeded choice of ``n_speakers`` x ``n_utterances`` files of
``csv``, each cut to its centre ``max_s`` seconds, one pass of the model per file, so it is cheap
and comparable across runs) and computes the EER over all pairs of them and, when the objective
has a GE2E term, the GE2E loss over the speakers with all ``n_utterances`` files.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from voxvec.data.manifest import read_manifest
from voxvec.data.validation import ValidationSet, load_validation, select_validation
from voxvec.eval.metrics import eer
from voxvec.losses.combined import SpeakerLoss
from voxvec.models.base import SpeakerEncoder
from voxvec.runtime import embed_waveforms
from voxvec.train.step import TrainStep


@dataclass(frozen=True)
class ValidationConfig:
    """Validation during training (rank 0 only).

    Attributes:
        csv: validation manifest with speakers disjoint from training; null disables
            validation.
        interval: steps between validations (loss and EER on csv).
        n_speakers: validation speakers used (a fixed seeded choice).
        n_utterances: validation utterances per speaker (a fixed seeded choice); a speaker with
            a single file has it cut into up to n_utterances segments of max_s / 2 seconds, so
            that it gives target trials too.
        max_s: validation utterances are cut to their centre max_s seconds before embedding.

    Raises:
        ValueError: a count, interval or length below its minimum.
    """

    csv: str | None = None
    interval: int = 1000
    n_speakers: int = 40
    n_utterances: int = 6
    max_s: float = 8.0

    def __post_init__(self) -> None:
        for name in ("interval", "n_speakers", "n_utterances"):
            if getattr(self, name) < 1:
                raise ValueError(f"validation.{name} must be >= 1, got {getattr(self, name)}")
        if not self.max_s > 0:
            raise ValueError(f"validation.max_s must be > 0 seconds, got {self.max_s}")


@dataclass(frozen=True)
class ValidationResult:
    """One validation.

    Attributes:
        values: tensorboard scalars (``validation/eer``, ``validation/ge2e_loss`` as defined).
        embeddings: ``(n_files, D)`` float32 CPU.
        labels: ``(n_files,)`` speaker index per file.
        names: speaker id per file.
    """

    values: dict[str, float]
    embeddings: Tensor
    labels: np.ndarray
    names: list[str]


class Validator:
    """Validation of one run; the files are chosen and decoded on first use, then kept.

    Args:
        config: the validation section (``csv`` set).
        seed: the run's seed (fixes the choice of files).
        cache_dir: the decoded-audio cache, or None.
        train_speakers: the training speaker ids (overlap is warned about).
    """

    def __init__(
        self,
        config: ValidationConfig,
        seed: int,
        cache_dir: str | None = None,
        train_speakers: Collection[str] = (),
    ) -> None:
        if not config.csv:
            raise ValueError("validation.csv is not set: there is nothing to validate on")
        self.config = config
        self.seed = seed
        self.cache_dir = cache_dir
        self.train_speakers = train_speakers
        self._data: ValidationSet | None = None

    def data(self, model: SpeakerEncoder) -> ValidationSet:
        """The fixed validation files, decoded at ``model``'s sample rate (once)."""
        if self._data is None:
            cfg = self.config
            assert cfg.csv
            items = select_validation(
                read_manifest(cfg.csv), cfg.n_speakers, cfg.n_utterances, self.seed
            )
            self._data = load_validation(
                items,
                model.sample_rate,
                max_s=cfg.max_s,
                n_segments=cfg.n_utterances,
                min_samples=model.min_samples,
                cache_dir=Path(self.cache_dir) if self.cache_dir else None,
                train_speakers=self.train_speakers,
            )
        return self._data

    def embed(self, step: TrainStep, batch_size: int) -> Tensor:
        """Embeddings ``(n_files, D)`` (CPU, float32) of the validation files.

        Embeds with :func:`voxvec.runtime.embed_waveforms` at the run's precision (float16 runs
        validate in float32, which the primitive offers instead).

        Args:
            step: the model (on its device) and the run's precision; put it in eval mode.
            batch_size: files per forward pass.
        """
        precision = "bfloat16" if step.precision == "bfloat16" else "float32"
        waves = self.data(step.model).waves
        return embed_waveforms(step.model, waves, batch_size=batch_size, precision=precision)

    def run(self, step: TrainStep, batch_size: int) -> ValidationResult:
        """Embed the validation files and score them (see the module docstring).

        Args:
            step: the model and loss; it is put in eval mode and back in train mode after.
            batch_size: files per forward pass.

        Returns:
            The :class:`ValidationResult`.
        """
        step.eval()
        try:
            emb = self.embed(step, batch_size)
        finally:
            step.train()
        data = self.data(step.model)
        labels = data.labels
        values: dict[str, float] = {}
        scores = (emb @ emb.T).numpy()
        upper = np.triu_indices(len(labels), k=1)
        targets = labels[upper[0]] == labels[upper[1]]
        if targets.any() and not targets.all():
            values["validation/eer"] = eer(scores[upper], targets)[0]
        ge2e = self._ge2e(step.loss, emb, labels)
        if ge2e is not None:
            values["validation/ge2e_loss"] = ge2e
        return ValidationResult(values, emb, labels, data.names)

    def _ge2e(self, loss: SpeakerLoss, emb: Tensor, labels: np.ndarray) -> float | None:
        """GE2E loss over the speakers with all ``n_utterances`` files (None without GE2E)."""
        m = self.config.n_utterances
        full = np.flatnonzero(np.bincount(labels) == m)
        if loss.ge2e is None or len(full) < 2:
            return None
        grouped = torch.cat([emb[labels == k] for k in full]).view(len(full), m, -1)  # (N, M, D)
        device = loss.ge2e.w_raw.device
        with torch.no_grad():
            return float(loss.ge2e(grouped.to(device)))
