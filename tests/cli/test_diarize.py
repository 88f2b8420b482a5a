"""Tests of ``voxvec diarize``: outputs per file, bad files reported, counts, --store names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxvec.cli import main

REPO = Path(__file__).resolve().parents[2]
CAMPPLUS = REPO.parent / "shared" / "models" / "campplus-zh-en-common" / "campplus_cn_en_common.pt"
SR = 16000


def test_writes_rttm_and_json_per_file_and_reports_bad_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silence = tmp_path / "quiet room.wav"
    sf.write(silence, np.zeros(3 * SR, dtype=np.float32), SR)
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio")
    out = tmp_path / "out"
    code = main(["diarize", str(silence), str(bad), "--out", str(out), "--vad", "energy"])
    assert code == 1
    err = capsys.readouterr().err
    assert "bad.flac" in err and "cannot decode" in err
    assert (out / "quiet room.rttm").read_text() == ""
    doc = json.loads((out / "quiet room.json").read_text())
    assert doc["segments"] == [] and doc["duration_s"] == 3.0
    assert not (out / "bad.rttm").exists()


def test_counts_are_checked_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["diarize", str(tmp_path / "x.wav"), "--out", str(tmp_path)]
    assert main([*args, "--num-speakers", "2", "--max-speakers", "3"]) == 2
    assert "either --num-speakers" in capsys.readouterr().err
    assert main([*args, "--min-speakers", "4", "--max-speakers", "2"]) == 2
    assert "min_speakers <= max_speakers" in capsys.readouterr().err


def _two_speakers(tmp_path: Path) -> tuple[Path, list[Path]]:
    table = REPO / "configs" / "splits" / "default" / "test.csv"
    with table.open() as f:
        rows = [r for r in csv.DictReader(f) if r["speaker"].startswith("so-")]
    by_speaker: dict[str, list[Path]] = {}
    for r in rows:
        by_speaker.setdefault(r["speaker"], []).append((table.parent / r["path"]).resolve())
    (_, fa), (_, fb) = sorted(by_speaker.items())[:2]
    from voxvec.audio import io

    pause = np.zeros(SR // 2, dtype=np.float32)
    parts = []
    for a, b in zip(fa[:3], fb[:3], strict=True):
        parts += [io.load(a, SR), pause, io.load(b, SR), pause]
    path = tmp_path / "talk.wav"
    sf.write(path, np.concatenate(parts), SR)
    return path, [fa[3], fa[4]]


def test_num_speakers_and_store_names(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import voxvec
    from voxvec.apps.identity import ModelIdentity
    from voxvec.apps.store import SpeakerStore

    if not CAMPPLUS.is_file():
        pytest.skip(f"CAM++ checkpoint not found at {CAMPPLUS}")
    talk, enroll_a = _two_speakers(tmp_path)
    out = tmp_path / "out"
    model = ["--model", str(CAMPPLUS)]
    assert main(["diarize", str(talk), *model, "--num-speakers", "3", "--out", str(out), "-q"]) == 0
    assert len(json.loads((out / "talk.json").read_text())["speakers"]) == 3

    embedder = voxvec.load(CAMPPLUS, "cpu")
    store = SpeakerStore.open_or_create(tmp_path / "store", ModelIdentity.of(embedder))
    store.enroll("alice", embedder.embed(enroll_a), model=ModelIdentity.of(embedder))
    store_args = ["--store", str(tmp_path / "store"), "--threshold", "0.5", "--num-speakers", "2"]
    code = main(["diarize", str(talk), *model, *store_args, "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "naming clusters: threshold" in captured.err
    doc = json.loads((out / "talk.json").read_text())
    assert sorted(doc["speakers"]) == ["SPEAKER_00", "alice"]
    assert doc["segments"][0]["speaker"] == "alice"  # alice speaks first
    assert "alice" in (out / "talk.rttm").read_text() and "alice" in captured.out
