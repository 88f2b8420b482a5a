"""CropCollate: per-batch crop length, random windows, padding, reproducibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from voxvec.data.collate import CropCollate
from voxvec.data.dataset import UtteranceDataset
from voxvec.data.manifest import ManifestItem
from voxvec.data.sampler import SpeakerBatchSampler


def ramp_item(index: int, n: int, speaker: int = 0) -> dict:
    """An item whose samples are index * 1e5 + position: any crop reveals where it came from."""
    wav = torch.arange(n, dtype=torch.float64) + index * 100_000
    return {"wav": wav.float(), "speaker": speaker, "index": index}


def test_shapes_lengths_and_contiguous_crops() -> None:
    collate = CropCollate(1000, 3000, seed=0)
    items = [ramp_item(i, n, speaker=i % 2) for i, n in enumerate([5000, 8000, 4000, 6000])]
    batch = collate(items)
    crop = int(batch["lengths"][0])
    assert 1000 <= crop <= 3000
    assert batch["wav"].shape == (4, crop) and batch["wav"].dtype == torch.float32
    assert batch["lengths"].tolist() == [crop] * 4
    assert batch["speaker"].tolist() == [0, 1, 0, 1] and batch["speaker"].dtype == torch.long
    assert batch["index"].tolist() == [0, 1, 2, 3]
    for row, item in zip(batch["wav"], items, strict=True):
        start = int(row[0]) - item["index"] * 100_000
        assert 0 <= start <= item["wav"].shape[0] - crop
        assert torch.equal(row, item["wav"][start : start + crop])


def test_short_items_kept_whole_and_padded_with_zeros() -> None:
    collate = CropCollate(2000, 2000)
    items = [ramp_item(1, 500), ramp_item(2, 5000), ramp_item(3, 1500)]
    batch = collate(items)
    assert batch["lengths"].tolist() == [500, 2000, 1500]
    assert batch["wav"].shape == (3, 2000)
    assert torch.equal(batch["wav"][0, :500], items[0]["wav"])
    assert not batch["wav"][0, 500:].any() and not batch["wav"][2, 1500:].any()


def test_all_short_batch_is_as_wide_as_its_longest_item() -> None:
    batch = CropCollate(4000, 6000)([ramp_item(0, 300), ramp_item(1, 700)])
    assert batch["wav"].shape == (2, 700)


def test_reproducible_from_seed_and_indices() -> None:
    items = [ramp_item(i, 10_000) for i in range(6)]
    a = CropCollate(1000, 5000, seed=4)(items)
    b = CropCollate(1000, 5000, seed=4)(items)
    assert torch.equal(a["wav"], b["wav"])
    c = CropCollate(1000, 5000, seed=5)(items)
    assert not torch.equal(a["wav"][:, :10], c["wav"][:, :10])
    reordered = CropCollate(1000, 5000, seed=4)(items[::-1])
    assert not torch.equal(reordered["wav"][:, :10], a["wav"].flip(0)[:, :10])


def test_repeated_item_gets_different_crops() -> None:
    item = ramp_item(7, 50_000)
    batch = CropCollate(1000, 1000)([item] * 4)
    starts = {int(row[0]) for row in batch["wav"]}
    assert len(starts) == 4


def test_crop_length_spans_the_range() -> None:
    collate = CropCollate(1000, 2000, seed=1)
    lengths = [int(collate([ramp_item(i, 3000)])["lengths"][0]) for i in range(200)]
    assert min(lengths) >= 1000 and max(lengths) <= 2000
    assert min(lengths) < 1100 and max(lengths) > 1900


def test_errors() -> None:
    with pytest.raises(ValueError, match="min_samples"):
        CropCollate(3000, 2000)
    with pytest.raises(ValueError, match="min_samples"):
        CropCollate(0, 2000)
    with pytest.raises(ValueError, match="empty"):
        CropCollate(1, 2)([])


def test_loader_batches_do_not_depend_on_workers(tmp_path: Path) -> None:
    """Sampler + dataset + collate: the same batches with 0 or 2 DataLoader workers."""
    rng = np.random.default_rng(0)
    items = []
    for spk in range(4):
        for utt in range(3):
            path = tmp_path / f"s{spk}_{utt}.wav"
            sf.write(path, 0.1 * rng.standard_normal(4000 + 500 * utt), 16000, subtype="FLOAT")
            items.append(ManifestItem(path, f"spk{spk}"))
    dataset = UtteranceDataset(items, sample_rate=16000)

    def run(workers: int) -> list[dict[str, torch.Tensor]]:
        sampler = SpeakerBatchSampler(dataset.labels, n_speakers=2, n_utterances=4, seed=2)
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=CropCollate(1000, 3000, seed=2),
            num_workers=workers,
        )
        return list(loader)

    single, multi = run(0), run(2)
    assert len(single) == len(multi) == 2
    for a, b in zip(single, multi, strict=True):
        assert a["wav"].shape[0] == 8
        assert all(torch.equal(a[key], b[key]) for key in ("wav", "lengths", "speaker", "index"))
        speakers = a["speaker"].view(2, 4)
        assert (speakers == speakers[:, :1]).all() and speakers[0, 0] != speakers[1, 0]


def test_train_collate_augments_as_a_function_of_the_batch_items() -> None:
    from voxvec.data.augment import AugmentConfig, Augmenter
    from voxvec.data.collate import TrainCollate

    gen = torch.Generator().manual_seed(0)
    items = [
        {"wav": 0.1 * torch.randn(16000, generator=gen), "speaker": i % 3, "index": i}
        for i in range(12)
    ]
    augment = Augmenter(AugmentConfig(gain_prob=1.0, reverb_prob=0.5), 16000)
    collate = TrainCollate(CropCollate(8000, 12000, seed=1), augment, seed=1)
    a = collate([items[i] for i in (0, 5, 9)])
    b = collate([items[i] for i in (0, 5, 9)])
    c = collate([items[i] for i in (0, 5, 10)])
    assert torch.equal(a["wav"], b["wav"]) and torch.equal(a["lengths"], b["lengths"])
    assert not torch.equal(a["wav"][0], c["wav"][0])
    plain = TrainCollate(CropCollate(8000, 12000, seed=1), None, seed=1)(
        [items[i] for i in (0, 5, 9)]
    )
    # The same crops, then augmentation on top.
    assert torch.equal(plain["lengths"], a["lengths"])
    assert plain["speaker"].tolist() == a["speaker"].tolist() == [0, 2, 0]
    assert not np.allclose(plain["wav"].numpy(), a["wav"].numpy())
