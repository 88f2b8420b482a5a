"""The fixed crop bank of distillation: its plan, and that its entries are the items' samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voxvec.data.crops import CropBank, plan_crops
from voxvec.data.dataset import UtteranceDataset
from voxvec.data.loader import DataConfig, training_data
from voxvec.data.manifest import read_manifest
from voxvec.data.speed import SpeedSpeakerDataset, speed_perturb

SR = 16000


def test_the_plan_keeps_short_items_whole_and_covers_long_ones():
    lengths = [8000, 16000, 160000, 40000]
    crops = plan_crops(lengths, min_samples=16000, max_samples=32000, coverage=1.0, seed=3)
    assert crops[0] == (0, 0, 8000) and crops[1] == (1, 0, 16000)  # at most max: whole
    long = [c for c in crops if c.item == 2]
    assert len(long) == round(160000 / 24000)  # one crop per mean crop length
    for c in crops[2:]:
        assert 16000 <= c.length <= 32000 and 0 <= c.start <= lengths[c.item] - c.length
    assert len({c.start for c in long}) == len(long)
    assert crops == plan_crops(lengths, 16000, 32000, 1.0, seed=3)  # a function of the seed
    assert crops != plan_crops(lengths, 16000, 32000, 1.0, seed=4)
    assert len(plan_crops(lengths, 16000, 32000, 3.0, seed=3)) > len(crops)


@pytest.mark.parametrize(
    "args", [(0, 10, 1.0, 0), (20, 10, 1.0, 0), (1, 10, 0.0, 0), (1, 10, 1.0, -1)]
)
def test_the_plan_refuses_bad_settings(args):
    with pytest.raises(ValueError):
        plan_crops([100], *args)


def _corpus(root: Path) -> Path:
    gen = np.random.default_rng(0)
    lines = ["path,speaker"]
    for s in range(3):
        for k in range(2):
            name = f"s{s}_{k}.wav"
            sf.write(root / name, 0.1 * gen.standard_normal(int(SR * (0.5 + 1.5 * k))), SR)
            lines.append(f"{name},spk{s}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root / "train.csv"


def test_bank_entries_are_the_planned_samples_of_each_item_and_speed_copy(tmp_path):
    items = read_manifest(_corpus(tmp_path))
    files = SpeedSpeakerDataset(UtteranceDataset(items, SR), [0.9, 1.1])
    bank = CropBank(files, min_samples=4000, max_samples=8000, coverage=2.0, seed=1)
    assert len(bank) > len(files)  # the 2 s files get several crops
    assert bank.speakers == files.speakers and len(bank.speakers) == 9
    for k, crop in enumerate(bank.crops):
        entry = bank[k]
        base_index = crop.item % len(items)
        factor = files.factors[crop.item // len(items)]
        whole = speed_perturb(
            torch.from_numpy(sf.read(items[base_index].path, dtype="float32")[0]), factor, SR
        )
        assert entry["speaker"] == files.labels[crop.item] and entry["index"] == k
        start = min(crop.start, len(whole) - crop.length)
        torch.testing.assert_close(entry["wav"], whole[start : start + crop.length])
    batch = bank.__getitems__([3, 0, 3])
    for k, entry in zip([3, 0, 3], batch, strict=True):
        assert torch.equal(entry["wav"], bank[k]["wav"])


def test_training_data_with_a_crop_bank_batches_its_entries(tmp_path):
    config = DataConfig(
        train_csv=str(_corpus(tmp_path)),
        n_speakers=2,
        n_utterances=2,
        min_crop_s=0.25,
        max_crop_s=0.5,
        num_workers=0,
    )
    data = training_data(config, SR, min_samples=400, seed=3, crop_bank=1.0)
    bank = data.dataset
    assert isinstance(bank, CropBank)
    assert data.summary()["n_crops"] == len(bank)
    for batch in data.loader:
        for row, k in enumerate(batch["index"].tolist()):
            n = int(batch["lengths"][row])
            assert n == bank.crops[k].length
            assert torch.equal(batch["wav"][row, :n], bank[k]["wav"])
            assert (batch["wav"][row, n:] == 0).all()
