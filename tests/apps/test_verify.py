"""Tests of voxvec.apps.verify: both sides averaged, thresholds, the calibrated llr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from voxvec.apps.calibration import fit_calibration
from voxvec.apps.identity import ModelIdentity
from voxvec.apps.verify import verify
from voxvec.inference import Embedder, similarity
from voxvec.models import create_model


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    torch.manual_seed(0)
    model = create_model("ecapa", channels=32, mfa_channels=96)
    return Embedder(
        model,
        card={"name": "tiny", "thresholds": {"eer": 0.5}},
        precision="float32",
        min_speech_s=0,
    )


def tones(*freqs: float) -> list[np.ndarray]:
    t = np.arange(16000) / 16000
    rng = np.random.default_rng(0)
    return [
        (0.4 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        for f in freqs
    ]


def test_sides_are_averaged_and_the_card_decides(embedder: Embedder) -> None:
    a, b = tones(200, 230), tones(900)
    result = verify(embedder, a, b, sample_rate=16000)
    emb_a = embedder.embed(a, 16000)
    expected = similarity(emb_a.mean(0), embedder.embed(b, 16000)[0])
    assert result.score == pytest.approx(expected, abs=1e-6)
    assert (result.n_a, result.n_b) == (2, 1)
    assert result.threshold == 0.5 and result.same is (expected >= 0.5)
    assert result.threshold_source == "operating point 'eer' of tiny's card"
    assert result.llr is None
    assert verify(embedder, a, a, sample_rate=16000, threshold=0.999).same is True
    assert verify(embedder, a, b, sample_rate=16000, threshold=1.0).same is False
    assert set(result.to_dict()) == {
        "score",
        "llr",
        "same",
        "threshold",
        "threshold_source",
        "n_a",
        "n_b",
    }


def test_calibration_gives_the_llr_and_its_operating_points(embedder: Embedder) -> None:
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0.7, 0.1, 500), rng.normal(0.2, 0.1, 5000)]
    labels = np.r_[np.ones(500), np.zeros(5000)]
    cal = fit_calibration(scores, labels, model=ModelIdentity.of(embedder))
    a, b = tones(200), tones(210)
    result = verify(embedder, a, b, sample_rate=16000, calibration=cal, threshold="far1")
    assert result.llr == pytest.approx(cal.slope * result.score + cal.offset)
    assert result.threshold == cal.thresholds["far1"].score
    assert result.threshold_source.startswith("operating point 'far1' of the calibration")


def test_no_threshold_no_decision_and_empty_side(embedder: Embedder, tmp_path: Path) -> None:
    bare = Embedder(embedder.model, card={}, min_speech_s=0)
    result = verify(bare, tones(200), tones(300), sample_rate=16000)
    assert result.same is None and result.threshold is None and result.threshold_source == ""
    with pytest.raises(ValueError, match="side a holds no recording"):
        verify(embedder, [], tones(300), sample_rate=16000)
