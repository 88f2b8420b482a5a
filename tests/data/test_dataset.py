"""UtteranceDataset: decoding, labels, the on-disk cache, bad files, long-file windows."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

import voxvec.data.dataset as dataset_module
from voxvec.audio.io import AudioError, load
from voxvec.data.collate import CropCollate
from voxvec.data.dataset import UtteranceDataset, cache_path, derive_seed, load_audio
from voxvec.data.manifest import ManifestItem, read_manifest
from voxvec.data.sampler import SpeakerBatchSampler


def write_tone(path: Path, seconds: float, sample_rate: int = 16000, freq: float = 220.0) -> Path:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sample_rate)
    return path


@pytest.fixture
def items(tmp_path: Path) -> list[ManifestItem]:
    return [
        ManifestItem(write_tone(tmp_path / "b1.wav", 0.5), "bob"),
        ManifestItem(write_tone(tmp_path / "a1.flac", 0.25, freq=330.0), "alice"),
        ManifestItem(write_tone(tmp_path / "c1.wav", 0.5, sample_rate=8000), "carol"),
        ManifestItem(write_tone(tmp_path / "b2.wav", 0.75, freq=440.0), "bob"),
    ]


def test_labels_and_items(items: list[ManifestItem]) -> None:
    ds = UtteranceDataset(items, sample_rate=16000)
    assert len(ds) == 4
    assert ds.speakers == ["alice", "bob", "carol"]
    assert ds.labels == [1, 0, 2, 1]
    item = ds[3]
    assert set(item) == {"wav", "speaker", "index"}
    assert item["speaker"] == 1 and item["index"] == 3
    assert item["wav"].dtype == torch.float32 and item["wav"].shape == (12000,)
    np.testing.assert_array_equal(item["wav"].numpy(), load(items[3].path, 16000))
    assert ds[2]["wav"].shape == (8000,)  # 0.5 s at 8 kHz resampled to 16 kHz


def test_cache_written_then_read(items: list[ManifestItem], tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    ds = UtteranceDataset(items, sample_rate=16000, cache_dir=cache)
    first = [ds[i]["wav"] for i in range(len(ds))]
    entries = sorted(cache.rglob("*.npy"))
    assert len(entries) == 4
    assert not [p for p in cache.rglob("*") if p.is_file() and p.suffix != ".npy"]  # no temp left
    assert cache_path(items[0].path, 16000, cache) in entries

    def no_decoding(path, sample_rate):
        raise AssertionError(f"decoded {path} although it is cached")

    monkeypatch.setattr(dataset_module, "load", no_decoding)
    again = [ds[i]["wav"] for i in range(len(ds))]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert isinstance(load_audio(items[0].path, 16000, cache), np.memmap)
    again[0][0] = 5.0  # items are writable copies, not the read-only memory map
    assert ds[0]["wav"][0] != 5.0


def test_cache_key_follows_file_and_rate(items: list[ManifestItem], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    key = cache_path(items[0].path, 16000, cache)
    assert cache_path(items[0].path, 22050, cache) != key
    load_audio(items[0].path, 16000, cache)
    write_tone(items[0].path, 0.2, freq=1000.0)  # the file changes: a new entry, new audio
    os.utime(items[0].path, ns=(1, 1))
    assert cache_path(items[0].path, 16000, cache) != key
    assert load_audio(items[0].path, 16000, cache).shape == (3200,)


def test_corrupt_cache_entry_is_rewritten(
    items: list[ManifestItem], tmp_path: Path, caplog
) -> None:
    cache = tmp_path / "cache"
    expected = load_audio(items[1].path, 16000, cache).copy()
    cache_path(items[1].path, 16000, cache).write_bytes(b"not a numpy file")
    with caplog.at_level(logging.WARNING):
        got = load_audio(items[1].path, 16000, cache)
    assert "rewriting" in caplog.text
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.load(cache_path(items[1].path, 16000, cache)), expected)


def test_bad_files_raise_naming_them(items: list[ManifestItem], tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....garbage")
    missing = tmp_path / "missing.flac"
    ds = UtteranceDataset(
        [*items, ManifestItem(broken, "dan"), ManifestItem(missing, "dan")], 16000
    )
    with pytest.raises(AudioError, match="broken.wav") as err:
        ds[4]
    assert "item 4" in str(err.value) and "'dan'" in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.flac"):
        ds[5]
    with pytest.raises(IndexError):
        ds[6]


def test_unreadable_files_can_be_replaced_by_another_file_of_their_speaker(
    items: list[ManifestItem], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....garbage")
    bad = [ManifestItem(broken, "bob"), ManifestItem(tmp_path / "gone.wav", "dan")]
    ds = UtteranceDataset([*items, *bad], 16000, replace_unreadable=True)
    replaced = ds[4]  # bob's broken file: bob's next file after it, wrapping around (b1.wav)
    assert replaced["index"] == 4 and replaced["speaker"] == ds.labels[4]
    torch.testing.assert_close(replaced["wav"], ds[0]["wav"])
    found = ds.take_unreadable()
    assert [(i, Path(p).name) for i, p, _ in found] == [(4, "broken.wav")]
    assert "cannot decode" in found[0][2] or "broken.wav" in found[0][2]
    ds[4]
    assert ds.take_unreadable() == []  # each file reported once
    with pytest.raises(AudioError, match="every file of speaker 'dan' is unreadable"):
        ds[5]
    assert [Path(p).name for _, p, _ in ds.take_unreadable()] == ["gone.wav"]
    with pytest.raises(AudioError, match="broken.wav"):  # off by default
        UtteranceDataset([*items, *bad], 16000)[4]


def test_check_separates_bad_files(items: list[ManifestItem], tmp_path: Path, caplog) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....garbage")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    bad_items = [ManifestItem(broken, "dan"), ManifestItem(tmp_path / "nope.wav", "dan")]
    everything = [items[0], bad_items[0], items[1], ManifestItem(empty, "eve"), bad_items[1]]
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING):
        good, bad = UtteranceDataset.check(everything, 16000, cache_dir=cache, num_threads=2)
    assert good == [items[0], items[1]]
    assert [item.path.name for item, _ in bad] == ["broken.wav", "empty.wav", "nope.wav"]
    assert all(reason for _, reason in bad)
    assert "broken.wav" in caplog.text and "3 of 5" in caplog.text
    assert len(list(cache.rglob("*.npy"))) == 2  # the check filled the cache


def test_max_load_s_windows(tmp_path: Path) -> None:
    t = np.arange(48000, dtype=np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, t / 48000.0, 16000, subtype="FLOAT")  # a ramp: windows reveal their start
    ds = UtteranceDataset(
        [ManifestItem(path, "x")], 16000, cache_dir=tmp_path / "c", max_load_s=0.5
    )
    wav = ds[0]["wav"]
    assert wav.shape == (8000,)
    start = round(float(wav[0]) * 48000)
    np.testing.assert_allclose(wav.numpy(), t[start : start + 8000] / 48000.0, atol=1e-6)
    assert torch.equal(ds[0]["wav"], wav)  # seeded by (seed, index)
    batch = ds.__getitems__([0, 0, 0])  # a batch: one window per position
    assert len({round(float(item["wav"][0]) * 48000) for item in batch}) == 3
    short = UtteranceDataset([ManifestItem(path, "x")], 16000, max_load_s=10.0)
    assert short[0]["wav"].shape == (48000,)


def test_constructor_errors(items: list[ManifestItem]) -> None:
    with pytest.raises(ValueError, match="empty"):
        UtteranceDataset([], 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        UtteranceDataset(items, 0)
    with pytest.raises(ValueError, match="max_load_s"):
        UtteranceDataset(items, 16000, max_load_s=0.0)


def test_derive_seed() -> None:
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert len({derive_seed(0, i) for i in range(100)}) == 100
    assert 0 <= derive_seed(5) < 2**63
    with pytest.raises(ValueError, match="non-negative"):
        derive_seed(-1)


def test_real_speech_pipeline(shared_data: Path, tmp_path: Path) -> None:
    """Opus, FLAC and 8 kHz corpora through cache, sampler and collate into a GE2E batch."""
    items = []
    for corpus, n in (
        ("speechocean762", 2),
        ("free-spoken-digits", 2),
        ("librispeech-train-clean-100-sample", 4),
    ):
        manifest = read_manifest(shared_data / corpus / "manifest.csv")
        for speaker in sorted({item.speaker for item in manifest})[:n]:
            items += [item for item in manifest if item.speaker == speaker][:3]
    ds = UtteranceDataset(items, 16000, cache_dir=tmp_path / "cache")
    assert len(ds.speakers) == 8
    sampler = SpeakerBatchSampler(ds.labels, n_speakers=4, n_utterances=3, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=CropCollate(8000, 16000, seed=0))
    batches = list(loader)
    assert len(batches) == 2
    for batch in batches:
        wav, lengths = batch["wav"], batch["lengths"]
        assert wav.shape[0] == 12 and torch.isfinite(wav).all() and wav.abs().max() <= 1.0
        assert (lengths > 0).all() and wav.std() > 1e-3
        for row, n in zip(wav, lengths.tolist(), strict=True):
            assert not row[n:].any()
    # LibriSpeech has one file per speaker: its blocks repeat one file with different crops.
    libri = [ds.labels[i] for i, it in enumerate(ds.items) if "librispeech" in str(it.path)]
    for batch in batches:
        for block_speaker, block_wav, block_index in zip(
            batch["speaker"].view(4, 3),
            batch["wav"].view(4, 3, -1),
            batch["index"].view(4, 3),
            strict=True,
        ):
            if int(block_speaker[0]) in libri:
                assert len(set(block_index.tolist())) == 1
                assert not torch.equal(block_wav[0], block_wav[1])
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(
        set(i for b in batches for i in b["index"].tolist())
    )
