"""Tests of voxvec.apps.calibration: the logistic fit, operating points, files, thresholds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from voxvec.apps.calibration import (
    Calibration,
    fit_calibration,
    fit_logistic,
    identification_threshold,
    resolve_threshold,
)
from voxvec.apps.identity import ModelIdentity, ModelMismatchError
from voxvec.eval import metrics
from voxvec.inference import Embedder
from voxvec.models import create_model


def gaussian_trials(n_target: int, n_nontarget: int, seed: int = 0):
    """Scores whose true llr is known: target N(1, 1), non-target N(-1, 1) -> llr = 2 s."""
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(1.0, 1.0, n_target), rng.normal(-1.0, 1.0, n_nontarget)]
    return scores, np.r_[np.ones(n_target, int), np.zeros(n_nontarget, int)]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    torch.manual_seed(0)
    return Embedder(create_model("ecapa", channels=32, mfa_channels=96), card={"name": "tiny"})


def test_logistic_fit_recovers_the_true_llr() -> None:
    scores, labels = gaussian_trials(20000, 20000)
    slope, offset = fit_logistic(scores, labels)
    assert slope == pytest.approx(2.0, abs=0.06) and offset == pytest.approx(0.0, abs=0.04)
    # the class-balanced fit does not depend on how many trials each class has
    scores, labels = gaussian_trials(4000, 36000, seed=1)
    slope, offset = fit_logistic(scores, labels)
    assert slope == pytest.approx(2.0, abs=0.1) and offset == pytest.approx(0.0, abs=0.08)


def test_fit_minimises_cllr_among_affine_maps() -> None:
    scores, labels = gaussian_trials(300, 900, seed=2)
    scores = 0.3 * scores + 0.1  # cosine-like range: badly calibrated as llrs
    slope, offset = fit_logistic(scores, labels)
    best = metrics.cllr(slope * scores + offset, labels)
    assert best < metrics.cllr(scores, labels)
    for ds, do in [(0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)]:
        assert best <= metrics.cllr((slope + ds) * scores + offset + do, labels) + 1e-9
    assert best >= metrics.min_cllr(scores, labels)


def test_separable_trials_give_a_finite_fit() -> None:
    slope, offset = fit_logistic([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert math.isfinite(slope) and slope > 0 and math.isfinite(offset)


def test_operating_points_and_curve() -> None:
    scores, labels = gaussian_trials(2000, 20000, seed=3)
    cal = fit_calibration(scores, labels, fars=(0.01, 0.001, 0.0001))
    assert set(cal.thresholds) == {"eer", "far1", "far0.1"}  # 20000 non-targets: not 0.01%
    eer, eer_threshold = metrics.eer(scores, labels)
    assert cal.thresholds["eer"].score == eer_threshold
    assert cal.quality["eer"] == eer
    far1 = cal.thresholds["far1"]
    assert far1.score == metrics.threshold_at_far(scores, labels, 0.01)
    assert far1.far <= 0.01 and far1.frr == metrics.error_rates_at(scores, labels, far1.score)[1]
    assert far1.llr == pytest.approx(cal.slope * far1.score + cal.offset)
    assert cal.quality["cllr"] == pytest.approx(metrics.cllr(cal.llr(scores), labels))
    assert cal.quality["min_cllr"] == metrics.min_cllr(scores, labels)
    assert cal.fitted_on == {"n_target": 2000, "n_nontarget": 20000}
    # the curve matches threshold_at_far on its grid and stops where the trials stop resolving
    for far, threshold in cal.far_curve:
        assert threshold == metrics.threshold_at_far(scores, labels, far)
    assert cal.far_curve[-1][0] >= 1 / 20000
    assert cal.score_at_far(0.01) == (pytest.approx(far1.score), True)
    lowest = cal.far_curve[-1][1]
    assert cal.score_at_far(1e-6) == (lowest, False)
    between = cal.score_at_far(0.003)[0]
    assert cal.thresholds["far1"].score <= between <= cal.thresholds["far0.1"].score


def test_save_load_round_trip_and_bad_files(tmp_path: Path) -> None:
    scores, labels = gaussian_trials(500, 5000)
    model = ModelIdentity("m", "f" * 64, 256, 16000)
    cal = fit_calibration(scores, labels, model=model, fitted_on={"manifest": "valid.csv"})
    path = cal.save(tmp_path / "cal.json")
    back = Calibration.load(path)
    assert back.source == str(path)
    assert back.to_dict() == cal.to_dict()
    assert "valid.csv: 500 target / 5000 non-target" in back.describe()
    np.testing.assert_allclose(back.llr(scores), cal.llr(scores))

    document = json.loads(path.read_text())
    (tmp_path / "v2.json").write_text(json.dumps(dict(document, version=2)))
    with pytest.raises(ValueError, match="version 2; this voxvec reads version 1"):
        Calibration.load(tmp_path / "v2.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a voxvec calibration file"):
        Calibration.load(tmp_path / "other.json")
    (tmp_path / "bad.json").write_text(json.dumps(dict(document, llr={"slope": 1})))
    with pytest.raises(ValueError, match="malformed calibration field"):
        Calibration.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="calibration file not found"):
        Calibration.load(tmp_path / "missing.json")


def test_resolve_threshold_sources(embedder: Embedder) -> None:
    scores, labels = gaussian_trials(500, 5000)
    mine = fit_calibration(scores, labels, model=ModelIdentity.of(embedder))
    assert resolve_threshold(0.7, embedder, mine).source == "given"
    chosen = resolve_threshold("far1", embedder, mine)
    assert chosen is not None and chosen.value == mine.thresholds["far1"].score
    assert chosen.source.startswith("operating point 'far1' of the calibration")
    default = resolve_threshold(None, embedder, mine)
    assert default is not None and default.value == mine.thresholds["eer"].score
    with pytest.raises(ValueError, match=r"no operating point 'far5'.*\['eer', 'far0.1', 'far1'\]"):
        resolve_threshold("far5", embedder, mine)
    # no calibration: the model card, or nothing
    assert resolve_threshold(None, embedder) is None
    carded = Embedder(embedder.model, card={"name": "tiny", "thresholds": {"eer": 0.4}})
    card_point = resolve_threshold(None, carded)
    assert card_point is not None and card_point.value == 0.4
    assert card_point.source == "operating point 'eer' of tiny's card"
    # a calibration of another model is refused
    theirs = fit_calibration(scores, labels, model=ModelIdentity("x", "0" * 64, 256, 16000))
    with pytest.raises(ModelMismatchError, match="made with model 'x'"):
        resolve_threshold("eer", embedder, theirs)


def test_identification_threshold_grows_with_the_store(embedder: Embedder) -> None:
    scores, labels = gaussian_trials(1000, 200000, seed=4)
    cal = fit_calibration(scores, labels, model=ModelIdentity.of(embedder))
    one = identification_threshold(None, embedder, 1, calibration=cal, open_set_far=0.01)
    many = identification_threshold(None, embedder, 100, calibration=cal, open_set_far=0.01)
    assert one is not None and many is not None
    assert one.value == pytest.approx(cal.score_at_far(0.01)[0])
    # 100 speakers at 1% open-set: each comparison may false-accept 1 - 0.99^(1/100) = 1.00498e-4
    per_comparison = 1 - 0.99 ** (1 / 100)
    assert per_comparison == pytest.approx(1.004983e-4, rel=1e-5)
    assert many.value == pytest.approx(cal.score_at_far(per_comparison)[0], abs=1e-9)
    assert many.value > one.value
    assert "per-comparison FAR 0.0001 on the calibration" in many.source
    huge = identification_threshold(None, embedder, 10**6, calibration=cal, open_set_far=0.01)
    assert huge is not None and "beyond what its trials resolve" in huge.source
    given = identification_threshold(0.9, embedder, 100, calibration=cal)
    assert given is not None and given.value == 0.9
    # no calibration: the card's far1 verification point
    carded = Embedder(embedder.model, card={"name": "tiny", "thresholds": {"far1": 0.5}})
    card_point = identification_threshold(None, carded, 100)
    assert card_point is not None and card_point.value == 0.5


def test_model_identity_tells_weights_apart(embedder: Embedder) -> None:
    same = ModelIdentity.of(Embedder(embedder.model, card={"name": "renamed"}))
    assert same.fingerprint == ModelIdentity.of(embedder).fingerprint and same.name == "renamed"
    torch.manual_seed(1)
    other = Embedder(create_model("ecapa", channels=32, mfa_channels=96), card={"name": "tiny"})
    assert ModelIdentity.of(other).fingerprint != same.fingerprint
    with pytest.raises(ModelMismatchError, match="use --model tiny"):
        ModelIdentity.of(embedder).check(ModelIdentity.of(other), "store X")
    round_trip = ModelIdentity.from_dict(same.to_dict(), "here")
    assert round_trip == same
    with pytest.raises(ValueError, match="here: the model identity .* is malformed"):
        ModelIdentity.from_dict({"name": "x"}, "here")
