"""Speed perturbation: one function, used by the augmenter and by speed-as-new-speaker data.

:func:`speed_perturb` plays a waveform ``factor`` times faster, pitch and tempo together (as
``sox speed``), by resampling it as if it had been recorded at ``factor * sample_rate``.
:class:`~voxvec.data.augment.Augmenter` applies it to random batch items (the speaker stays the
same); :class:`SpeedSpeakerDataset` adds whole speed-perturbed copies of a dataset whose speakers
count as new ones, which multiplies the classes a margin loss separates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from voxvec.audio.io import resample
from voxvec.data.dataset import UtteranceDataset


def speed_perturb(wav: Tensor, factor: float, sample_rate: int) -> Tensor:
    """``wav`` played ``factor`` times faster (pitch and tempo change together).

    Args:
        wav: ``(T,)`` float32 waveform, on any device (resampled with soxr on the CPU).
        factor: speed factor (> 0); 1.0, or a factor within rounding of 1.0 at this sample rate,
            returns ``wav`` itself.
        sample_rate: of ``wav``, in Hz.

    Returns:
        ``(round(T / factor),)`` float32 on ``wav``'s device (``wav`` itself when unchanged or
        empty).

    Raises:
        ValueError: ``factor <= 0``.
    """
    if not factor > 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    faster_sr = round(sample_rate * factor)
    if wav.shape[0] == 0 or faster_sr == sample_rate:
        return wav
    out = resample(wav.detach().cpu().numpy(), faster_sr, sample_rate)
    return torch.from_numpy(out).to(wav.device)


def check_speed_factors(factors: Sequence[float]) -> None:
    """Refuse speed-as-new-speaker factors that are not positive or equal 1 (the original).

    Raises:
        ValueError: naming the factors.
    """
    if any(not f > 0 or f == 1.0 for f in factors):
        raise ValueError(f"speed factors must be > 0 and != 1.0, got {list(factors)}")


class SpeedSpeakerDataset(Dataset[dict[str, Any]]):
    """A dataset plus speed-perturbed copies of it, each speed counted as new speakers.

    Item ``j`` is item ``j % n`` of ``base`` played ``factors[j // n]`` times faster (see
    :func:`speed_perturb`), where ``factors = (1.0, *speed_factors)``. Speaker ``s`` at speed
    ``f != 1`` becomes speaker ``"s@speed<f>"`` with its own label.

    Args:
        base: the original dataset (``labels``, ``speakers``, ``sample_rate``; items
            ``{"wav", "speaker", "index"}``).
        speed_factors: the extra speeds (> 0, != 1).

    Attributes:
        speakers: speaker ids, ``base.speakers`` first, then those of each extra speed.
        labels: per item, the index of its speaker in ``speakers``.

    Raises:
        ValueError: a factor that is not positive or equals 1.
    """

    def __init__(self, base: UtteranceDataset, speed_factors: Sequence[float]) -> None:
        check_speed_factors(speed_factors)
        self.base = base
        self.factors = (1.0, *(float(f) for f in speed_factors))
        self.sample_rate = base.sample_rate
        n_spk = len(base.speakers)
        self.speakers = list(base.speakers) + [
            f"{s}@speed{f:g}" for f in self.factors[1:] for s in base.speakers
        ]
        self.labels = [label + k * n_spk for k in range(len(self.factors)) for label in base.labels]

    def __len__(self) -> int:
        return len(self.base) * len(self.factors)

    def _perturb(self, item: dict[str, Any], j: int) -> dict[str, Any]:
        factor = self.factors[j // len(self.base)]
        wav = speed_perturb(item["wav"], factor, self.sample_rate)
        return {"wav": wav, "speaker": self.labels[j], "index": j}

    def __getitem__(self, j: int) -> dict[str, Any]:
        """Item ``j``: ``{"wav": (T,) float32, "speaker": label, "index": j}``."""
        return self._perturb(self.base[j % len(self.base)], j)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A batch of items, read through ``base.__getitems__`` (batch-seeded windows)."""
        items = self.base.__getitems__([int(j) % len(self.base) for j in indices])
        return [self._perturb(item, int(j)) for item, j in zip(items, indices, strict=True)]
