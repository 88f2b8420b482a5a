"""Tests of ``voxvec eval``: real files, generated or given trials, JSON report, plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from voxvec.cli import main
from voxvec.data.manifest import ManifestItem, read_manifest, write_manifest
from voxvec.eval.trials import read_trials
from voxvec.models import create_model
from voxvec.weights import save_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained ConvGRU saved as a bundle (what --model accepts as a path)."""
    torch.manual_seed(0)
    model = create_model(
        "convgru",
        conv_layers=[[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2]],
        hidden_size=64,
        n_layers=1,
        embed_dim=32,
    )
    return save_bundle(model, tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture
def manifest(shared_data: Path, tmp_path: Path) -> Path:
    """A test CSV of 4 real speakers x 3 recordings, plus a cohort CSV of 3 other speakers."""
    items = read_manifest(shared_data / "speechocean762" / "manifest.csv")
    speakers = sorted({i.speaker for i in items})

    def pick(chosen: list[str], files: int) -> list[ManifestItem]:
        return [i for s in chosen for i in [j for j in items if j.speaker == s][:files]]

    write_manifest(pick(speakers[:4], 3), tmp_path / "test.csv")
    write_manifest(pick(speakers[4:7], 2), tmp_path / "cohort.csv")
    return tmp_path / "test.csv"


def test_eval_generated_trials_json_and_plot(
    bundle: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "out" / "report.json"
    trials_path = tmp_path / "out" / "trials.txt"
    plot_path = tmp_path / "out" / "umap.png"
    args = [
        "eval",
        "--model",
        str(bundle),
        "--manifest",
        str(manifest),
        "--n-trials",
        "30",
        "--target-ratio",
        "0.3",
        "--write-trials",
        str(trials_path),
        "--json",
        str(report_path),
        "--cohort",
        str(tmp_path / "cohort.csv"),
        "--top-k",
        "2",
        "--n-bootstrap",
        "50",
        "--device",
        "cpu",
        "--batch-size",
        "4",
    ]
    has_plot = all(importlib.util.find_spec(m) for m in ("sklearn", "matplotlib"))
    if has_plot:
        args += ["--plot", str(plot_path), "--plot-method", "tsne"]

    assert main(args) == 0

    printed = capsys.readouterr().out
    assert "EER (%)" in printed and "as-norm" in printed
    report = json.loads(report_path.read_text())
    assert report["model"] == str(bundle) and report["trials"] == "30 sampled"
    assert report["n_trials"] == 30 and report["n_target"] == 9 and report["n_failed_files"] == 0
    for metrics in (report["raw"], report["normalized"]):
        assert 0.0 <= metrics["eer"] <= 1.0
        low, high = metrics["eer_ci"]
        assert 0.0 <= low <= high <= 1.0
        assert set(metrics["min_dcf"]) == {"0.01", "0.05"}
    assert report["normalization"]["cohort_size"] == 3
    trials = read_trials(trials_path)
    assert len(trials) == 30 and sum(t.label for t in trials) == 9
    assert not trials_path.read_text().split()[1].startswith("/")  # relative to the list
    assert all(t.path1.is_file() and t.path2.is_file() for t in trials)
    if has_plot:
        assert plot_path.read_bytes()[:4] == b"\x89PNG"


def test_eval_with_trial_list_reuses_it(
    bundle: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = read_manifest(manifest)
    trials_path = tmp_path / "given.txt"
    trials_path.write_text(
        f"1 {items[0].path} {items[1].path}\n0 {items[0].path} {items[3].path}\n"
        f"1 {items[4].path} {items[5].path}\n0 {items[5].path} {items[9].path}\n"
    )
    code = main(
        [
            "eval",
            "--model",
            str(bundle),
            "--manifest",
            str(manifest),
            "--trials",
            str(trials_path),
            "--n-bootstrap",
            "0",
            "--device",
            "cpu",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["trials"] == str(trials_path)
    assert report["n_trials"] == 4 and report["n_target"] == 2
    assert report["raw"]["eer_ci"] is None


def test_eval_errors(
    bundle: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("1 a.wav b.wav\n")
    code = main(
        ["eval", "--model", str(bundle), "--manifest", str(manifest), "--trials", str(outside)]
    )
    assert code == 2
    assert "not in the manifest" in capsys.readouterr().err
    code = main(
        [
            "eval",
            "--model",
            str(bundle),
            "--manifest",
            str(manifest),
            "--trials",
            str(outside),
            "--write-trials",
            str(tmp_path / "w.txt"),
        ]
    )
    assert code == 2
    assert "--write-trials" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--manifest", str(manifest), "--trials", "t.txt", "--n-trials", "5"])
    assert exit_info.value.code == 2
    assert "--n-trials: not allowed with argument --trials" in capsys.readouterr().err


def test_eval_reports_cllr_of_a_calibration_of_this_model(
    bundle: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    import voxvec
    from voxvec.apps.calibration import fit_calibration
    from voxvec.apps.identity import ModelIdentity

    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0.8, 0.1, 200), rng.normal(0.3, 0.1, 2000)]
    labels = np.r_[np.ones(200), np.zeros(2000)]
    mine = ModelIdentity.of(voxvec.load(bundle, "cpu"))
    cal = fit_calibration(scores, labels, model=mine).save(tmp_path / "cal.json")
    base = ["eval", "--model", str(bundle), "--manifest", str(manifest), "--n-bootstrap", "0"]
    assert main([*base, "--calibration", str(cal), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["calibration"] == str(cal)
    assert report["raw"]["cllr"] is not None and report["raw"]["cllr"] >= report["raw"]["min_cllr"]
    out = capsys.readouterr().out
    assert f"{report['raw']['cllr']:.4f}" in out and "min Cllr (bits)" in out
    theirs = fit_calibration(scores, labels, model=ModelIdentity("x", "0" * 64, 32, 16000))
    assert main([*base, "--calibration", str(theirs.save(tmp_path / "x.json"))]) == 2
    assert "made with model 'x'" in capsys.readouterr().err


def test_eval_writes_scores_and_a_bundle_with_its_thresholds(
    bundle: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv

    import numpy as np

    import voxvec
    from voxvec.eval.verify import path_key

    scores_path, model_path = tmp_path / "scores.csv", tmp_path / "tuned.safetensors"
    base = ["eval", "--model", str(bundle), "--manifest", str(manifest), "--n-bootstrap", "0"]
    args = [*base, "--n-trials", "30", "--target-ratio", "0.3", "--json", str(tmp_path / "r.json")]
    args += ["--write-scores", str(scores_path), "--write-thresholds", str(model_path)]
    args += ["--cohort", str(tmp_path / "cohort.csv"), "--top-k", "2"]
    assert main(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    with scores_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == report["n_trials"] == 30
    assert list(rows[0]) == ["path1", "path2", "score", "as_norm", "label"]
    assert sum(int(r["label"]) for r in rows) == report["n_target"]
    # The scores are those the metrics were computed on: the EER threshold is one of them.
    assert report["raw"]["eer_threshold"] == pytest.approx(
        min(
            (float(r["score"]) for r in rows), key=lambda s: abs(s - report["raw"]["eer_threshold"])
        ),
        abs=1e-6,
    )
    # ... and they are the cosines of the files' embeddings.
    embedder = voxvec.load(bundle, "cpu")
    emb = embedder.embed([rows[0]["path1"], rows[0]["path2"]])
    assert float(rows[0]["score"]) == pytest.approx(float(emb[0] @ emb[1]), abs=1e-5)
    assert path_key(rows[0]["path1"]) == rows[0]["path1"]  # normalised, absolute here

    tuned = voxvec.load(model_path, "cpu")
    assert tuned.card["thresholds"] == {
        "eer": round(report["raw"]["eer_threshold"], 4),
        "far1": round(report["raw"]["far_threshold"], 4),
    }
    assert "voxvec eval on" in tuned.card["thresholds_from"]
    np.testing.assert_allclose(tuned.embed(rows[0]["path1"]), embedder.embed(rows[0]["path1"]))
    score, same = tuned.verify(rows[0]["path1"], rows[0]["path2"])
    assert same == (score >= tuned.card["thresholds"]["eer"])
    assert "written to" in capsys.readouterr().out


def test_eval_summarises_failures_by_reason_with_the_option(
    bundle: Path,
    manifest: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import numpy as np
    import soundfile as sf

    items = read_manifest(manifest)
    short = []
    for k in range(3):  # 0.3 s of noise per speaker: under min_speech_s
        path = tmp_path / f"short{k}.wav"
        sf.write(path, np.random.default_rng(k).normal(0, 0.1, 4800).astype(np.float32), 16000)
        short.append(ManifestItem(path, items[3 * k].speaker))
    write_manifest(items + short, tmp_path / "with-short.csv")
    args = ["eval", "--model", str(bundle), "--manifest", str(tmp_path / "with-short.csv")]
    args += ["--n-bootstrap", "0", "--json", str(tmp_path / "r.json"), "--device", "cpu"]
    assert main(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["failure_reasons"] == {"too little speech (under min_speech_s)": 3}
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # one line, not one per file
    assert "3 file(s) failed: 3 too little speech" in warnings[0].getMessage()
    captured = capsys.readouterr()
    assert "3 failed (3 too little speech (under min_speech_s))" in captured.out
    assert "--min-speech-s 0.5" in captured.err and "0 embeds them all" in captured.err
    assert main([*args, "--min-speech-s", "0"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["n_failed_files"] == 0


def test_eval_report_says_what_ran(manifest: Path, tmp_path: Path) -> None:
    args = ["eval", "--manifest", str(manifest), "--n-trials", "10", "--n-bootstrap", "0"]
    args += ["--json", str(tmp_path / "r.json"), "--vad", "auto", "--threads", "1"]
    before = torch.get_num_threads()
    try:
        assert main(args) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"] == "voxvec-default"  # the default model, named
    assert report["precision"] in ("float32 (auto)", "bfloat16 (auto)")
    silero = importlib.util.find_spec("silero_vad") is not None
    assert report["vad"] == ("silero (auto)" if silero else "energy (auto)")
    assert report["threads"] == "1"


def test_missing_extras_fail_before_any_work(
    bundle: Path, manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import voxvec
    import voxvec.audio.vad as vad
    import voxvec.eval.plots as plots

    real = importlib.util.find_spec
    hidden = {"umap", "silero_vad"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a)
    )

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(voxvec, "load", no_load)
    assert plots.importlib.util is importlib.util and vad.importlib.util is importlib.util
    base = ["eval", "--model", str(bundle), "--manifest", str(manifest)]
    assert main([*base, "--plot", str(tmp_path / "p.png")]) == 2
    assert "umap-learn is needed" in capsys.readouterr().err
    assert main([*base, "--vad", "silero"]) == 2
    assert "pip install 'voxvec[vad]'" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
