"""Tests of ``voxvec prepare``: corpora in, speaker-disjoint CSVs out, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxvec.cli import main
from voxvec.data.manifest import read_manifest


def write_audio(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(400, dtype=np.float32), 16000)


def test_prepare_librispeech_and_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    libri = tmp_path / "LibriSpeech" / "train-clean-100"
    for spk in ("19", "26", "27", "32"):
        for utt in range(3):
            write_audio(libri / spk / "198" / f"{spk}-198-{utt:04d}.flac")
    folders = tmp_path / "mine"
    for spk in ("ann", "ben"):
        write_audio(folders / spk / "x.wav")
        write_audio(folders / spk / "y.wav")
    (folders / "ben" / "bad.wav").write_bytes(b"junk")
    out = tmp_path / "splits"

    code = main(
        [
            "prepare",
            "--librispeech",
            str(libri),
            "--folders",
            str(folders),
            "--out-dir",
            str(out),
            "--valid-speakers",
            "2",
            "--test-speakers",
            "1",
            "--seed",
            "3",
            "--check-audio",
        ]
    )

    assert code == 0
    printed = capsys.readouterr().out
    assert "librispeech" in printed and "train.csv" in printed and "unreadable.csv" in printed
    parts = {name: read_manifest(out / f"{name}.csv") for name in ("train", "valid", "test")}
    speakers = {name: {i.speaker for i in items} for name, items in parts.items()}
    assert [len(speakers[n]) for n in ("train", "valid", "test")] == [3, 2, 1]
    assert set().union(*speakers.values()) == {
        "ls-19",
        "ls-26",
        "ls-27",
        "ls-32",
        "mine-ann",
        "mine-ben",
    }
    assert sum(len(items) for items in parts.values()) == 12 + 4
    assert "bad.wav" in (out / "unreadable.csv").read_text()


def test_prepare_wrong_root_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["prepare", "--vctk", str(tmp_path / "nope"), "--out-dir", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "VCTK root is not a folder" in err and "nope" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["prepare", "--vox1", str(empty), "--out-dir", str(tmp_path / "o")])
    assert code == 2
    assert "no VoxCeleb (vox1) audio found" in capsys.readouterr().err
    code = main(["prepare", "--out-dir", str(tmp_path / "o")])
    assert code == 2
    assert "no corpus given" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
