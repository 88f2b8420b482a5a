"""A fixed bank of training crops: the same crop every epoch, so a teacher embeds each one once.

Plain training (:class:`voxvec.data.collate.CropCollate`) draws new random crops every batch.
Distillation needs the teacher's embedding of the very crop the student sees, and a teacher such
as CAM++ runs at only 60-90x real time on a 2-core CPU: embedding every random crop of a 10,000
step run (hundreds of hours of audio) would take days. A :class:`CropBank` instead fixes, once,
a set of crops of every file (and of every speed copy of it,
:class:`voxvec.data.speed.SpeedSpeakerDataset`), so the teacher embeds the bank once
(:mod:`voxvec.train.distill`) and every epoch reuses it; the identity-preserving augmentation
(noise, reverb, babble, gain, SpecAugment) still differs at every visit.

The plan: an item of ``T`` samples at most ``max_samples`` long is one crop, the whole item (as
:class:`~voxvec.data.collate.CropCollate` keeps a short item whole); a longer item gets
``max(1, round(coverage * T / mean_crop))`` crops, each of a length drawn uniformly in
``[min_samples, max_samples]`` at a start drawn uniformly over the item, from a generator seeded
by ``(seed, item index)``. So the bank depends only on the data, the lengths and the seed, and a
resumed run rebuilds the same bank.

Bank entry ``k`` reads item ``entries[k].item`` of the underlying dataset (decoded whole, speed
perturbed when it is a speed copy) and cuts ``[start, start + length)``: the student's loader and
the teacher's pass read it through the same :meth:`CropBank.__getitem__`, so both see the same
samples by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset

from voxvec.data.dataset import UtteranceDataset, derive_seed
from voxvec.data.speed import SpeedSpeakerDataset

# Salt separating the bank's random stream from every other stream seeded by the run's seed.
_BANK_STREAM = 0xBA


class Crop(NamedTuple):
    """One bank entry: ``length`` samples from ``start`` of dataset item ``item``."""

    item: int
    start: int
    length: int


def plan_crops(
    lengths: Sequence[int],
    min_samples: int,
    max_samples: int,
    coverage: float,
    seed: int,
) -> list[Crop]:
    """The crops of every item (see the module docstring), item by item.

    Args:
        lengths: each item's length in samples (as it is read: after any speed perturbation).
        min_samples: shortest crop (>= 1).
        max_samples: longest crop (>= ``min_samples``).
        coverage: how many crops cover each sample of a long item, on average (> 0).
        seed: base seed (>= 0).

    Returns:
        The crops, those of item 0 first.

    Raises:
        ValueError: invalid lengths, coverage or seed.
    """
    if not 1 <= min_samples <= max_samples:
        raise ValueError(f"need 1 <= min_samples <= max_samples, got {min_samples}, {max_samples}")
    if not coverage > 0:
        raise ValueError(f"coverage must be > 0, got {coverage}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    mean_crop = (min_samples + max_samples) / 2
    crops: list[Crop] = []
    for item, total in enumerate(lengths):
        if total <= max_samples:
            crops.append(Crop(item, 0, int(total)))
            continue
        generator = torch.Generator().manual_seed(derive_seed(seed, _BANK_STREAM, item))
        for _ in range(max(1, round(coverage * total / mean_crop))):
            length = int(torch.randint(min_samples, max_samples + 1, (1,), generator=generator))
            start = int(torch.randint(0, total - length + 1, (1,), generator=generator))
            crops.append(Crop(item, start, length))
    return crops


def item_lengths(dataset: UtteranceDataset | SpeedSpeakerDataset) -> list[int]:
    """Every item's length in samples as the dataset reads it, without decoding twice.

    Reads each file once through the dataset's decoded-audio cache (which training then reuses);
    a speed copy's length is its original's divided by the factor, as
    :func:`voxvec.data.speed.speed_perturb` makes it (to within a sample: the bank clamps).
    """
    base = dataset.base if isinstance(dataset, SpeedSpeakerDataset) else dataset
    base_lengths = [len(base.decoded(i)) for i in range(len(base))]
    if not isinstance(dataset, SpeedSpeakerDataset):
        return base_lengths
    return [round(n / factor) for factor in dataset.factors for n in base_lengths]


class CropBank(Dataset[dict[str, Any]]):
    """The fixed crops of a training dataset (see the module docstring).

    Args:
        dataset: the training dataset (read whole: build its
            :class:`~voxvec.data.dataset.UtteranceDataset` without ``max_load_s``).
        min_samples: shortest crop in samples.
        max_samples: longest crop in samples.
        coverage: how many crops cover each sample of a long item, on average.
        seed: base seed of the plan.

    Attributes:
        crops: the bank's entries.
        labels: per entry, its item's speaker label.
        speakers: the dataset's speaker ids.
        sample_rate: the dataset's sample rate.

    Raises:
        ValueError: as :func:`plan_crops`.
    """

    def __init__(
        self,
        dataset: UtteranceDataset | SpeedSpeakerDataset,
        min_samples: int,
        max_samples: int,
        coverage: float,
        seed: int,
    ) -> None:
        self.dataset = dataset
        self.crops = plan_crops(item_lengths(dataset), min_samples, max_samples, coverage, seed)
        self.labels = [dataset.labels[c.item] for c in self.crops]
        self.speakers = dataset.speakers
        self.sample_rate = dataset.sample_rate

    def __len__(self) -> int:
        return len(self.crops)

    def cut(self, item: dict[str, Any], k: int) -> dict[str, Any]:
        """Entry ``k`` cut from ``item``, its dataset item (``self.dataset[crops[k].item]``)."""
        crop = self.crops[k]
        wav = item["wav"]
        start = max(0, min(crop.start, wav.shape[0] - crop.length))
        return {"wav": wav[start : start + crop.length], "speaker": self.labels[k], "index": k}

    def __getitem__(self, k: int) -> dict[str, Any]:
        """Entry ``k``: ``{"wav": (length,) float32, "speaker": label, "index": k}``."""
        return self.cut(self.dataset[self.crops[k].item], k)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A batch of entries (each item decoded whole; no random windows)."""
        items = self.dataset.__getitems__([self.crops[int(k)].item for k in indices])
        return [self.cut(item, int(k)) for item, k in zip(items, indices, strict=True)]
