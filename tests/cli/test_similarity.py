"""Tests of ``voxvec similarity``: the score and the same/different decision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from voxvec.cli import main
from voxvec.inference import Embedder, similarity
from voxvec.models import create_model
from voxvec.weights import load_bundle, save_bundle

SO_FILES = ("audio/0001/000010011.ogg", "audio/0005/000050003.ogg")


def _bundle(path: Path, card: dict) -> Path:
    torch.manual_seed(0)
    return save_bundle(create_model("ecapa", channels=64, mfa_channels=192), path, card)


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> list[Path]:
    """Two real recordings of two speakers."""
    return [shared_data / "speechocean762" / f for f in SO_FILES]


def _score_line(out: str) -> float:
    line = next(line for line in out.splitlines() if line.startswith("similarity "))
    return float(line.split()[1])


def test_score_matches_the_library_and_decision_uses_the_card(
    speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path = _bundle(tmp_path / "m.safetensors", {"thresholds": {"eer": 0.999}})
    model, card = load_bundle(model_path)
    embedder = Embedder(model, card=card)
    emb = embedder.embed(speech)
    assert embedder.verify(speech[0], speech[1])[1] is False

    assert main(["similarity", str(speech[0]), str(speech[1]), "--model", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert _score_line(out) == pytest.approx(similarity(emb[0], emb[1]), abs=1e-4)
    assert "decision different speakers (threshold 0.9990: operating point 'eer' of" in out

    assert main(["similarity", str(speech[0]), str(speech[0]), "--model", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert _score_line(out) == pytest.approx(1.0, abs=1e-4)
    assert "decision same speaker" in out


def test_threshold_option_and_no_threshold(
    speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path = _bundle(tmp_path / "m.safetensors", {})
    args = ["similarity", str(speech[0]), str(speech[1]), "--model", str(model_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "no decision: the model card has no threshold" in out
    assert not any(line.startswith("decision") for line in out.splitlines())
    assert main([*args, "--threshold", "-1"]) == 0
    assert "decision same speaker (threshold -1.0000: given)" in capsys.readouterr().out
    assert main([*args, "--threshold", "1.5"]) == 0
    assert "decision different speakers (threshold 1.5000: given)" in capsys.readouterr().out
    assert main([*args, "--threshold", "far1"]) == 2
    assert "no decision threshold 'far1'" in capsys.readouterr().err


def test_named_operating_point_from_the_card(
    speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path = _bundle(tmp_path / "m.safetensors", {"thresholds": {"eer": 0.999, "far1": -1.0}})
    args = ["similarity", str(speech[0]), str(speech[1]), "--model", str(model_path)]
    assert main([*args, "--threshold", "far1"]) == 0
    assert (
        "decision same speaker (threshold -1.0000: operating point 'far1' of"
        in capsys.readouterr().out
    )


def test_missing_file_is_an_error(
    speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path = _bundle(tmp_path / "m.safetensors", {})
    missing = tmp_path / "missing.wav"
    assert main(["similarity", str(speech[0]), str(missing), "--model", str(model_path)]) == 2
    assert "missing.wav" in capsys.readouterr().err
