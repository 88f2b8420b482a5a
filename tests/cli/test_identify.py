"""Tests of ``voxvec enroll`` and ``voxvec identify`` on real speech (the store is shared by
the module's tests, in order: enroll, then identify)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import voxvec
from voxvec.apps.store import SpeakerStore
from voxvec.cli import main
from voxvec.models import create_model
from voxvec.weights import ALIASES, DEFAULT_MODEL, save_bundle

ENROLLED = ("0001", "0005", "0006")
STRANGER = "0024"


@pytest.fixture(scope="module")
def files(shared_data: Path) -> dict[str, list[Path]]:
    root = shared_data / "speechocean762" / "audio"
    return {s: sorted((root / s).glob("*.ogg"))[:5] for s in (*ENROLLED, STRANGER)}


@pytest.fixture(scope="module")
def store_dir(files: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with three speakers enrolled from their first three files through the CLI."""
    root = tmp_path_factory.mktemp("store") / "speakers"
    for speaker in ENROLLED:
        argv = ["enroll", f"so-{speaker}", *map(str, files[speaker][:3]), "--store", str(root)]
        assert main([*argv, "--meta", "corpus=speechocean762"]) == 0
    return root


@pytest.fixture(scope="module")
def embedder() -> voxvec.Embedder:
    return voxvec.load()


def test_enroll_stores_what_the_library_computes(
    store_dir: Path, files: dict[str, list[Path]], embedder, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SpeakerStore.open(store_dir)
    assert store.names() == [f"so-{s}" for s in ENROLLED]
    assert store.model.name == ALIASES[DEFAULT_MODEL]
    speaker = store.get("so-0001")
    assert speaker.count == 3 and speaker.sources == tuple(map(str, files["0001"][:3]))
    assert speaker.metadata == {"corpus": "speechocean762"}
    np.testing.assert_allclose(speaker.mean, embedder.embed_speaker(files["0001"][:3]), atol=2e-3)
    # enrolling more audio for a name adds to it
    assert main(["enroll", "so-0006", str(files["0006"][4]), "--store", str(store_dir)]) == 0
    assert "enrolled 'so-0006': +1 recording(s), 4 in all" in capsys.readouterr().out
    assert SpeakerStore.open(store_dir).get("so-0006").count == 4


def test_identify_json_lines(
    store_dir: Path, files: dict[str, list[Path]], embedder, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = [files["0001"][3], files["0005"][3], files[STRANGER][0], files[STRANGER][1]]
    argv = ["identify", *map(str, queries), "--store", str(store_dir), "--json", "--top-k", "2"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(queries)
    results = [json.loads(line) for line in lines]
    store = SpeakerStore.open(store_dir)
    means = np.stack([s.mean for s in store.speakers()])
    threshold = embedder.resolve_threshold("far1")  # no calibration: the card's far1 point
    for query, result in zip(queries, results, strict=True):
        assert result["file"] == str(query)
        assert result["threshold"] == threshold
        scores = means @ embedder.embed(query)[0]
        order = np.argsort(-scores)
        assert [c["speaker"] for c in result["candidates"]] == [store.names()[i] for i in order[:2]]
        np.testing.assert_allclose(
            [c["score"] for c in result["candidates"]], scores[order[:2]], atol=2e-3
        )
        assert result["score"] == result["candidates"][0]["score"]
        accepted = scores[order[0]] >= threshold and scores[order[0]] - scores[order[1]] >= 0.05
        assert result["speaker"] == (store.names()[order[0]] if accepted else None)
    # measured: so-0005's other file scores 0.75 against its mean (next 0.44); the stranger < 0.2
    assert results[1]["speaker"] == "so-0005" and results[1]["decision"] == "accepted"
    assert results[2]["speaker"] is None and results[3]["speaker"] is None
    assert results[2]["decision"].startswith("below threshold")


def test_identify_text_threshold_and_failures(
    store_dir: Path, files: dict[str, list[Path]], tmp_path: Path, capsys
) -> None:
    query = files["0005"][3]
    argv = ["identify", str(query), str(tmp_path / "gone.wav"), "--store", str(store_dir)]
    assert main([*argv, "--threshold", "0.99"]) == 1  # a file failed
    captured = capsys.readouterr()
    ok, failed = captured.out.splitlines()
    name, score = ok.split("\t")[1:3]
    assert name == "unknown" and float(score) > 0.5  # named below 0.99, candidates still shown
    assert "below threshold 0.9900" in ok and "so-0005" in ok
    assert failed.startswith(f"{tmp_path / 'gone.wav'}\terror\t") and "gone.wav" in failed
    assert "threshold 0.9900 (given); margin 0.05; 3 speaker(s)" in captured.err
    assert main([*argv, "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[1]["speaker"] is None and lines[1]["candidates"] == []
    assert "gone.wav" in lines[1]["error"]


def test_another_model_and_missing_store(
    store_dir: Path, files: dict[str, list[Path]], tmp_path: Path, capsys
) -> None:
    torch.manual_seed(0)
    other = save_bundle(
        create_model("ecapa", channels=32, mfa_channels=96), tmp_path / "other.safetensors", {}
    )
    query = str(files["0001"][3])
    argv = ["identify", query, "--store", str(store_dir), "--model", str(other)]
    assert main([*argv, "--threshold", "0.5"]) == 2
    err = capsys.readouterr().err
    assert f"was made with model '{ALIASES[DEFAULT_MODEL]}'" in err and "not comparable" in err
    assert f"use --model {ALIASES[DEFAULT_MODEL]} (the same weights)" in err
    assert main(["enroll", "x", query, "--store", str(store_dir), "--model", str(other)]) == 2
    assert "not comparable" in capsys.readouterr().err
    assert "x" not in SpeakerStore.open(store_dir)
    assert main(["identify", query, "--store", str(tmp_path / "none")]) == 2
    assert "no speaker store in" in capsys.readouterr().err


def test_faiss_index_gives_the_exact_answers(
    store_dir: Path, files: dict[str, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("faiss", reason="the faiss index needs pip install 'voxvec[index]'")
    queries = [str(files["0005"][3]), str(files[STRANGER][0])]
    answers = []
    for index in ("exact", "faiss"):
        argv = ["identify", *queries, "--store", str(store_dir), "--json", "--index", index]
        assert main(argv) == 0
        answers.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    for exact, approx in zip(*answers, strict=True):
        assert approx["speaker"] == exact["speaker"]
        assert [c["speaker"] for c in approx["candidates"]] == [
            c["speaker"] for c in exact["candidates"]
        ]
        np.testing.assert_allclose(
            [c["score"] for c in approx["candidates"]],
            [c["score"] for c in exact["candidates"]],
            atol=1e-6,
        )
