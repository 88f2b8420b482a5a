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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from voxvec.audio.windows import pad_batch, random_crop
from voxvec.data.dataset import derive_seed


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
        wav, lengths = pad_batch([random_crop(item["wav"], crop, generator) for item in items])
        return {
            "wav": wav,
            "lengths": lengths,
            "speaker": torch.tensor([int(item["speaker"]) for item in items], dtype=torch.long),
            "index": torch.tensor(indices, dtype=torch.long),
        }
