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
