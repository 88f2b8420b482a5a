"""Tests for voxvec.eval.verify: embedding once, scoring trials, reports, AS-norm, failures."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from voxvec.data.manifest import ManifestItem, read_manifest
from voxvec.eval.trials import Trial, generate_trials
from voxvec.eval.verify import (
    embed_files,
    evaluate,
    evaluate_embeddings,
    path_key,
    score_trials,
)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class TableEmbedder:
    """A stand-in model: embeddings looked up by path; unknown paths fail like missing files."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.calls: list[str] = []

    def iter_embed(self, paths: Sequence[str], batch_size: int = 16) -> Iterator[SimpleNamespace]:
        for path in paths:
            self.calls.append(path)
            if path in self.table:
                yield SimpleNamespace(embedding=self.table[path], error=None)
            else:
                yield SimpleNamespace(embedding=None, error=FileNotFoundError(f"not found: {path}"))


def clustered(n_speakers: int, files: int, spread: float, seed: int = 0, dim: int = 16):
    """Manifest items and embeddings of synthetic speakers (cluster centre + noise)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(n_speakers, dim)))
    items, table = [], {}
    for s in range(n_speakers):
        for u in range(files):
            item = ManifestItem(Path(f"/data/s{s}/{u}.wav"), f"s{s}")
            items.append(item)
            table[path_key(item.path)] = unit(centres[s] + spread * rng.normal(size=dim))
    return items, table


def test_score_trials_cosine_and_path_normalisation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    embeddings = {
        "a.wav": np.array([3.0, 0.0]),  # relative key, not unit length
        str(tmp_path / "b.wav"): np.array([1.0, 1.0]),
        tmp_path / "sub" / "c.wav": np.array([0.0, -2.0]),
    }
    trials = [
        Trial(1, tmp_path / "a.wav", Path("b.wav")),
        Trial(0, Path("sub/../a.wav"), tmp_path / "sub/c.wav"),
        Trial(0, Path("sub/c.wav"), Path("sub/c.wav")),
    ]
    np.testing.assert_allclose(score_trials(embeddings, trials), [np.sqrt(0.5), 0.0, 1.0])
    with pytest.raises(KeyError, match="d.wav"):
        score_trials(embeddings, [Trial(1, Path("a.wav"), Path("d.wav"))])
    assert score_trials(embeddings, []).shape == (0,)


def test_embed_files_once_and_reports_failures() -> None:
    items, table = clustered(3, 2, 0.1)
    embedder = TableEmbedder(table)
    paths = [item.path for item in items] * 2 + [Path("/data/missing.wav")]
    embeddings, failures = embed_files(embedder, paths, batch_size=4)
    assert len(embedder.calls) == len(set(embedder.calls)) == 7  # each file once
    assert set(embeddings) == set(table)
    assert list(failures) == [path_key("/data/missing.wav")]
    assert failures[path_key("/data/missing.wav")] == f"not found: {path_key('/data/missing.wav')}"


def test_evaluate_separable_speakers() -> None:
    items, table = clustered(12, 4, 0.2)
    trials = generate_trials(items, seed=0)
    report = evaluate(TableEmbedder(table), items, trials, n_bootstrap=100)
    assert report.n_trials == len(trials) == 48 * 47 // 2
    assert report.n_target == 12 * 6 and report.n_nontarget == report.n_trials - 12 * 6
    assert report.n_files == 48 and report.n_speakers == 12 and report.n_dropped_trials == 0
    assert report.raw.eer < 0.05
    assert report.raw.eer_ci is not None
    assert report.raw.eer_ci[0] <= report.raw.eer <= report.raw.eer_ci[1]
    assert set(report.raw.min_dcf) == {0.01, 0.05}
    assert report.normalized is None and report.primary is report.raw
    assert report.embeddings.keys() == table.keys()
    for key, vector in report.embeddings.items():
        np.testing.assert_array_equal(vector, table[key].astype(np.float32))
    assert "embeddings" not in report.to_dict()
    table_text = report.format_table()
    assert "EER (%)" in table_text and "minDCF (p=0.01)" in table_text
    assert "as-norm" not in table_text


def test_noisier_speakers_give_higher_eer() -> None:
    results = []
    for spread in (0.2, 0.5, 1.0):
        items, table = clustered(12, 4, spread, seed=1)
        report = evaluate(TableEmbedder(table), items, generate_trials(items), n_bootstrap=0)
        assert report.raw.eer_ci is None
        results.append(report.raw.eer)
    assert results[0] < results[1] < results[2] < 0.5


def test_failed_files_drop_their_trials() -> None:
    items, table = clustered(6, 3, 0.3)
    lost = path_key(items[0].path)
    del table[lost]
    trials = generate_trials(items, seed=0)
    n_with_lost = sum(lost in (path_key(t.path1), path_key(t.path2)) for t in trials)
    report = evaluate(TableEmbedder(table), items, trials, n_bootstrap=50)
    assert report.n_dropped_trials == n_with_lost == 17
    assert report.n_trials == len(trials) - 17
    assert list(report.failed_files) == [lost]
    assert report.n_files == 17


def test_trial_file_not_in_manifest_fails_before_embedding() -> None:
    items, table = clustered(3, 2, 0.3)
    embedder = TableEmbedder(table)
    trials = [Trial(1, items[0].path, Path("/elsewhere/x.wav"))]
    with pytest.raises(ValueError, match="not in the manifest"):
        evaluate(embedder, items, trials)
    assert embedder.calls == []


def test_everything_failed_is_a_clear_error() -> None:
    items, _ = clustered(3, 2, 0.3)
    with pytest.raises(ValueError, match="no trial left"):
        evaluate(TableEmbedder({}), items, generate_trials(items))


def test_as_norm_with_cohort_and_json() -> None:
    items, table = clustered(10, 4, 0.5, seed=2)
    cohort_items, cohort_table = clustered(30, 3, 0.5, seed=3)
    cohort_items = [
        ManifestItem(Path("/cohort") / i.path.name, "c" + i.speaker) for i in cohort_items
    ]
    cohort_table = {path_key(Path("/cohort") / Path(k).name): v for k, v in cohort_table.items()}
    # one test speaker also in the cohort: left out of it
    cohort_items.append(items[0])
    embedder = TableEmbedder({**table, **cohort_table})
    trials = generate_trials(items, seed=0)
    report = evaluate(embedder, items, trials, cohort_items=cohort_items, top_k=10, n_bootstrap=50)
    assert report.normalized is not None and report.primary is report.normalized
    assert report.normalization == {"method": "as-norm", "top_k": 10, "cohort_size": 30}
    assert path_key(items[0].path) not in embedder.calls[len(table) :]
    assert "as-norm" in report.format_table()
    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert document["n_trials"] == len(trials)
    assert document["normalized"]["eer"] == report.normalized.eer
    assert set(document["raw"]["min_dcf"]) == {"0.01", "0.05"}
    assert document["raw"]["eer_ci"] == list(report.raw.eer_ci)


def test_infinite_thresholds_become_null_in_json() -> None:
    # constant scores: rejecting everything is the best minDCF operating point (threshold inf)
    items = [ManifestItem(Path(f"/d/{s}{u}.wav"), s) for s in "ab" for u in range(2)]
    embeddings = {path_key(i.path): np.ones(4) for i in items}
    report = evaluate_embeddings(embeddings, items, generate_trials(items), n_bootstrap=0)
    assert report.raw.min_dcf[0.01][1] == np.inf
    assert report.to_dict()["raw"]["min_dcf"]["0.01"]["threshold"] is None
    json.dumps(report.to_dict(), allow_nan=False)


@pytest.fixture
def small_embedder():
    """An untrained, shrunken ConvGRU behind the real Embedder (fast on a CPU)."""
    from voxvec.inference import Embedder
    from voxvec.models import create_model

    model = create_model(
        "convgru",
        conv_layers=[[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2]],
        hidden_size=64,
        n_layers=1,
        embed_dim=32,
    )
    return Embedder(model, device="cpu", min_speech_s=0.0)


def real_items(shared_data: Path, n_speakers: int = 4, files: int = 3) -> list[ManifestItem]:
    items = read_manifest(shared_data / "speechocean762" / "manifest.csv")
    chosen: list[ManifestItem] = []
    for speaker in sorted({i.speaker for i in items})[:n_speakers]:
        chosen += [i for i in items if i.speaker == speaker][:files]
    return chosen


def test_evaluate_real_speech_end_to_end(shared_data: Path, small_embedder, tmp_path: Path) -> None:
    items = real_items(shared_data)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEnot really")
    items.append(ManifestItem(broken, items[0].speaker))
    trials = generate_trials(items, seed=0)
    report = evaluate(small_embedder, items, trials, batch_size=4, n_bootstrap=100)
    assert list(report.failed_files) == [path_key(broken)]
    assert report.n_dropped_trials == len(items) - 1
    assert report.n_files == 12 and report.n_speakers == 4
    assert report.n_trials == 12 * 11 // 2 and report.n_target == 4 * 3
    assert 0.0 <= report.raw.eer <= 1.0
    assert all(0.0 <= v <= 1.0 + 1e-9 for v, _ in report.raw.min_dcf.values())
    assert -1.0 <= report.raw.eer_threshold <= 1.0
    json.dumps(report.to_dict(), allow_nan=False)


def test_report_has_min_cllr_and_cllr_of_a_calibration() -> None:
    from voxvec.eval import metrics

    items, table = clustered(10, 4, 0.6, seed=3)
    trials = generate_trials(items, seed=0)
    plain = evaluate(TableEmbedder(table), items, trials, n_bootstrap=0)
    scores = score_trials(table, trials)
    labels = np.array([t.label for t in trials])
    assert plain.raw.min_cllr == metrics.min_cllr(scores, labels)
    assert 0.0 < plain.raw.min_cllr < 1.0
    assert plain.raw.cllr is None
    assert plain.to_dict()["raw"]["cllr"] is None
    rows = {line[:24].strip(): line[24:].split() for line in plain.format_table().splitlines()}
    assert rows["min Cllr (bits)"] == [f"{plain.raw.min_cllr:.4f}"]
    assert rows["Cllr (bits)"] == ["-"]

    def llr(s: np.ndarray) -> np.ndarray:
        return 8.0 * s - 3.0

    calibrated = evaluate(TableEmbedder(table), items, trials, n_bootstrap=0, llr=llr)
    assert calibrated.raw.cllr == pytest.approx(metrics.cllr(llr(scores), labels), rel=1e-7)
    assert calibrated.raw.cllr >= calibrated.raw.min_cllr
    assert calibrated.raw.eer == plain.raw.eer  # the llr map changes nothing else
    document = json.loads(json.dumps(calibrated.to_dict()))
    assert document["raw"]["cllr"] == calibrated.raw.cllr
    rows = {line[:24].strip(): line[24:].split() for line in calibrated.format_table().splitlines()}
    assert rows["Cllr (bits)"] == [f"{calibrated.raw.cllr:.4f}"]


def test_failures_are_counted_by_the_reasons_the_embedder_gives(tmp_path: Path) -> None:
    import soundfile as sf
    import torch

    from voxvec.eval.verify import NO_SPEECH, TOO_LITTLE_SPEECH, describe_failures, failure_reasons
    from voxvec.inference import Embedder
    from voxvec.models import create_model

    torch.manual_seed(0)
    embedder = Embedder(create_model("ecapa", channels=32, se_channels=8, mfa_channels=48))
    rng = np.random.default_rng(0)
    files = []
    for k in range(2):
        files.append(tmp_path / f"short{k}.wav")
        sf.write(files[-1], rng.normal(0, 0.1, 4000).astype(np.float32), 16000)
    files.append(tmp_path / "silence.wav")
    sf.write(files[-1], np.zeros(32000, np.float32), 16000)
    files += [tmp_path / "gone1.wav", tmp_path / "gone2.wav"]
    embeddings, failed = embed_files(embedder, files)
    assert not embeddings and len(failed) == 5
    reasons = failure_reasons(failed)
    assert reasons[TOO_LITTLE_SPEECH] == 2 and reasons[NO_SPEECH] == 1
    (missing,) = set(reasons) - {TOO_LITTLE_SPEECH, NO_SPEECH}
    assert reasons[missing] == 2 and "not found" in missing and "gone" not in missing
    assert list(reasons.values()) == sorted(reasons.values(), reverse=True)
    assert describe_failures(failed).startswith(f"5 file(s) failed: 2 {TOO_LITTLE_SPEECH}; 2 ")
    assert describe_failures({}) == ""


def test_score_pairs_matches_score_trials() -> None:
    from voxvec.eval.verify import score_pairs

    rng = np.random.default_rng(0)
    table = {f"/x/{k}.wav": unit(rng.normal(size=8)) for k in range(3)}
    trials = [
        Trial(1, Path("/x/0.wav"), Path("/x/1.wav")),
        Trial(0, Path("/x/2.wav"), Path("/x/0.wav")),
    ]
    scores = score_pairs(table, [("/x/0.wav", "/x/1.wav"), ("/x/2.wav", "/x/../x/0.wav")])
    np.testing.assert_allclose(scores, score_trials(table, trials))
    np.testing.assert_allclose(scores[0], table["/x/0.wav"] @ table["/x/1.wav"])
    with pytest.raises(KeyError, match="no embedding for file /x/3.wav"):
        score_pairs(table, [("/x/3.wav", "/x/0.wav")])
    assert score_pairs(table, []).shape == (0,)
