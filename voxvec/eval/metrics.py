"""Verification metrics: EER, minDCF, Cllr, DET/ROC curves, thresholds (pure numpy).

Conventions: ``scores`` is ``(T,)`` float, higher meaning "more likely the same speaker";
``labels`` is ``(T,)`` with 1 (or True) for target trials (same speaker) and 0 for non-target
trials. A trial is accepted when ``score >= threshold``. The operating points are the distinct
scores plus ``+inf`` (accept nothing), so the curves run from (FAR 1, FRR 0) to (FAR 0, FRR 1).

Calibration quality (:func:`cllr`, :func:`min_cllr`) is measured in bits on log-likelihood
ratios: natural-log ``llr = log p(score | same) / p(score | different)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

Float = NDArray[np.float64]


def _validate(scores: ArrayLike, labels: ArrayLike) -> tuple[Float, NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64)
    raw = np.asarray(labels)
    if s.ndim != 1 or raw.shape != s.shape:
        raise ValueError(
            f"scores and labels must be 1-D of equal length, got shapes {s.shape} and {raw.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be finite; {int(np.sum(~np.isfinite(s)))} are not")
    if not np.all((raw == 0) | (raw == 1)):
        raise ValueError("labels must be 0 (non-target) or 1 (target)")
    y = raw.astype(bool)
    n_target = int(y.sum())
    if n_target == 0 or n_target == y.size:
        raise ValueError(
            f"need both target and non-target trials, got {n_target} target and "
            f"{y.size - n_target} non-target"
        )
    return s, y


class _SortedTrials:
    """Trials sorted once by score, so error rates for many weightings cost one cumsum each."""

    def __init__(self, scores: Float, labels: NDArray[np.bool_]) -> None:
        order = np.argsort(scores, kind="stable")
        self.order = order
        self.scores = scores[order]
        self.labels = labels[order]
        # index of the first trial of each distinct score: the trials before it are rejected
        self.starts = np.flatnonzero(np.r_[True, np.diff(self.scores) > 0])
        self.thresholds = np.r_[self.scores[self.starts], np.inf]

    def rates(self, weights: Float | None = None) -> tuple[Float, Float]:
        """``(far, frr)`` at each of :attr:`thresholds`; ``weights`` are in the original order.

        Returns NaNs if either class has zero total weight.
        """
        w = np.ones(self.scores.size) if weights is None else weights[self.order]
        w_target = np.where(self.labels, w, 0.0)
        w_nontarget = w - w_target
        cum_target = np.r_[0.0, np.cumsum(w_target)]
        cum_nontarget = np.r_[0.0, np.cumsum(w_nontarget)]
        total_t, total_n = cum_target[-1], cum_nontarget[-1]
        if total_t <= 0 or total_n <= 0:
            nan = np.full(self.thresholds.size, np.nan)
            return nan, nan
        # rejected below each threshold: everything before its first trial; +inf rejects all
        below = np.r_[self.starts, self.scores.size]
        frr = cum_target[below] / total_t
        far = (total_n - cum_nontarget[below]) / total_n
        return far, frr


def _eer_from_rates(far: Float, frr: Float, thresholds: Float) -> tuple[float, float]:
    """Where the DET curve, linearly interpolated between operating points, crosses FAR = FRR."""
    diff = far - frr  # non-increasing: from 1 (accept all) to -1 (reject all)
    i = int(np.flatnonzero(diff >= 0)[-1])
    alpha = diff[i] / (diff[i] - diff[i + 1])
    eer = frr[i] + alpha * (frr[i + 1] - frr[i])
    upper = thresholds[i + 1]
    threshold = (
        thresholds[i] if not np.isfinite(upper) else thresholds[i] + alpha * (upper - thresholds[i])
    )
    return float(eer), float(threshold)


def det_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[Float, Float, Float]:
    """False-accept and false-reject rates at every operating point.

    Args:
        scores: ``(T,)`` trial scores.
        labels: ``(T,)`` 1 for target, 0 for non-target.

    Returns:
        ``(far, frr, thresholds)``, each ``(K,)`` for the K - 1 distinct scores in increasing
        order and a final ``+inf``; ``far`` falls from 1 to 0 and ``frr`` rises from 0 to 1.

    Raises:
        ValueError: shapes differ, a score is not finite, a label is not 0/1, or one class is
            missing.
    """
    trials = _SortedTrials(*_validate(scores, labels))
    far, frr = trials.rates()
    return far, frr, trials.thresholds


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[Float, Float, Float]:
    """ROC points: ``(far, tpr, thresholds)`` with ``tpr = 1 - frr`` (see :func:`det_curve`)."""
    far, frr, thresholds = det_curve(scores, labels)
    return far, 1.0 - frr, thresholds


def eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Equal error rate: where the false-accept rate equals the false-reject rate.

    The DET curve is interpolated linearly between adjacent operating points, so the result lies
    between ``max_t min(far, frr)`` and ``min_t max(far, frr)``.

    Args:
        scores: ``(T,)`` trial scores.
        labels: ``(T,)`` 1 for target, 0 for non-target.

    Returns:
        ``(eer, threshold)``: the rate in [0, 1] and the score threshold at that point
        (interpolated between the two adjacent operating points likewise).

    Raises:
        ValueError: as :func:`det_curve`.
    """
    far, frr, thresholds = det_curve(scores, labels)
    return _eer_from_rates(far, frr, thresholds)


def min_dcf(
    scores: ArrayLike,
    labels: ArrayLike,
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Minimum normalised detection cost (NIST SRE / VoxSRC definition).

    ``DCF(t) = c_miss * p_target * frr(t) + c_fa * (1 - p_target) * far(t)``, divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the better of accepting or
    rejecting everything; so the result is in [0, 1].

    Args:
        scores: ``(T,)`` trial scores.
        labels: ``(T,)`` 1 for target, 0 for non-target.
        p_target: prior probability of a target trial, in (0, 1).
        c_miss: cost of a false reject (> 0).
        c_fa: cost of a false accept (> 0).

    Returns:
        ``(min_dcf, threshold)``; the threshold is ``+inf`` when rejecting everything is best.

    Raises:
        ValueError: ``p_target`` outside (0, 1), a non-positive cost, or as :func:`det_curve`.
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"costs must be > 0, got c_miss={c_miss}, c_fa={c_fa}")
    far, frr, thresholds = det_curve(scores, labels)
    dcf = c_miss * p_target * frr + c_fa * (1.0 - p_target) * far
    i = int(np.argmin(dcf))
    default = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(dcf[i] / default), float(thresholds[i])


def threshold_at_far(scores: ArrayLike, labels: ArrayLike, far: float) -> float:
    """The lowest threshold whose false-accept rate is at most ``far``.

    Args:
        scores: ``(T,)`` trial scores.
        labels: ``(T,)`` 1 for target, 0 for non-target.
        far: the target false-accept rate, in [0, 1].

    Returns:
        The threshold (``+inf`` only if every distinct score would accept too many non-targets).

    Raises:
        ValueError: ``far`` outside [0, 1], or as :func:`det_curve`.
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    rates, _, thresholds = det_curve(scores, labels)
    return float(thresholds[int(np.flatnonzero(rates <= far)[0])])


def far_name(far: float) -> str:
    """The operating-point name of a false-accept rate: ``far1`` for 0.01, ``far0.1`` for 0.001."""
    return f"far{far * 100:g}"


def error_rates_at(scores: ArrayLike, labels: ArrayLike, threshold: float) -> tuple[float, float]:
    """``(far, frr)`` when accepting trials with ``score >= threshold``.

    Raises:
        ValueError: as :func:`det_curve`.
    """
    s, y = _validate(scores, labels)
    accept = s >= threshold
    return float(np.mean(accept[~y])), float(np.mean(~accept[y]))


def eer_confidence_interval(
    scores: ArrayLike,
    labels: ArrayLike,
    speakers1: Sequence[str] | ArrayLike,
    speakers2: Sequence[str] | ArrayLike,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the EER, resampling speakers.

    Trials are not independent (each speaker appears in many), so resampling trials would give
    too narrow an interval. Each round draws the speakers with replacement; a speaker drawn
    ``c`` times makes each of its target trials count ``c`` times, and a non-target trial between
    speakers drawn ``a`` and ``b`` times counts ``a * b`` times (as if the copies were distinct
    speakers). Rounds without a target or a non-target trial are redrawn (at most
    ``10 * n_bootstrap`` draws in all).

    Args:
        scores: ``(T,)`` trial scores.
        labels: ``(T,)`` 1 for target, 0 for non-target.
        speakers1: ``(T,)`` speaker of each trial's first file.
        speakers2: ``(T,)`` speaker of each trial's second file.
        n_bootstrap: number of bootstrap rounds (> 0).
        confidence: the interval's coverage, in (0, 1).
        seed: seed of the resampling.

    Returns:
        ``(low, high)`` EER bounds.

    Raises:
        ValueError: bad ``n_bootstrap``/``confidence``, mismatched lengths, too few valid rounds,
            or as :func:`det_curve`.
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s, y = _validate(scores, labels)
    spk1, spk2 = np.asarray(speakers1), np.asarray(speakers2)
    if spk1.shape != s.shape or spk2.shape != s.shape:
        raise ValueError(
            f"speakers1 and speakers2 must match scores {s.shape}, got {spk1.shape}, {spk2.shape}"
        )
    names, codes = np.unique(np.concatenate([spk1, spk2]), return_inverse=True)
    a, b = codes[: s.size], codes[s.size :]
    same = a == b
    trials = _SortedTrials(s, y)
    rng = np.random.default_rng(seed)
    eers: list[float] = []
    for _ in range(10 * n_bootstrap):
        counts = np.bincount(rng.integers(0, names.size, names.size), minlength=names.size)
        weights = np.where(same, counts[a], counts[a] * counts[b]).astype(np.float64)
        far, frr = trials.rates(weights)
        if np.isnan(far[0]):
            continue
        eers.append(_eer_from_rates(far, frr, trials.thresholds)[0])
        if len(eers) == n_bootstrap:
            break
    if len(eers) < n_bootstrap:
        raise ValueError(
            f"{10 * n_bootstrap} speaker draws gave only {len(eers)} of the {n_bootstrap} "
            "bootstrap rounds needed with both target and non-target trials "
            f"({names.size} speakers): too few speakers for a speaker bootstrap"
        )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.asarray(eers), [tail, 1.0 - tail])
    return float(low), float(high)


def cllr(llrs: ArrayLike, labels: ArrayLike) -> float:
    """Log-likelihood-ratio cost: how well scores work as log-likelihood ratios, in bits.

    ``Cllr = (mean_target log2(1 + e^-llr) + mean_nontarget log2(1 + e^llr)) / 2``. A system that
    always says ``llr = 0`` (no information) scores 1; a perfect, well-calibrated one tends to 0;
    a badly calibrated one can exceed 1 however well it separates the classes.

    Args:
        llrs: ``(T,)`` natural-log likelihood ratios (``+inf``/``-inf`` allowed).
        labels: ``(T,)`` 1 for target, 0 for non-target.

    Returns:
        Cllr in bits (``inf`` if a target has ``llr = -inf`` or a non-target ``+inf``).

    Raises:
        ValueError: shapes differ, an llr is NaN, a label is not 0/1, or one class is missing.
    """
    s = np.asarray(llrs, dtype=np.float64)
    if np.isnan(s).any():
        raise ValueError(f"llrs must not be NaN; {int(np.isnan(s).sum())} are")
    _, y = _validate(np.where(np.isfinite(s), s, 0.0), labels)  # infinities are valid llrs
    target = np.logaddexp(0.0, -s[y]).mean()
    nontarget = np.logaddexp(0.0, s[~y]).mean()
    return float((target + nontarget) / (2.0 * np.log(2.0)))


def pav_llrs(scores: ArrayLike, labels: ArrayLike) -> Float:
    """The optimal monotone score-to-LLR map on these trials (pool-adjacent-violators).

    Tied scores share one value. The posterior of each pooled block (its fraction of targets)
    becomes an llr by removing the trials' prior log-odds ``log(n_target / n_nontarget)``.

    Args:
        scores: ``(T,)`` trial scores.
        labels: ``(T,)`` 1 for target, 0 for non-target.

    Returns:
        ``(T,)`` llrs in the original order (``-inf`` for blocks without a target, ``+inf`` for
        blocks without a non-target).

    Raises:
        ValueError: as :func:`det_curve`.
    """
    s, y = _validate(scores, labels)
    distinct, inverse = np.unique(s, return_inverse=True)
    n = np.bincount(inverse, minlength=distinct.size).astype(np.float64)
    t = np.bincount(inverse, weights=y.astype(np.float64), minlength=distinct.size)
    # blocks as a stack of (targets, trials, number of distinct scores pooled)
    block_t: list[float] = []
    block_n: list[float] = []
    block_len: list[int] = []
    for k in range(distinct.size):
        bt, bn, bl = t[k], n[k], 1
        while block_t and block_t[-1] / block_n[-1] >= bt / bn:
            bt, bn, bl = bt + block_t.pop(), bn + block_n.pop(), bl + block_len.pop()
        block_t.append(bt)
        block_n.append(bn)
        block_len.append(bl)
    posterior = np.repeat(np.array(block_t) / np.array(block_n), block_len)
    n_target = float(y.sum())
    prior_log_odds = np.log(n_target / (y.size - n_target))
    with np.errstate(divide="ignore"):
        log_odds = np.log(posterior) - np.log1p(-posterior)
    return (log_odds - prior_log_odds)[inverse]


def min_cllr(scores: ArrayLike, labels: ArrayLike) -> float:
    """Cllr after the best monotone calibration of these trials (:func:`pav_llrs`), in bits.

    It measures discrimination only: ``cllr(llrs) - min_cllr(llrs)`` is the cost of
    miscalibration. 0 for perfectly separated scores, 1 for scores that carry no information.

    Raises:
        ValueError: as :func:`det_curve`.
    """
    return cllr(pav_llrs(scores, labels), labels)
