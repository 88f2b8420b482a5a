"""The training data pipeline built from a DataConfig: dataset, N x M sampler, collate."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch

from voxvec.data.loader import DataConfig, training_data

SR = 16000


def write_manifest(root: Path, n_speakers: int, n_files: int) -> Path:
    gen = torch.Generator().manual_seed(0)
    lines = ["path,speaker"]
    for s in range(n_speakers):
        for k in range(n_files):
            name = f"s{s}_{k}.wav"
            sf.write(root / name, (0.1 * torch.randn(SR, generator=gen)).numpy(), SR)
            lines.append(f"{name},spk{s}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root / "train.csv"


def small(train_csv: Path, **overrides: object) -> DataConfig:
    """Crops of 0.25-0.5 s decoded in the main process."""
    values: dict = {"min_crop_s": 0.25, "max_crop_s": 0.5, "num_workers": 0, **overrides}
    return DataConfig(train_csv=str(train_csv), **values)


def test_batches_are_speaker_major_crops_of_one_length(tmp_path):
    config = small(write_manifest(tmp_path, 4, 3), n_speakers=2, n_utterances=3)
    data = training_data(config, SR, min_samples=400, seed=3)
    assert len(data.items) == 12 and len(data.sampler) == 2
    assert data.summary() == {"n_files": 12, "n_speakers": 4, "n_classes": 4}
    batches = list(data.loader)
    assert len(batches) == 2
    for batch in batches:
        assert batch["wav"].shape[0] == 6 and 4000 <= batch["wav"].shape[1] <= 8000
        assert (batch["lengths"] == batch["wav"].shape[1]).all()
        speakers = batch["speaker"].view(2, 3)  # (N, M)
        assert (speakers == speakers[:, :1]).all() and speakers[0, 0] != speakers[1, 0]
    again = list(training_data(config, SR, min_samples=400, seed=3).loader)
    assert all(torch.equal(a["wav"], b["wav"]) for a, b in zip(batches, again, strict=True))


@pytest.mark.parametrize("speed_speakers", [False, True])
def test_batches_report_the_unreadable_files_their_workers_replaced(tmp_path, speed_speakers):
    manifest = write_manifest(tmp_path, 4, 2)
    (tmp_path / "s1_0.wav").write_bytes(b"not audio")
    config = small(manifest, n_speakers=2, n_utterances=2, num_workers=2,
                   speed_speakers=speed_speakers)  # fmt: skip
    batches = list(training_data(config, SR, min_samples=400, seed=0).loader)
    reported = [u for batch in batches for u in batch["unreadable"]]
    # once by each worker process that met it
    assert 1 <= len(reported) <= 2
    assert {(i, Path(p).name) for i, p, _ in reported} == {(2, "s1_0.wav")}
    assert all(batch["wav"].isfinite().all() for batch in batches)


def test_speed_speakers_and_shards(tmp_path):
    manifest = write_manifest(tmp_path, 4, 2)
    config = small(manifest, n_speakers=2, n_utterances=2, speed_speakers=True)
    ranks = [
        training_data(config, SR, min_samples=400, seed=0, rank=r, world_size=2) for r in (0, 1)
    ]
    assert ranks[0].summary() == {"n_files": 8, "n_speakers": 4, "n_classes": 12}
    first = [set(r.sampler.epoch_batches(0)[0]) for r in ranks]
    assert first[0].isdisjoint(first[1])


def test_crops_are_checked_against_the_model_before_the_manifest_is_read(tmp_path):
    config = DataConfig(train_csv=str(tmp_path / "missing.csv"), min_crop_s=0.01)
    with pytest.raises(ValueError, match="min_crop_s=0.01 is shorter than the model's minimum"):
        training_data(config, SR, min_samples=400, seed=0)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        training_data(DataConfig(train_csv=str(tmp_path / "missing.csv")), SR, 400, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_speakers": 0}, "n_speakers"),
        ({"min_crop_s": 3.0, "max_crop_s": 2.0}, "min_crop_s"),
        ({"max_unreadable_files": -1}, "data.max_unreadable_files must be >= 0"),
        ({"num_workers": -1}, "num_workers"),
        ({"speed_factors": (1.0,)}, "speed_factors"),
    ],
)
def test_invalid_data_configs_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataConfig(**kwargs)


def test_a_cold_cache_is_filled_first_with_progress(tmp_path, caplog, monkeypatch):
    import logging

    from voxvec.data import dataset as dataset_module
    from voxvec.data.dataset import cache_path, uncached
    from voxvec.data.manifest import read_manifest

    csv = write_manifest(tmp_path, 3, 2)
    items = read_manifest(csv)
    cache = tmp_path / "cache"
    assert uncached(items, SR, cache) == items
    ticks = iter(range(0, 1000, 20))  # every file "takes" 20 s: one progress line per file
    monkeypatch.setattr(dataset_module.time, "perf_counter", lambda: float(next(ticks)))
    with caplog.at_level(logging.INFO, logger="voxvec.data"):
        training_data(small(csv, cache_dir=str(cache), n_speakers=2), SR, min_samples=400, seed=0)
    assert "6 of 6 files are not in it yet" in caplog.text
    assert "decoded 1 of 6 files" in caplog.text and "decoded 5 of 6 files" in caplog.text
    assert all(cache_path(item.path, SR, cache).is_file() for item in items)
    assert uncached(items, SR, cache) == []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="voxvec.data"):
        training_data(small(csv, cache_dir=str(cache), n_speakers=2), SR, min_samples=400, seed=0)
    assert "not in it yet" not in caplog.text  # a warm cache costs nothing
