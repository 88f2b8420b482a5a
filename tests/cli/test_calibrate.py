"""Tests of ``voxvec calibrate`` on real speech: the file it writes and its use by verify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import voxvec
from voxvec.apps.calibration import Calibration
from voxvec.apps.identity import ModelIdentity
from voxvec.cli import main
from voxvec.eval import metrics
from voxvec.eval.trials import generate_trials
from voxvec.eval.verify import score_trials


@pytest.fixture(scope="module")
def manifest(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 files each of 4 speechocean762 speakers."""
    root = shared_data / "speechocean762" / "audio"
    rows = [
        f"{path},{speaker}"
        for speaker in ("0001", "0005", "0006", "0024")
        for path in sorted((root / speaker).glob("*.ogg"))[:4]
    ]
    path = tmp_path_factory.mktemp("cal") / "labelled.csv"
    path.write_text("path,speaker\n" + "\n".join(rows) + "\n")
    return path


def test_calibrate_writes_a_calibration_of_this_model(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cal.json"
    argv = ["calibrate", "--manifest", str(manifest), "--out", str(out), "--n-trials", "0"]
    argv += ["--precision", "float32"]  # batched like the library's embed below, to 1e-6
    assert main([*argv, "--far", "0.1", "--far", "0.01"]) == 0
    printed = capsys.readouterr().out
    cal = Calibration.load(out)
    # every pair of 16 files: 4 * 6 target and 120 - 24 non-target trials
    assert cal.fitted_on["n_target"] == 24 and cal.fitted_on["n_nontarget"] == 96
    assert cal.fitted_on["n_speakers"] == 4 and cal.fitted_on["manifest"] == str(manifest)
    assert set(cal.thresholds) == {"eer", "far10"}  # 96 non-targets cannot resolve 1%
    embedder = voxvec.load(precision="float32")
    assert cal.model == ModelIdentity.of(embedder)
    # the numbers are those of the same trials scored by the library
    from voxvec.data.manifest import read_manifest

    items = read_manifest(manifest)
    trials = generate_trials(items)
    emb = dict(zip([i.path for i in items], embedder.embed([i.path for i in items]), strict=True))
    scores = score_trials(emb, trials)
    labels = np.array([t.label for t in trials])
    eer, threshold = metrics.eer(scores, labels)
    assert cal.quality["eer"] == pytest.approx(eer, abs=1e-9)
    assert cal.thresholds["eer"].score == pytest.approx(threshold, abs=1e-4)
    assert cal.quality["min_cllr"] == pytest.approx(metrics.min_cllr(scores, labels), abs=1e-3)
    assert cal.quality["cllr"] >= cal.quality["min_cllr"]
    assert f"EER {eer * 100:.2f}%" in printed and "far10    threshold" in printed
    assert json.loads(out.read_text())["format"] == "voxvec-calibration"

    # verify takes it: the default operating point is the calibration's eer
    a, b = items[0].path, items[1].path
    assert main(["verify", str(a), str(b), "--calibration", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["threshold"] == cal.thresholds["eer"].score
    assert result["llr"] == pytest.approx(cal.slope * result["score"] + cal.offset)
