"""Tests of voxvec.apps.segmentation: span arithmetic, chunk aggregation, and the real
segmentation-3.0 model on real speech (speech found, overlap found only where two talk)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from voxvec.apps.segmentation import SegmentationActivity, _clean, _spans, load_segmentation
from voxvec.audio import io
from voxvec.audio.vad import speech_segments
from voxvec.models.pyannet import PyanNet

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO.parent / "shared" / "models" / "pyannote-segmentation-3.0" / "pytorch_model.bin"
SR = 16000


def test_spans_and_cleaning() -> None:
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    starts = np.arange(10) * 100
    assert _spans(mask, starts, starts + 100) == [(100, 300), (500, 600), (700, 1000)]
    assert _clean([(100, 300), (500, 600), (700, 1000)], 150, 150) == [(100, 300), (500, 1000)]


def test_probabilities_cover_every_frame_of_any_length() -> None:
    torch.manual_seed(0)
    seg = SegmentationActivity(PyanNet(), step_s=5.0)
    for n in (3000, SR * 7, SR * 23 + 17):
        starts, p_speech, p_overlap = seg.probabilities(np.zeros(n, dtype=np.float32) + 0.01)
        assert starts[0] == 0 and starts[-1] < n <= starts[-1] + 270
        assert p_speech.shape == p_overlap.shape == starts.shape
        assert ((0 <= p_overlap) & (p_overlap <= p_speech + 1e-6) & (p_speech <= 1 + 1e-6)).all()
    with pytest.raises(ValueError, match="16000 Hz"):
        seg(np.zeros(8000, dtype=np.float32), 8000)
    assert seg(np.zeros(0, dtype=np.float32), SR).speech == []


@pytest.fixture(scope="module")
def segmentation() -> SegmentationActivity:
    if not CHECKPOINT.is_file():
        pytest.skip(f"segmentation-3.0 checkpoint not found at {CHECKPOINT}")
    return SegmentationActivity(load_segmentation(CHECKPOINT), overlap_threshold=0.3)


def _librispeech(shared_data: Path, n: int) -> list[np.ndarray]:
    table = REPO / "configs" / "splits" / "default" / "test.csv"
    with table.open() as f:
        paths = [
            (table.parent / r["path"]).resolve()
            for r in csv.DictReader(f)
            if r["speaker"].startswith("ls-")
        ]
    return [io.load(p, SR) for p in paths[:n]]


def test_real_speech_and_overlap(segmentation: SegmentationActivity, shared_data: Path) -> None:
    a, b = _librispeech(shared_data, 2)
    n = min(len(a), len(b), 8 * SR)
    silence = np.zeros(3 * SR, dtype=np.float32)
    # 0-3 s silence, 3-11 s speaker A alone, 11-14 s silence, 14-22 s A and B together
    wav = np.concatenate([silence, a[:n], silence, (a[:n] + b[:n]) / 2]).astype(np.float32)
    act = segmentation(wav, SR)
    speech = np.zeros(len(wav), dtype=bool)
    for s, e in act.speech:
        speech[s:e] = True
    assert not speech[: 3 * SR - SR // 4].any()
    reference = np.zeros(n, dtype=bool)  # the energy detector on A alone
    for s, e in speech_segments(a[:n], SR, "energy"):
        reference[s:e] = True
    assert (speech[3 * SR : 3 * SR + n] == reference).mean() > 0.85
    overlap = np.zeros(len(wav), dtype=bool)
    for s, e in act.overlap:
        overlap[s:e] = True
    assert overlap[: 3 * SR + n].mean() < 0.02  # one speaker: no overlap
    both = reference.copy()  # where A and B both speak
    b_speech = np.zeros(n, dtype=bool)
    for s, e in speech_segments(b[:n], SR, "energy"):
        b_speech[s:e] = True
    both &= b_speech
    found = overlap[6 * SR + n :]
    print("recall", found[both].mean(), "precision", both[found].mean())
    assert found[both].mean() > 0.5  # most of the overlap is found
    assert both[found].mean() > 0.8  # and what is found is overlap
