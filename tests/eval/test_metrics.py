"""Known-answer tests for voxvec.eval.metrics (EER, minDCF, DET/ROC, thresholds, bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from voxvec.eval import metrics


def brute_force_rates(scores: np.ndarray, labels: np.ndarray) -> tuple[list, list, list]:
    """FAR/FRR by direct counting at every distinct score and +inf (accept: score >= t)."""
    thresholds = sorted(set(scores.tolist())) + [np.inf]
    far, frr = [], []
    for t in thresholds:
        far.append(
            sum(s >= t for s, y in zip(scores, labels, strict=True) if y == 0) / (labels == 0).sum()
        )
        frr.append(
            sum(s < t for s, y in zip(scores, labels, strict=True) if y == 1) / (labels == 1).sum()
        )
    return far, frr, thresholds


def random_trials(seed: int, n_target: int = 60, n_nontarget: int = 240, tie_decimals: int = 1):
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(1.0, 1.0, n_target), rng.normal(0.0, 1.0, n_nontarget)]
    labels = np.r_[np.ones(n_target, int), np.zeros(n_nontarget, int)]
    order = rng.permutation(scores.size)
    return np.round(scores[order], tie_decimals), labels[order]  # rounding makes ties


def test_perfect_separation() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1, -0.3])
    labels = np.array([1, 1, 1, 0, 0, 0])
    value, threshold = metrics.eer(scores, labels)
    assert value == 0.0
    assert 0.2 < threshold <= 0.7
    assert metrics.error_rates_at(scores, labels, threshold) == (0.0, 0.0)
    for p in (0.01, 0.05, 0.5):
        dcf, thr = metrics.min_dcf(scores, labels, p)
        assert dcf == 0.0 and 0.2 < thr <= 0.7
    assert 0.2 < metrics.threshold_at_far(scores, labels, 0.0) <= 0.7


def test_reversed_scores_give_eer_one() -> None:
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    assert metrics.eer(scores, np.array([1, 1, 0, 0]))[0] == pytest.approx(1.0)


def test_identical_distributions_give_half() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=20000)
    labels = rng.integers(0, 2, size=20000)
    assert metrics.eer(scores, labels)[0] == pytest.approx(0.5, abs=0.02)
    # all-equal scores: one operating point plus "reject all" -> exactly 0.5
    assert metrics.eer(np.zeros(10), np.r_[np.ones(5), np.zeros(5)])[0] == pytest.approx(0.5)


def test_hand_computed_example() -> None:
    # operating points (far, frr): t=0.1 (1, 0); 0.35 (.5, 0); 0.4 (.5, .5); 0.8 (0, .5); inf (0, 1)
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    far, frr, thr = metrics.det_curve(scores, labels)
    np.testing.assert_allclose(far, [1, 0.5, 0.5, 0, 0])
    np.testing.assert_allclose(frr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(thr, [0.1, 0.35, 0.4, 0.8, np.inf])
    assert metrics.eer(scores, labels) == pytest.approx((0.5, 0.4))
    # p=0.5: dcf = 0.5 frr + 0.5 far, normalised by 0.5 -> far + frr, best 0.5 at t = 0.35 or 0.8
    value, threshold = metrics.min_dcf(scores, labels, 0.5)
    assert value == pytest.approx(0.5) and threshold in (0.35, 0.8)


@pytest.mark.parametrize(("seed", "decimals"), [(0, 1), (1, 1), (2, 2), (3, 8), (4, 8)])
def test_agrees_with_brute_force_sweep(seed: int, decimals: int) -> None:
    scores, labels = random_trials(seed, tie_decimals=decimals)
    far_bf, frr_bf, thr_bf = brute_force_rates(scores, labels)
    far, frr, thr = metrics.det_curve(scores, labels)
    np.testing.assert_allclose(far, far_bf)
    np.testing.assert_allclose(frr, frr_bf)
    np.testing.assert_array_equal(thr, thr_bf)
    tpr = metrics.roc_curve(scores, labels)[1]
    np.testing.assert_allclose(tpr, 1 - np.asarray(frr_bf))

    value, threshold = metrics.eer(scores, labels)
    lower = max(min(a, b) for a, b in zip(far_bf, frr_bf, strict=True))
    upper = min(max(a, b) for a, b in zip(far_bf, frr_bf, strict=True))
    assert lower - 1e-12 <= value <= upper + 1e-12
    if len(set(scores.tolist())) == scores.size:  # without ties: one step of the coarser class
        assert upper - lower <= 1 / 60 + 1e-12
    far_t, frr_t = metrics.error_rates_at(scores, labels, threshold)
    assert abs(far_t - value) <= 0.1 and abs(frr_t - value) <= 0.1

    for p_target, c_miss, c_fa in ((0.01, 1, 1), (0.05, 1, 1), (0.3, 10, 1)):
        dcf_bf = [
            c_miss * p_target * b + c_fa * (1 - p_target) * a
            for a, b in zip(far_bf, frr_bf, strict=True)
        ]
        best = min(dcf_bf) / min(c_miss * p_target, c_fa * (1 - p_target))
        value, threshold = metrics.min_dcf(scores, labels, p_target, c_miss, c_fa)
        assert value == pytest.approx(best)
        assert 0.0 <= value <= 1.0
        assert dcf_bf[thr_bf.index(threshold)] == pytest.approx(min(dcf_bf))

    for target in (0.0, 0.01, 0.1, 0.5):
        t = metrics.threshold_at_far(scores, labels, target)
        assert metrics.error_rates_at(scores, labels, t)[0] <= target
        lower_thresholds = [x for x in thr_bf if x < t]
        if lower_thresholds:  # the next lower operating point accepts too many
            assert metrics.error_rates_at(scores, labels, lower_thresholds[-1])[0] > target


def test_min_dcf_normalisation_of_a_useless_system() -> None:
    # a constant score cannot beat the better trivial decision: normalised cost exactly 1
    scores = np.zeros(100)
    labels = np.r_[np.ones(10), np.zeros(90)]
    for p in (0.01, 0.05, 0.9):
        value, threshold = metrics.min_dcf(scores, labels, p)
        assert value == pytest.approx(1.0)
    assert metrics.min_dcf(scores, labels, 0.01)[1] == np.inf  # reject everything


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [1], "equal length"),
        ([[0.1, 0.2]], [[1, 0]], "1-D"),
        ([0.1, np.nan], [1, 0], "finite"),
        ([0.1, 0.2], [1, 2], "0 \\(non-target\\) or 1"),
        ([0.1, 0.2], [1, 1], "both target and non-target"),
    ],
)
def test_invalid_inputs(scores, labels, message) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.eer(scores, labels)


def test_invalid_parameters() -> None:
    scores, labels = [0.1, 0.9], [0, 1]
    with pytest.raises(ValueError, match="p_target"):
        metrics.min_dcf(scores, labels, 0.0)
    with pytest.raises(ValueError, match="costs"):
        metrics.min_dcf(scores, labels, 0.01, c_miss=0)
    with pytest.raises(ValueError, match="far"):
        metrics.threshold_at_far(scores, labels, 1.5)


def _speaker_trials(n_speakers: int, files: int, separation: float, seed: int):
    """Trials over all file pairs of synthetic speakers: score = separation*same + noise."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(n_speakers), files)
    i, j = np.triu_indices(spk.size, k=1)
    labels = (spk[i] == spk[j]).astype(int)
    # a per-speaker offset makes trials of one speaker correlated, as in real data
    offset = rng.normal(0, 0.5, n_speakers)
    scores = separation * labels + offset[spk[i]] + offset[spk[j]] + rng.normal(0, 1, i.size)
    names = np.array([f"s{k}" for k in range(n_speakers)])
    return scores, labels, names[spk[i]], names[spk[j]]


def test_bootstrap_interval_brackets_eer_and_is_seeded() -> None:
    scores, labels, s1, s2 = _speaker_trials(30, 4, 2.0, seed=0)
    value = metrics.eer(scores, labels)[0]
    low, high = metrics.eer_confidence_interval(scores, labels, s1, s2, n_bootstrap=200, seed=1)
    assert 0.0 <= low < value < high <= 1.0
    again = metrics.eer_confidence_interval(scores, labels, s1, s2, n_bootstrap=200, seed=1)
    assert again == (low, high)
    other = metrics.eer_confidence_interval(scores, labels, s1, s2, n_bootstrap=200, seed=2)
    assert other != (low, high)
    narrow = metrics.eer_confidence_interval(
        scores, labels, s1, s2, n_bootstrap=200, confidence=0.5, seed=1
    )
    assert low <= narrow[0] <= narrow[1] <= high


def test_bootstrap_over_speakers_is_wider_with_fewer_speakers() -> None:
    few = _speaker_trials(8, 6, 2.0, seed=3)
    many = _speaker_trials(64, 6, 2.0, seed=3)
    width_few = np.subtract(*metrics.eer_confidence_interval(*few, n_bootstrap=200)[::-1])
    width_many = np.subtract(*metrics.eer_confidence_interval(*many, n_bootstrap=200)[::-1])
    assert width_few > 1.5 * width_many


def test_bootstrap_of_perfect_system_is_zero_and_errors() -> None:
    scores = np.array([0.9, 0.8, 0.1, 0.2])
    labels = np.array([1, 1, 0, 0])
    s1, s2 = ["a", "b", "a", "a"], ["a", "b", "b", "c"]
    assert metrics.eer_confidence_interval(scores, labels, s1, s2, n_bootstrap=20) == (0.0, 0.0)
    with pytest.raises(ValueError, match="n_bootstrap"):
        metrics.eer_confidence_interval(scores, labels, s1, s2, n_bootstrap=0)
    with pytest.raises(ValueError, match="confidence"):
        metrics.eer_confidence_interval(scores, labels, s1, s2, confidence=1.0)
    with pytest.raises(ValueError, match="speakers1"):
        metrics.eer_confidence_interval(scores, labels, s1[:3], s2)


# ---------------------------------------------------------------- Cllr (hand-computed values)


def test_cllr_of_an_uninformative_system_is_one_bit() -> None:
    assert metrics.cllr([0.0, 0.0, 0.0], [1, 0, 0]) == pytest.approx(1.0)


def test_cllr_hand_computed() -> None:
    # target llr 2: log2(1 + e^-2) = 0.183118; non-target llr -1: log2(1 + e^-1) = 0.451941
    assert metrics.cllr([2.0, -1.0], [1, 0]) == pytest.approx((0.183118 + 0.451941) / 2, abs=1e-6)
    # two targets (llr 0 and 3), one non-target (llr 1): targets (1 + 0.070097) / 2,
    # non-target log2(1 + e) = 1.894636
    expected = ((1.0 + np.log2(1 + np.exp(-3.0))) / 2 + np.log2(1 + np.e)) / 2
    assert expected == pytest.approx((0.535049 + 1.894636) / 2, abs=1e-6)
    assert metrics.cllr([0.0, 3.0, 1.0], [1, 1, 0]) == pytest.approx(expected, abs=1e-12)


def test_cllr_penalises_confident_mistakes_without_bound() -> None:
    assert metrics.cllr([-20.0, 20.0], [1, 0]) == pytest.approx(20 / np.log(2), rel=1e-6)
    assert metrics.cllr([np.inf, -np.inf], [1, 0]) == 0.0
    assert metrics.cllr([-np.inf, -np.inf], [1, 0]) == np.inf
    with pytest.raises(ValueError, match="NaN"):
        metrics.cllr([np.nan, 0.0], [1, 0])
    with pytest.raises(ValueError, match="both target and non-target"):
        metrics.cllr([0.0, 1.0], [1, 1])


def test_pav_and_min_cllr_hand_computed() -> None:
    # sorted labels 0 1 0 1: PAV pools the middle pair -> posteriors 0, .5, .5, 1; balanced prior
    llrs = metrics.pav_llrs([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1])
    np.testing.assert_array_equal(llrs, [-np.inf, 0.0, 0.0, np.inf])
    # each class: one trial with 0 cost, one with 1 bit -> 0.5
    assert metrics.min_cllr([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1]) == pytest.approx(0.5)
    # labels 1 0 1 (2 targets, prior log-odds log 2): posteriors .5 .5 1 -> llrs -log 2, -log 2, inf
    # targets: (log2 3 + 0) / 2 = 0.792481; non-target: log2(1.5) = 0.584963
    np.testing.assert_allclose(
        metrics.pav_llrs([1.0, 2.0, 3.0], [1, 0, 1]), [-np.log(2), -np.log(2), np.inf]
    )
    assert metrics.min_cllr([1.0, 2.0, 3.0], [1, 0, 1]) == pytest.approx(
        (0.792481 + 0.584963) / 2, abs=1e-6
    )


def test_min_cllr_bounds_and_ties() -> None:
    assert metrics.min_cllr([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.0
    # every score tied: one block with the prior posterior -> llr 0 -> exactly 1 bit
    assert metrics.min_cllr([0.5] * 5, [1, 0, 0, 1, 0]) == pytest.approx(1.0)
    # a reversed system is no better than no information once calibrated monotonically
    assert metrics.min_cllr([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_cllr_never_exceeds_cllr_of_any_affine_calibration(seed: int) -> None:
    scores, labels = random_trials(seed)
    best = metrics.min_cllr(scores, labels)
    assert 0.0 < best < 1.0
    for slope, offset in [(1.0, -0.5), (2.0, -1.0), (0.5, 0.0), (3.0, -2.0)]:
        assert best <= metrics.cllr(slope * scores + offset, labels) + 1e-12
    # PAV output is monotone in the score and invariant to a monotone transform of it
    llrs = metrics.pav_llrs(scores, labels)
    ordered = llrs[np.argsort(scores, kind="stable")]
    assert np.all(ordered[1:] >= ordered[:-1])
    np.testing.assert_array_equal(metrics.pav_llrs(np.exp(scores), labels), llrs)
