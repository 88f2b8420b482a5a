"""Tests of the public API in voxvec/__init__.py: load, available_models, embed, similarity."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import voxvec
from voxvec.audio import load
from voxvec.inference import Embedder
from voxvec.models import create_model
from voxvec.weights import DEFAULT_MODEL, list_pretrained, pretrained, save_bundle

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEECH = "speechocean762/audio/0001/000010011.ogg"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    card = {"name": "tiny", "thresholds": {"eer": 0.6}}
    return save_bundle(create_model("ecapa", channels=64, mfa_channels=192), path, card)


def test_import_is_light_and_has_no_side_effects() -> None:
    code = (
        "import logging, sys; import voxvec; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert not logging.getLogger().handlers; "
        "print(voxvec.__version__, sorted(voxvec.__all__))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "available_models" in result.stdout and "similarity" in result.stdout


def test_available_models_are_the_pretrained_names() -> None:
    names = voxvec.available_models()
    assert names == [DEFAULT_MODEL, *(spec.name for spec in list_pretrained())]
    assert "convgru-rf5" in names and "gru-rf5" in names


def test_load_a_bundle(bundle: Path) -> None:
    embedder = voxvec.load(bundle, window_s=4.0, vad="energy")
    assert isinstance(embedder, Embedder)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert embedder.device.type == expected
    assert embedder.card["name"] == "tiny" and embedder.threshold == pytest.approx(0.6)
    assert embedder.window == 4 * embedder.sample_rate and embedder.vad == "energy"
    assert voxvec.load(str(bundle), device="cpu").device == torch.device("cpu")


def test_load_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyError, match="unknown pretrained model 'no-such-model'"):
        voxvec.load("no-such-model")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        voxvec.load(tmp_path / "missing.safetensors")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            voxvec.load(tmp_path / "missing.safetensors", device="cuda")
    # Without a name, load() asks for the default model (here: a table that lacks it).
    monkeypatch.setattr(pretrained, "_SPECS", types.MappingProxyType({}))
    with pytest.raises(KeyError, match=f"unknown pretrained model '{DEFAULT_MODEL}'"):
        voxvec.load()


def test_embed_convenience(bundle: Path, shared_data: Path) -> None:
    path = shared_data / SPEECH
    embedder = voxvec.load(bundle, device="cpu")
    expected = embedder.embed(path)
    np.testing.assert_allclose(voxvec.embed(path, model=bundle, device="cpu"), expected, atol=1e-5)
    np.testing.assert_allclose(voxvec.embed([path], model=embedder), expected, atol=1e-5)
    wav = load(path, 8000)  # an array at another rate than the model's
    got = voxvec.embed(wav, 8000, model=embedder, batch_size=1)
    assert got.shape == (1, embedder.embed_dim)
    np.testing.assert_allclose(got, embedder.embed(wav, 8000), atol=1e-5)  # the rate reaches it
    with pytest.raises(ValueError, match="cannot be given with an Embedder"):
        voxvec.embed(path, model=embedder, vad="energy")


def test_similarity() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 16)), rng.standard_normal((3, 16))
    scores = voxvec.similarity(a, b)
    assert scores.shape == (2, 3) and np.all(np.abs(scores) <= 1 + 1e-6)
    expected = float(a[0] @ b[2] / np.linalg.norm(a[0]) / np.linalg.norm(b[2]))
    assert voxvec.similarity(a[0], b[2]) == pytest.approx(expected, abs=1e-6)
    assert voxvec.similarity(torch.from_numpy(a[1]), torch.from_numpy(a[1])) == pytest.approx(1.0)


def test_load_sets_the_threads_only_when_asked() -> None:
    before = torch.get_num_threads()
    try:
        voxvec.load(num_threads=1)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        voxvec.load()
        assert torch.get_num_threads() == 2  # None leaves them
        with pytest.raises(ValueError, match="num_threads must be 'auto' or a positive integer"):
            voxvec.load(num_threads=0)
    finally:
        torch.set_num_threads(before)
