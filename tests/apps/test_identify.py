"""Tests of voxvec.apps.identify: files enrolled in one transaction, files identified in order,
failures reported and skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voxvec.apps.identify import enroll_files, identify_files
from voxvec.apps.identity import ModelIdentity, ModelMismatchError
from voxvec.apps.store import SpeakerStore, StoreError
from voxvec.inference import Embedder
from voxvec.models import create_model


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    torch.manual_seed(0)
    return Embedder(
        create_model("ecapa", channels=32, mfa_channels=96), precision="float32", min_speech_s=0
    )


@pytest.fixture
def wavs(tmp_path: Path) -> dict[str, Path]:
    t = np.arange(16000) / 16000
    out = {}
    for name, f in [("low1", 180), ("low2", 190), ("high1", 2000), ("high2", 2100), ("q", 185)]:
        path = tmp_path / f"{name}.wav"
        sf.write(path, (0.4 * np.sin(2 * np.pi * f * t)).astype(np.float32), 16000)
        out[name] = path
    return out


def test_enroll_then_identify_files(
    embedder: Embedder, wavs: dict[str, Path], tmp_path: Path
) -> None:
    model = ModelIdentity.of(embedder)
    store = SpeakerStore.create(tmp_path / "s", model)
    failures = []
    report = enroll_files(
        store,
        embedder,
        {"low": [wavs["low1"], wavs["low2"]], "high": [wavs["high1"], tmp_path / "gone.wav"]},
        metadata={"kind": "tone"},
        on_failure=failures.append,
    )
    assert report.enrolled == {"low": 2, "high": 1}
    assert (
        [f.source for f in report.failures]
        == [str(tmp_path / "gone.wav")]
        == [f.source for f in failures]
    )
    assert store.get("high").sources == (str(wavs["high1"]),)
    assert store.get("low").metadata == {"kind": "tone"}
    np.testing.assert_allclose(
        store.get("low").mean, embedder.embed_speaker([wavs["low1"], wavs["low2"]]), atol=1e-5
    )
    files = [wavs["q"], tmp_path / "gone.wav", wavs["high2"]]
    results = list(identify_files(store, embedder, files, threshold=-1.0, margin=0.0, chunk_size=2))
    assert [r.file for r in results] == [str(f) for f in files]
    assert results[1].match is None and "gone.wav" in results[1].error
    assert results[1].to_dict()["speaker"] is None
    direct = store.identify(
        embedder.embed([wavs["q"], wavs["high2"]]), model=model, threshold=-1.0, margin=0.0
    )
    for got, expected in zip([results[0], results[2]], direct, strict=True):
        assert got.match is not None and got.match.speaker == expected.speaker
        assert got.match.score == pytest.approx(expected.score, abs=1e-6)
        assert got.to_dict()["file"] == got.file


def test_nothing_embedded_and_another_model(
    embedder: Embedder, wavs: dict[str, Path], tmp_path: Path
) -> None:
    store = SpeakerStore.create(tmp_path / "s", ModelIdentity.of(embedder))
    with pytest.raises(StoreError, match="none of the 1 file"):
        enroll_files(store, embedder, {"x": [tmp_path / "gone.wav"]}, on_failure=lambda f: None)
    other = SpeakerStore.create(tmp_path / "o", ModelIdentity("x", "0" * 64, 256, 16000))
    with pytest.raises(ModelMismatchError):
        enroll_files(other, embedder, {"x": [wavs["low1"]]})
    with pytest.raises(ModelMismatchError):
        list(identify_files(other, embedder, [wavs["low1"]], threshold=0.5))
