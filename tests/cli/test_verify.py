"""Tests of ``voxvec verify`` on real speech: sides of several files, thresholds, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import voxvec
from voxvec.apps.calibration import fit_calibration
from voxvec.apps.identity import ModelIdentity
from voxvec.cli import main
from voxvec.inference import similarity
from voxvec.weights import ALIASES, DEFAULT_MODEL


@pytest.fixture(scope="module")
def files(shared_data: Path) -> dict[str, list[Path]]:
    root = shared_data / "speechocean762" / "audio"
    return {s: sorted((root / s).glob("*.ogg"))[:3] for s in ("0001", "0005")}


@pytest.fixture(scope="module")
def embedder() -> voxvec.Embedder:
    return voxvec.load()


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["verify", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_several_files_per_side_are_one_speaker(
    files: dict[str, list[Path]], embedder, capsys: pytest.CaptureFixture[str]
) -> None:
    a1, a2, a3 = files["0001"]
    out = run_json(capsys, f"{a1},{a2}", str(a3))
    expected = similarity(embedder.embed_speaker([a1, a2]), embedder.embed([a3])[0])
    assert out["score"] == pytest.approx(expected, abs=1e-5)
    assert out["n_a"] == 2 and out["n_b"] == 1 and out["a"] == [str(a1), str(a2)]
    assert out["threshold"] == embedder.resolve_threshold("eer")
    assert out["same"] is (expected >= out["threshold"]) and out["same"] is True  # 0.70 vs 0.46
    assert out["threshold_source"].startswith(
        f"operating point 'eer' of {ALIASES[DEFAULT_MODEL]}'s card"
    )
    assert out["llr"] is None
    # a folder is a side too; another speaker is rejected at the far1 point
    folder = a1.parent
    out = run_json(capsys, str(folder), str(files["0005"][0]), "--threshold", "far1")
    assert out["n_a"] == len(list(folder.glob("*.ogg"))) and out["same"] is False
    assert out["threshold"] == embedder.resolve_threshold("far1")


def test_text_output_and_calibration(
    files: dict[str, list[Path]], embedder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0.6, 0.1, 500), rng.normal(0.1, 0.1, 5000)]
    labels = np.r_[np.ones(500), np.zeros(5000)]
    cal = fit_calibration(scores, labels, model=ModelIdentity.of(embedder))
    cal_path = cal.save(tmp_path / "cal.json")
    a, b = str(files["0001"][0]), str(files["0001"][1])
    assert main(["verify", a, b, "--calibration", str(cal_path), "--threshold", "far1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    score = float(similarity(embedder.embed(a)[0], embedder.embed(b)[0]))
    assert lines[0] == f"score {score:.4f}"
    llr = cal.slope * score + cal.offset
    favours = "the same speaker" if llr > 0 else "different speakers"
    assert lines[1] == f"llr {llr:.3f} (calibrated log-likelihood ratio: favours {favours})"
    threshold = cal.thresholds["far1"].score
    decision = "same speaker" if score >= threshold else "different speakers"
    assert lines[2] == (
        f"decision {decision} (threshold {threshold:.4f}: operating point 'far1' of "
        f"calibration {cal_path}, fitted on ?: 500 target / 5000 non-target trials, ? speakers)"
    )
    # a calibration of another model is refused with a clear error
    other = fit_calibration(scores, labels, model=ModelIdentity("gru-rf5", "0" * 64, 256, 22050))
    other_path = other.save(tmp_path / "other.json")
    assert main(["verify", a, b, "--calibration", str(other_path)]) == 2
    err = capsys.readouterr().err
    assert "made with model 'gru-rf5'" in err and "not comparable" in err


def test_missing_file_names_it(files: dict[str, list[Path]], tmp_path: Path, capsys) -> None:
    assert main(["verify", str(files["0001"][0]), str(tmp_path / "nope.wav")]) == 2
    assert "nope.wav" in capsys.readouterr().err
