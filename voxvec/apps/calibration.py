"""Scores that mean something: score -> log-likelihood-ratio calibration and operating points
fitted on the user's own labelled data.

A :class:`Calibration` is fitted on verification trials of a labelled ``path,speaker`` set
(:func:`calibrate_manifest`, what ``voxvec calibrate`` runs):

- a logistic map ``llr = slope * score + offset`` (natural log), fitted by prior-weighted
  logistic regression (the effective target prior ``prior``, 0.5 by default, so the classes
  weigh equally whatever their counts): ``llr > 0`` means the evidence favours "same speaker";
- operating points: the cosine thresholds at the equal-error point (``"eer"``) and at target
  false-accept rates (``"far1"`` for 1%, ``"far0.1"`` for 0.1%), with their error rates on the
  calibration trials;
- the false-accept curve (threshold at each of a log-spaced grid of false-accept rates the
  trials can resolve), from which :func:`identification_threshold` picks the threshold that
  holds an open-set false-accept rate with N enrolled speakers.

It is saved as JSON (atomically) with the identity of the model whose scores it calibrates; a
calibration of another model is refused. :func:`resolve_threshold` is the one place a decision
threshold (a number, a calibration's operating point or the model card's) is resolved, with the
words that say where it came from.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from voxvec.apps.identity import ModelIdentity
from voxvec.atomic import atomic_open
from voxvec.data.manifest import ManifestItem
from voxvec.eval import metrics
from voxvec.eval.metrics import far_name
from voxvec.eval.trials import generate_trials
from voxvec.eval.verify import (
    describe_failures,
    embed_files,
    path_key,
    score_trials,
    trial_speakers,
)

if TYPE_CHECKING:
    from voxvec.inference import Embedder

logger = logging.getLogger(__name__)

FORMAT = "voxvec-calibration"
VERSION = 1
DEFAULT_FARS = (0.01, 0.001)
MIN_FALSE_ACCEPTS = 5
"""An operating point at FAR f is fitted only with at least this many non-target trials times
1/f (so that it rests on at least this many false accepts)."""
FAR_GRID = tuple(float(10.0**e) for e in np.arange(-6.0, 0.01, 0.125))
"""False-accept rates of the stored curve (those the trials resolve are kept)."""


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold and its error rates on the calibration trials.

    Attributes:
        score: the cosine threshold (accept when ``score >= this``).
        llr: the calibrated log-likelihood ratio at that score.
        far: false-accept rate on the calibration trials.
        frr: false-reject rate on the calibration trials.
    """

    score: float
    llr: float
    far: float
    frr: float


@dataclass(frozen=True)
class Calibration:
    """A fitted score calibration with its operating points (see the module doc).

    Attributes:
        slope, offset: ``llr = slope * score + offset``.
        prior: the effective target prior of the fit.
        thresholds: operating-point name -> :class:`OperatingPoint` (``"eer"``, ``"far1"``...).
        far_curve: ``(far, score threshold)`` pairs, far decreasing, down to the lowest false-
            accept rate the calibration's non-target trials resolve.
        model: the model whose scores were calibrated (None: not recorded).
        fitted_on: what it was fitted on (manifest, trial and speaker counts, seed).
        quality: ``eer``, ``cllr`` (of the calibrated llrs) and ``min_cllr`` on those trials.
        source: the file it was read from ("" when not read from a file); not saved.
    """

    slope: float
    offset: float
    prior: float
    thresholds: dict[str, OperatingPoint]
    far_curve: tuple[tuple[float, float], ...]
    model: ModelIdentity | None = None
    fitted_on: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def llr(self, scores: ArrayLike) -> np.ndarray:
        """``(T,)`` float64 calibrated log-likelihood ratios of cosine scores."""
        return self.slope * np.asarray(scores, dtype=np.float64) + self.offset

    def score_at_far(self, far: float) -> tuple[float, bool]:
        """The cosine threshold for a false-accept rate, from the stored curve.

        Interpolated linearly in log(far) between grid points.

        Args:
            far: the false-accept rate, in (0, 1].

        Returns:
            ``(score, resolved)``: ``resolved`` is False when ``far`` is below what the
            calibration trials resolve; the threshold of the lowest resolved rate is returned.

        Raises:
            ValueError: ``far`` outside (0, 1].
        """
        if not 0.0 < far <= 1.0:
            raise ValueError(f"a false-accept rate must be in (0, 1], got {far}")
        fars = np.log([f for f, _ in self.far_curve])[::-1]  # increasing
        scores = np.array([s for _, s in self.far_curve])[::-1]
        if math.log(far) < fars[0]:
            return float(scores[0]), False
        return float(np.interp(math.log(far), fars, scores)), True

    def describe(self) -> str:
        """Where this calibration comes from, in words (for threshold sources)."""
        name = f"calibration {self.source}" if self.source else "the calibration"
        fitted = self.fitted_on
        if "n_target" in fitted:
            return (
                f"{name}, fitted on {fitted.get('manifest', '?')}: {fitted['n_target']} target / "
                f"{fitted['n_nontarget']} non-target trials, {fitted.get('n_speakers', '?')} "
                "speakers"
            )
        return name

    def check_model(self, model: ModelIdentity) -> None:
        """Refuse scores of another model than the one calibrated.

        Raises:
            voxvec.apps.identity.ModelMismatchError: the models differ.
        """
        if self.model is not None:
            self.model.check(model, self.describe())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what :meth:`save` writes)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "llr": {"slope": self.slope, "offset": self.offset, "prior": self.prior},
            "thresholds": {
                name: {"score": p.score, "llr": p.llr, "far": p.far, "frr": p.frr}
                for name, p in self.thresholds.items()
            },
            "far_curve": [[f, s] for f, s in self.far_curve],
            "model": None if self.model is None else self.model.to_dict(),
            "fitted_on": self.fitted_on,
            "quality": self.quality,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the calibration as JSON, atomically; returns the path."""
        with atomic_open(path) as f:
            f.write(json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        """Read a calibration written by :meth:`save` (``voxvec calibrate``).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a voxvec calibration, a newer version, or a malformed field (the
                message names the file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"calibration file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a calibration file (invalid JSON: {err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(
                f'{path}: not a voxvec calibration file (no "format": "{FORMAT}"); make one '
                "with `voxvec calibrate --manifest labelled.csv --out calibration.json`"
            )
        if data.get("version") != VERSION:
            raise ValueError(
                f"{path}: calibration format version {data.get('version')!r}; this voxvec "
                f"reads version {VERSION} (re-run `voxvec calibrate`, or upgrade voxvec)"
            )
        try:
            llr = data["llr"]
            return cls(
                slope=float(llr["slope"]),
                offset=float(llr["offset"]),
                prior=float(llr["prior"]),
                thresholds={
                    str(name): OperatingPoint(
                        float(p["score"]), float(p["llr"]), float(p["far"]), float(p["frr"])
                    )
                    for name, p in data["thresholds"].items()
                },
                far_curve=tuple((float(f), float(s)) for f, s in data["far_curve"]),
                model=None
                if data.get("model") is None
                else ModelIdentity.from_dict(data["model"], str(path)),
                fitted_on=dict(data.get("fitted_on") or {}),
                quality={k: float(v) for k, v in (data.get("quality") or {}).items()},
                source=str(path),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{path}: malformed calibration field ({err!r})") from None


def fit_logistic(
    scores: ArrayLike, labels: ArrayLike, prior: float = 0.5, ridge: float = 1e-6
) -> tuple[float, float]:
    """Prior-weighted logistic regression of labels on scores: ``llr = slope * s + offset``.

    Minimises ``prior * mean_target softplus(-(llr + logit(prior))) + (1 - prior) *
    mean_nontarget softplus(llr + logit(prior))`` (the cross-entropy whose minimum value, in bits,
    is the Cllr at that prior) by Newton's method with step halving. The small ridge keeps the
    solution finite when the trials are perfectly separated.

    Args:
        scores: ``(T,)`` trial scores.
        labels: ``(T,)`` 1 target, 0 non-target.
        prior: effective target prior, in (0, 1).
        ridge: L2 penalty on ``(slope, offset)``.

    Returns:
        ``(slope, offset)``.

    Raises:
        ValueError: ``prior`` outside (0, 1), or as :func:`voxvec.eval.metrics.det_curve`.
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must be in (0, 1), got {prior}")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    metrics.det_curve(s, y.astype(int))  # validates shapes, labels and both classes
    weights = np.where(y, prior / y.sum(), (1.0 - prior) / (~y).sum())
    sign = np.where(y, -1.0, 1.0)
    logit_prior = math.log(prior / (1.0 - prior))
    x = np.stack([s, np.ones_like(s)], axis=1)  # (T, 2)

    def objective(w: np.ndarray) -> float:
        z = x @ w + logit_prior
        return float(weights @ np.logaddexp(0.0, sign * z) + ridge * w @ w)

    w = np.zeros(2)
    value = objective(w)
    for _ in range(100):
        z = x @ w + logit_prior
        p = 1.0 / (1.0 + np.exp(-z))
        grad = x.T @ (weights * (p - y)) + 2 * ridge * w
        hess = (x * (weights * p * (1 - p))[:, None]).T @ x + 2 * ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-8:
            candidate = w - t * step
            new = objective(candidate)
            if new <= value:
                break
            t /= 2
        else:
            break
        converged = value - new < 1e-12
        w, value = candidate, new
        if converged:
            break
    return float(w[0]), float(w[1])


def fit_calibration(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    fars: Sequence[float] = DEFAULT_FARS,
    prior: float = 0.5,
    model: ModelIdentity | None = None,
    fitted_on: dict[str, Any] | None = None,
) -> Calibration:
    """Fit a :class:`Calibration` on trial scores.

    Args:
        scores: ``(T,)`` cosine scores of verification trials.
        labels: ``(T,)`` 1 target, 0 non-target.
        fars: false-accept rates to name operating points for (``far1`` ...); a rate with fewer
            than ``MIN_FALSE_ACCEPTS / far`` non-target trials is left out with a warning.
        prior: effective target prior of the logistic fit.
        model: the model whose scores these are (recorded; later checked).
        fitted_on: what the trials came from (recorded with the counts).

    Returns:
        The calibration.

    Raises:
        ValueError: a rate outside (0, 1), or as :func:`fit_logistic`.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    slope, offset = fit_logistic(s, y, prior)
    n_nontarget = int((y == 0).sum())

    def point(threshold: float) -> OperatingPoint:
        far, frr = metrics.error_rates_at(s, y, threshold)
        return OperatingPoint(threshold, slope * threshold + offset, far, frr)

    eer, eer_threshold = metrics.eer(s, y)
    thresholds = {"eer": point(eer_threshold)}
    for far in fars:
        if not 0.0 < far < 1.0:
            raise ValueError(f"false-accept rates must be in (0, 1), got {far}")
        if n_nontarget * far < MIN_FALSE_ACCEPTS:
            logger.warning(
                "no operating point %s: %d non-target trials resolve false-accept rates down to "
                "%.2g (need %d false accepts); use more trials",
                far_name(far),
                n_nontarget,
                MIN_FALSE_ACCEPTS / n_nontarget,
                MIN_FALSE_ACCEPTS,
            )
            continue
        thresholds[far_name(far)] = point(metrics.threshold_at_far(s, y, far))
    curve_fars, _, curve_thresholds = metrics.det_curve(s, y)
    curve = []
    for far in sorted(FAR_GRID, reverse=True):
        if n_nontarget * far < 1.0:
            break
        curve.append((far, float(curve_thresholds[int(np.flatnonzero(curve_fars <= far)[0])])))
    llrs = slope * s + offset
    quality = {"eer": eer, "cllr": metrics.cllr(llrs, y), "min_cllr": metrics.min_cllr(s, y)}
    counts = {"n_target": int(y.sum()), "n_nontarget": n_nontarget}
    return Calibration(
        slope=slope,
        offset=offset,
        prior=prior,
        thresholds=thresholds,
        far_curve=tuple(curve),
        model=model,
        fitted_on={**(fitted_on or {}), **counts},
        quality=quality,
    )


def calibrate_manifest(
    embedder: Embedder,
    items: Sequence[ManifestItem],
    *,
    n_trials: int | None = 20000,
    target_ratio: float = 0.5,
    seed: int = 0,
    fars: Sequence[float] = DEFAULT_FARS,
    prior: float = 0.5,
    batch_size: int = 32,
    progress: bool = False,
    manifest: str = "",
) -> Calibration:
    """Embed a labelled set once, score seeded trials of it and fit a :class:`Calibration`.

    Args:
        embedder: the model to calibrate.
        items: the labelled files (``path,speaker``): the user's own data, speakers that will
            never be scored against the calibration (held out from any test).
        n_trials: trials to draw (None: every pair of files).
        target_ratio: fraction of same-speaker trials among them.
        seed: seed of the trial sampling.
        fars, prior: as in :func:`fit_calibration`.
        batch_size: inputs per forward pass.
        progress: show a progress bar.
        manifest: the manifest's name, recorded in ``fitted_on``.

    Returns:
        The calibration (with the model's identity).

    Raises:
        ValueError: too few speakers or files for trials, or no trial left after dropping those
            with files that failed.
    """
    trials = generate_trials(items, n_trials, target_ratio, seed=seed)
    speaker_of = trial_speakers(items, trials)
    paths = [p for t in trials for p in (t.path1, t.path2)]
    embeddings, failures = embed_files(embedder, paths, batch_size=batch_size, progress=progress)
    kept = [
        t for t in trials if path_key(t.path1) in embeddings and path_key(t.path2) in embeddings
    ]
    if failures:
        logger.warning(
            "%s; dropped %d of %d trials",
            describe_failures(failures),
            len(trials) - len(kept),
            len(trials),
        )
    if not kept:
        raise ValueError(f"no trial left: every one of the {len(trials)} has a file that failed")
    speakers = {speaker_of[path_key(p)] for t in kept for p in (t.path1, t.path2)}
    return fit_calibration(
        score_trials(embeddings, kept),
        np.array([t.label for t in kept]),
        fars=fars,
        prior=prior,
        model=ModelIdentity.of(embedder),
        fitted_on={
            "manifest": manifest,
            "n_trials": len(kept),
            "n_speakers": len(speakers),
            "seed": seed,
        },
    )


@dataclass(frozen=True)
class Threshold:
    """A resolved decision threshold.

    Attributes:
        value: the cosine threshold.
        source: where it came from, in words.
    """

    value: float
    source: str


def resolve_threshold(
    threshold: float | str | None,
    embedder: Embedder,
    calibration: Calibration | None = None,
    default: str = "eer",
) -> Threshold | None:
    """The decision threshold: a number, or an operating point of the calibration or model card.

    Args:
        threshold: a cosine score; an operating-point name (of ``calibration`` when given, else
            of the model card); None for ``default``.
        embedder: the model (its card, and its identity checked against ``calibration``).
        calibration: a calibration of this model, or None.
        default: the operating point taken when ``threshold`` is None.

    Returns:
        The threshold, or None when ``threshold`` is None and neither the calibration nor the
        card has ``default``.

    Raises:
        ValueError: a name the calibration (or card) does not have.
        voxvec.apps.identity.ModelMismatchError: the calibration is of another model.
    """
    if isinstance(threshold, (int, float)):
        return Threshold(float(threshold), "given")
    name = default if threshold is None else threshold
    if calibration is not None:
        calibration.check_model(ModelIdentity.of(embedder))
        if name not in calibration.thresholds:
            if threshold is None:
                return None
            raise ValueError(
                f"no operating point {name!r} in {calibration.describe()}: it has "
                f"{sorted(calibration.thresholds)} - pass a number instead"
            )
        return Threshold(
            calibration.thresholds[name].score,
            f"operating point {name!r} of {calibration.describe()}",
        )
    if threshold is None and name not in (embedder.card.get("thresholds") or {}):
        return None
    return Threshold(embedder.resolve_threshold(name), embedder.threshold_source(name))


def identification_threshold(
    threshold: float | str | None,
    embedder: Embedder,
    n_speakers: int,
    *,
    calibration: Calibration | None = None,
    open_set_far: float = 0.01,
) -> Threshold | None:
    """The threshold of an open-set identification among ``n_speakers`` enrolled speakers.

    A stranger is falsely accepted when any of the ``n_speakers`` comparisons clears the
    threshold, so with a calibration (and no explicit ``threshold``) the per-comparison rate is
    ``1 - (1 - open_set_far) ** (1 / n_speakers)`` (comparisons taken as independent; their
    maximum is what matters) and its threshold is read from the calibration's false-accept curve.
    Without a calibration the model card's ``"far1"`` verification point is used (a stranger's
    false-accept rate then grows with the number of speakers: calibrate on your data).

    Args:
        threshold: a number or operating-point name (resolved by :func:`resolve_threshold`);
            None for the open-set rule above.
        embedder: the model.
        n_speakers: speakers enrolled in the store (>= 1).
        calibration: a calibration of this model, or None.
        open_set_far: the wanted fraction of strangers given a name, in (0, 1).

    Returns:
        The threshold, or None when nothing gives one (no calibration and no card point).

    Raises:
        ValueError: ``open_set_far`` or ``n_speakers`` out of range; as :func:`resolve_threshold`.
    """
    if threshold is not None or calibration is None:
        return resolve_threshold(threshold, embedder, calibration, default="far1")
    if not 0.0 < open_set_far < 1.0:
        raise ValueError(f"open_set_far must be in (0, 1), got {open_set_far}")
    if n_speakers < 1:
        raise ValueError(f"n_speakers must be >= 1, got {n_speakers}")
    calibration.check_model(ModelIdentity.of(embedder))
    per_comparison = -math.expm1(math.log1p(-open_set_far) / n_speakers)
    score, resolved = calibration.score_at_far(per_comparison)
    lowest = calibration.far_curve[-1][0]
    note = (
        ""
        if resolved
        else f"; beyond what its trials resolve, so the threshold of FAR {lowest:.2g} is used "
        "(calibrate with more non-target trials)"
    )
    return Threshold(
        score,
        f"open-set false-accept rate {open_set_far:g} among {n_speakers} speakers = "
        f"per-comparison FAR {per_comparison:.3g} on {calibration.describe()}{note}",
    )
