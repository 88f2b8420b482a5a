"""Tests of ``voxvec similarity``: the raw cosine score and nothing else (``verify`` decides)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from voxvec.cli import main
from voxvec.inference import Embedder, similarity
from voxvec.models import create_model
from voxvec.weights import load_bundle, save_bundle

SO_FILES = ("audio/0001/000010011.ogg", "audio/0005/000050003.ogg")


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> list[Path]:
    """Two real recordings of two speakers."""
    return [shared_data / "speechocean762" / f for f in SO_FILES]


def test_prints_the_library_score_without_a_decision(
    speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = create_model("ecapa", channels=64, mfa_channels=192)
    model_path = save_bundle(model, tmp_path / "m.safetensors", {"thresholds": {"eer": 0.1}})
    emb = Embedder(*load_bundle(model_path)[:1]).embed(speech)
    assert main(["similarity", str(speech[0]), str(speech[1]), "--model", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert out == f"similarity {similarity(emb[0], emb[1]):.4f}\n"  # a card threshold or not
    assert main(["similarity", str(speech[0]), str(speech[0]), "--model", str(model_path)]) == 0
    assert capsys.readouterr().out == "similarity 1.0000\n"


def test_missing_file_is_an_error(
    speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model_path = save_bundle(
        create_model("ecapa", channels=64, mfa_channels=192), tmp_path / "m.safetensors", {}
    )
    missing = tmp_path / "missing.wav"
    assert main(["similarity", str(speech[0]), str(missing), "--model", str(model_path)]) == 2
    assert "missing.wav" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("ecapa", channels=64, mfa_channels=192)
    return save_bundle(model, tmp_path_factory.mktemp("model") / "m.safetensors", {})


def test_many_files_give_the_matrix_of_every_pair(
    speech: list[Path],
    shared_data: Path,
    model_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import csv

    import numpy as np

    files = [*speech, shared_data / "speechocean762" / "audio/0001/000010035.ogg"]
    emb = Embedder(*load_bundle(model_path)[:1]).embed(files)
    base = ["similarity", *map(str, files), "--model", str(model_path)]
    assert main([*base, "--matrix", str(tmp_path / "m.csv")]) == 0
    with (tmp_path / "m.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", *map(str, files)] and [r[0] for r in rows[1:]] == rows[0][1:]
    matrix = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(matrix, emb @ emb.T, atol=1e-4)
    assert "3 x 3 score matrix written" in capsys.readouterr().err
    # Without --matrix it is printed; a file that fails is reported, left out, exit code 1.
    missing = ["similarity", *map(str, files), str(tmp_path / "missing.wav")]
    assert main([*missing, "--model", str(model_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == ",".join(rows[0])
    assert len(captured.out.splitlines()) == 4
    assert "1 file(s) failed: 1 [Errno 2] audio file not found" in captured.err


def test_pair_list_scores(
    speech: list[Path], model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv

    from voxvec.eval.trials import read_pairs

    emb = Embedder(*load_bundle(model_path)[:1]).embed(speech)
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as f:
        csv.writer(f).writerows(
            [["path1", "path2"], [*speech], [speech[1], speech[1]], [speech[0], "gone.wav"]]
        )
    out = tmp_path / "scores.csv"
    args = ["similarity", "--pairs", str(pairs), "--out", str(out), "--model", str(model_path)]
    assert main(args) == 1  # one pair has a missing file
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["score"]) for r in rows] == pytest.approx(
        [similarity(emb[0], emb[1]), 1.0], abs=1e-5
    )
    assert read_pairs(out) == read_pairs(pairs)[:2]  # the scores file is a pair list again
    err = capsys.readouterr().err
    assert "left out 1 of 3 pairs" in err and "2 pair scores written" in err
    assert main(args[:3] + ["--model", str(model_path)]) == 1  # printed instead
    assert capsys.readouterr().out.splitlines()[0] == "path1,path2,score"


def test_argument_errors(
    speech: list[Path], model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for args, message in (
        ([str(speech[0])], "at least two audio files"),
        ([*map(str, speech), "--pairs", "p.csv"], "either FILE... or --pairs"),
        ([*map(str, speech), "--out", "o.csv"], "--out goes with --pairs"),
    ):
        assert main(["similarity", *args, "--model", str(model_path)]) == 2
        assert message in capsys.readouterr().err


def test_level_db_scores_a_recording_against_its_quieter_copy_as_itself(
    speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import soundfile as sf

    wav, sr = sf.read(speech[0], dtype="float32")
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, wav * 0.1, sr)  # 20 dB down
    pair = ["similarity", str(speech[0]), str(quiet), "--model", "voxvec-default"]
    assert main([*pair, "--precision", "float32"]) == 0
    own = float(capsys.readouterr().out.split()[1])
    assert main([*pair, "--precision", "float32", "--level-db", "-20"]) == 0
    levelled = float(capsys.readouterr().out.split()[1])
    assert own < 0.97 and levelled > 0.999, (own, levelled)
