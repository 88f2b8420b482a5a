"""The fixed validation set: a seeded choice of files, decoded once and centre-cut."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from voxvec.data.manifest import ManifestItem
from voxvec.data.validation import load_validation, select_validation

SR = 16000


def items(n_speakers: int, n_files: int) -> list[ManifestItem]:
    return [
        ManifestItem(Path(f"s{s}_{k}.wav"), f"spk{s}")
        for s in range(n_speakers)
        for k in range(n_files)
    ]


def test_selection_is_seeded_capped_and_speaker_major():
    pool = items(6, 5)
    chosen = select_validation(pool, n_speakers=3, n_utterances=2, seed=7)
    assert len(chosen) == 6 and chosen == select_validation(pool, 3, 2, seed=7)
    speakers = [item.speaker for item in chosen]
    assert speakers == sorted(speakers) and len(set(speakers)) == 3
    assert all(speakers.count(s) == 2 for s in set(speakers))
    assert select_validation(pool, 3, 2, seed=8) != chosen
    assert len(select_validation(pool, n_speakers=10, n_utterances=9, seed=0)) == 30


def test_files_are_cut_to_their_centre_and_short_ones_skipped(tmp_path, caplog):
    ramp = np.arange(3 * SR, dtype=np.float32) / (3 * SR)  # 3 s
    sf.write(tmp_path / "long.wav", ramp, SR, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", ramp[:100], SR, subtype="FLOAT")
    sf.write(tmp_path / "other.wav", ramp[: SR // 2], SR, subtype="FLOAT")
    chosen = [
        ManifestItem(tmp_path / "long.wav", "b"),
        ManifestItem(tmp_path / "short.wav", "b"),
        ManifestItem(tmp_path / "other.wav", "a"),
    ]
    with caplog.at_level(logging.WARNING):
        data = load_validation(chosen, SR, max_s=1.0, min_samples=400, train_speakers={"a"})
    assert "short.wav is too short" in caplog.text
    assert "1 validation speaker(s) also in the training data (e.g. a)" in caplog.text
    assert data.names == ["b", "a"] and data.labels.tolist() == [1, 0]
    long, other = data.waves
    assert long.shape == (SR,) and other.shape == (SR // 2,)
    torch.testing.assert_close(long, torch.from_numpy(ramp[SR : 2 * SR]))


def test_a_speakers_only_file_is_cut_into_segments_that_give_target_trials(tmp_path):
    ramp = np.arange(14 * SR, dtype=np.float32) / (14 * SR)  # 14 s, like the LibriSpeech sample
    sf.write(tmp_path / "one.wav", ramp, SR, subtype="FLOAT")
    sf.write(tmp_path / "tiny.wav", ramp[: 3 * SR], SR, subtype="FLOAT")  # one 4 s piece fits not
    chosen = [
        ManifestItem(tmp_path / "one.wav", "solo"),
        ManifestItem(tmp_path / "tiny.wav", "short"),
        ManifestItem(tmp_path / "one.wav", "pair"),
        ManifestItem(tmp_path / "tiny.wav", "pair"),
    ]
    data = load_validation(chosen, SR, max_s=8.0, n_segments=6)
    assert data.names == ["solo"] * 3 + ["short", "pair", "pair"]
    # Three consecutive 4 s segments around the centre (1-13 s); the others are centre cuts.
    for k in range(3):
        torch.testing.assert_close(
            data.waves[k], torch.from_numpy(ramp[(1 + 4 * k) * SR : (5 + 4 * k) * SR])
        )
    assert [w.shape[0] for w in data.waves[3:]] == [3 * SR, 8 * SR, 3 * SR]
    whole = load_validation(chosen, SR, max_s=8.0)  # n_segments=1: one excerpt per file
    assert whole.names == ["solo", "short", "pair", "pair"]
    assert data.labels.tolist() == [2, 2, 2, 1, 0, 0]
