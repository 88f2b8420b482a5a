"""Batch collation with random crops: one crop length per batch, a random window per item.

:class:`CropCollate` is the DataLoader ``collate_fn`` for the items of
:class:`voxvec.data.dataset.UtteranceDataset`. Like the original project, it draws one crop
length per batch uniformly between ``min_samples`` and ``max_samples`` (so the model sees many
durations while each batch stays rectangular) and cuts a random window of that length from every
item. An item shorter than the crop is kept whole and its true length recorded in ``lengths``
(it is not looped: repeating speech would create artificial periodicity); the batch is
right-padded with zeros to its longest item.

Reproducibility: the crop length and offsets come from a generator seeded by ``(seed, the batch's
dataset indices in order)``. They therefore depend only on which items the batch holds, not on
the DataLoader worker that builds it, the number of workers or earlier batches, so a resumed run
(where :class:`voxvec.data.sampler.SpeakerBatchSampler` yields the same batches again) gets the
same crops. A file repeated within one batch (a speaker with fewer files than utterances per
speaker) gets a different crop at each position.

:class:`TrainCollate` crops with a :class:`CropCollate` and then augments the batch with an
:class:`~voxvec.data.augment.Augmenter`, seeded the same way, so a training batch (augmentation
included) is a function of its items alone: a resumed run, or one with another worker count,
sees the very same batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from voxvec.audio.windows import pad_batch, random_crop
from voxvec.data.augment import Augmenter
from voxvec.data.dataset import derive_seed

# Salt separating the augmentation's random stream from the crop stream of the same batch.
_AUGMENT_STREAM = 0xA6


class CropCollate:
    """Collate dataset items into a cropped, padded batch.

    Args:
        min_samples: shortest crop length in samples (>= 1).
        max_samples: longest crop length in samples (>= ``min_samples``).
        seed: base seed (>= 0) of the crop generator (see the module docstring).

    Raises:
        ValueError: invalid lengths or a negative seed.
    """

    def __init__(self, min_samples: int, max_samples: int, seed: int = 0) -> None:
        if not 1 <= min_samples <= max_samples:
            raise ValueError(
                f"need 1 <= min_samples <= max_samples, got {min_samples} and {max_samples}"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.min_samples = int(min_samples)
        self.max_samples = int(max_samples)
        self.seed = seed

    def __repr__(self) -> str:
        return (
            f"CropCollate(min_samples={self.min_samples}, max_samples={self.max_samples}, "
            f"seed={self.seed})"
        )

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Crop and pad a batch.

        Args:
            items: dataset items ``{"wav": (T_i,) float32, "speaker": int, "index": int}``.

        Returns:
            ``{"wav": (B, T) float32, "lengths": (B,) long, "speaker": (B,) long,
            "index": (B,) long}`` with ``T = max(lengths) <= crop length`` and zeros past each
            item's length.

        Raises:
            ValueError: an empty batch.
        """
        if len(items) == 0:
            raise ValueError("CropCollate got an empty batch")
        indices = [int(item["index"]) for item in items]
        generator = torch.Generator().manual_seed(derive_seed(self.seed, *indices))
        crop = int(torch.randint(self.min_samples, self.max_samples + 1, (1,), generator=generator))
        return _padded(items, [random_crop(item["wav"], crop, generator) for item in items])


def _padded(
    items: Sequence[dict[str, Any]], waves: Sequence[torch.Tensor]
) -> dict[str, torch.Tensor]:
    wav, lengths = pad_batch(waves)
    return {
        "wav": wav,
        "lengths": lengths,
        "speaker": torch.tensor([int(item["speaker"]) for item in items], dtype=torch.long),
        "index": torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
    }


class PadCollate:
    """Collate items that are already crops (:class:`voxvec.data.crops.CropBank` entries) into
    a padded batch, as :class:`CropCollate` returns it, without cropping them further."""

    def __repr__(self) -> str:
        return "PadCollate()"

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad a batch (see :meth:`CropCollate.__call__`).

        Raises:
            ValueError: an empty batch.
        """
        if len(items) == 0:
            raise ValueError("PadCollate got an empty batch")
        return _padded(items, [item["wav"] for item in items])


class TrainCollate:
    """Crop, pad and augment a batch; every random draw is seeded by the batch's item indices.

    Args:
        crop: the cropping collate (or :class:`PadCollate` for crops fixed in advance).
        augmenter: the batch augmentation, or None for none.
        seed: base seed (>= 0) of the augmentation stream.
    """

    def __init__(
        self, crop: CropCollate | PadCollate, augmenter: Augmenter | None, seed: int
    ) -> None:
        self.crop = crop
        self.augmenter = augmenter
        self.seed = seed

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Crop, pad and augment ``items`` (as :meth:`CropCollate.__call__`).

        Returns:
            ``{"wav": (B, T), "lengths": (B,), "speaker": (B,), "index": (B,)}``; speed
            perturbation may change ``T`` and ``lengths``.
        """
        batch = self.crop(items)
        if self.augmenter is not None:
            seed = derive_seed(self.seed, _AUGMENT_STREAM, *batch["index"].tolist())
            batch["wav"], batch["lengths"] = self.augmenter(
                batch["wav"],
                batch["lengths"],
                speaker=batch["speaker"],
                generator=torch.Generator().manual_seed(seed),
            )
        return batch
