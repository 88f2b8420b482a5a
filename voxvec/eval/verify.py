"""Speaker verification evaluation: embed every file once, score trials, report EER and minDCF.

:func:`evaluate` is the one-call entry point (what ``voxvec eval`` runs); it is
:func:`embed_files` (batched, a file that fails is reported and its trials dropped), the cohort's
speaker means for AS-norm when a cohort is given (:func:`cohort_embeddings`), then
:func:`evaluate_embeddings` (cosine scores, optional AS-norm, metrics with a speaker-bootstrap
confidence interval for the EER). The report keeps the embeddings, e.g. for a plot.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxvec.data.manifest import ManifestItem
from voxvec.embedding_files import SupportsIterEmbed, embed_many
from voxvec.eval import metrics, norm
from voxvec.eval.trials import Trial

logger = logging.getLogger(__name__)

DEFAULT_P_TARGETS = (0.01, 0.05)


def path_key(path: str | os.PathLike[str]) -> str:
    """The key a file's embedding is stored under: its normalised absolute path."""
    return os.path.normpath(os.path.abspath(path))


def embed_files(
    embedder: SupportsIterEmbed,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Embed each distinct file once, in batches; files that fail are reported, not fatal.

    Args:
        embedder: the model wrapper (``voxvec.inference.Embedder``).
        paths: audio files (duplicates are embedded once).
        batch_size: inputs (or windows of long inputs) per forward pass.
        progress: show a progress bar.

    Returns:
        ``(embeddings, failures)``: :func:`path_key` -> ``(D,)`` embedding, and
        :func:`path_key` -> error message for the files that could not be embedded (missing,
        unreadable, too short); each is logged at DEBUG level only (summarise them with
        :func:`failure_reasons`).
    """
    keys = list(dict.fromkeys(path_key(p) for p in paths))
    done = embed_many(
        embedder,
        keys,
        batch_size=batch_size,
        progress=progress,
        on_failure=lambda failure: logger.debug("%s (skipped)", failure.message),
    )
    embeddings = {keys[i]: vector for i, vector in zip(done.indices, done.embeddings, strict=True)}
    return embeddings, {failure.source: failure.reason for failure in done.failures}


TOO_LITTLE_SPEECH = "too little speech (under min_speech_s)"
NO_SPEECH = "no speech (silence, a tone or steady noise)"
FAILURE_KINDS: tuple[tuple[str, str], ...] = (
    ("is below min_speech_s", TOO_LITTLE_SPEECH),
    ("no speech:", NO_SPEECH),
    ("shorter than the model's minimum input", "shorter than the model's minimum input"),
)
"""``(marker, reason)``: a failure whose message holds the marker has that reason (the
:class:`~voxvec.inference.Embedder` words its errors so)."""


def failure_reason(source: str, message: str) -> str:
    """Why a file failed, in words shared by every file that failed for that reason.

    Args:
        source: the file (its :func:`path_key`).
        message: its error message.

    Returns:
        One of the reasons of :data:`FAILURE_KINDS`, else the message without the file's name
        (so that a reason such as "audio file not found" counts every file it applies to).
    """
    for marker, reason in FAILURE_KINDS:
        if marker in message:
            return reason
    for spelling in (f"{source}: ", f": '{source}'", f" '{source}'", source):
        message = message.replace(spelling, "")
    return message


def failure_reasons(failed_files: Mapping[str, str]) -> dict[str, int]:
    """How many files failed for each reason (:func:`failure_reason`), most frequent first."""
    counts: dict[str, int] = {}
    for source, message in failed_files.items():
        reason = failure_reason(source, message)
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def describe_failures(failed_files: Mapping[str, str]) -> str:
    """``"N file(s) failed: n1 reason1; n2 reason2"`` (empty when none failed)."""
    if not failed_files:
        return ""
    reasons = "; ".join(f"{n} {reason}" for reason, n in failure_reasons(failed_files).items())
    return f"{len(failed_files)} file(s) failed: {reasons}"


def score_pairs(
    embeddings: Mapping[Any, np.ndarray],
    pairs: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
) -> np.ndarray:
    """Cosine similarity of the two embeddings of each pair of files.

    Args:
        embeddings: path -> ``(D,)`` embedding; paths are matched after normalisation
            (:func:`path_key`), so relative and absolute spellings of one file agree.
        pairs: ``(path1, path2)`` of each pair to score.

    Returns:
        ``(P,)`` float64 scores in [-1, 1].

    Raises:
        KeyError: a file has no embedding (the message names it).
    """
    if not pairs:
        return np.zeros(0)
    keys = {path_key(p): i for i, p in enumerate(embeddings)}
    matrix = np.stack([np.asarray(e, dtype=np.float64) for e in embeddings.values()])
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    index = np.empty((len(pairs), 2), dtype=np.int64)
    for t, pair in enumerate(pairs):
        for side, path in enumerate(pair):
            try:
                index[t, side] = keys[path_key(path)]
            except KeyError:
                raise KeyError(f"no embedding for file {path}") from None
    return np.einsum("td,td->t", matrix[index[:, 0]], matrix[index[:, 1]])


def score_trials(embeddings: Mapping[Any, np.ndarray], trials: Sequence[Trial]) -> np.ndarray:
    """Cosine similarity of each trial's two embeddings: :func:`score_pairs` of the trials.

    Raises:
        KeyError: a trial's file has no embedding (the message names it).
    """
    return score_pairs(embeddings, [(t.path1, t.path2) for t in trials])


@dataclass
class Metrics:
    """Metrics of one set of trial scores.

    Attributes:
        eer: equal error rate in [0, 1].
        eer_threshold: score threshold at the EER point.
        eer_ci: ``(low, high)`` bootstrap interval of the EER, or None if not computed.
        min_dcf: ``p_target -> (min normalised DCF, threshold)``.
        far: the false-accept rate of the fixed-FAR operating point.
        far_threshold: the lowest threshold with a false-accept rate <= ``far``.
        frr_at_far: the false-reject rate at ``far_threshold``.
        min_cllr: Cllr after the best monotone calibration of these scores, in bits
            (discrimination only; see :func:`voxvec.eval.metrics.min_cllr`).
        cllr: Cllr of the scores mapped to log-likelihood ratios by a calibration, in bits;
            None without one (raw cosine scores are not log-likelihood ratios).
    """

    eer: float
    eer_threshold: float
    eer_ci: tuple[float, float] | None
    min_dcf: dict[float, tuple[float, float]]
    far: float
    far_threshold: float
    frr_at_far: float
    min_cllr: float
    cllr: float | None = None

    def operating_points(self) -> dict[str, float]:
        """The thresholds as a model card's ``thresholds``: ``eer`` and ``far1`` (for 1%) ...

        Raises:
            ValueError: a threshold is infinite (the trials cannot place it).
        """
        points = {"eer": self.eer_threshold, metrics.far_name(self.far): self.far_threshold}
        for name, value in points.items():
            if not math.isfinite(value):
                raise ValueError(f"the trials give no finite threshold for {name!r}")
        return points

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (infinite thresholds become None)."""
        return {
            "eer": self.eer,
            "eer_threshold": _finite(self.eer_threshold),
            "eer_ci": None if self.eer_ci is None else list(self.eer_ci),
            "min_dcf": {
                f"{p:g}": {"value": value, "threshold": _finite(thr)}
                for p, (value, thr) in self.min_dcf.items()
            },
            "far": self.far,
            "far_threshold": _finite(self.far_threshold),
            "frr_at_far": self.frr_at_far,
            "min_cllr": self.min_cllr,
            "cllr": self.cllr,
        }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def compute_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    speakers1: Sequence[str],
    speakers2: Sequence[str],
    *,
    p_targets: Sequence[float] = DEFAULT_P_TARGETS,
    far: float = 0.01,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    llr: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Metrics:
    """EER (with a speaker-bootstrap interval), minDCF, the fixed-FAR operating point and Cllr.

    Args:
        scores: ``(T,)`` trial scores.
        labels: ``(T,)`` 1 target, 0 non-target.
        speakers1: ``(T,)`` speaker of each trial's first file.
        speakers2: ``(T,)`` speaker of each trial's second file.
        p_targets: priors at which to report minDCF.
        far: false-accept rate of the reported fixed-FAR threshold.
        n_bootstrap: bootstrap rounds for the EER interval; 0 skips it.
        confidence: coverage of the interval.
        seed: seed of the bootstrap.
        llr: maps scores to log-likelihood ratios (a calibration's ``llr``) for the Cllr;
            None leaves ``cllr`` out.

    Raises:
        ValueError: see :mod:`voxvec.eval.metrics`.
    """
    value, threshold = metrics.eer(scores, labels)
    ci = None
    if n_bootstrap > 0:
        ci = metrics.eer_confidence_interval(
            scores,
            labels,
            speakers1,
            speakers2,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            seed=seed,
        )
    far_threshold = metrics.threshold_at_far(scores, labels, far)
    return Metrics(
        eer=value,
        eer_threshold=threshold,
        eer_ci=ci,
        min_dcf={p: metrics.min_dcf(scores, labels, p) for p in p_targets},
        far=far,
        far_threshold=far_threshold,
        frr_at_far=metrics.error_rates_at(scores, labels, far_threshold)[1],
        min_cllr=metrics.min_cllr(scores, labels),
        cllr=None if llr is None else metrics.cllr(llr(scores), labels),
    )


@dataclass
class VerificationReport:
    """Outcome of :func:`evaluate`.

    Attributes:
        n_files: files embedded successfully.
        failed_files: path -> error for files that could not be embedded.
        n_trials: trials scored (after dropping those with a failed file).
        n_target: target trials scored.
        n_nontarget: non-target trials scored.
        n_dropped_trials: trials dropped because a file failed.
        n_speakers: distinct speakers in the scored trials.
        raw: metrics of the cosine scores.
        normalized: metrics after AS-norm, None without a cohort.
        normalization: AS-norm settings (``method``, ``top_k``, ``cohort_size``), None without.
        confidence: coverage of the EER intervals.
        embeddings: :func:`path_key` -> ``(D,)`` embedding of every file embedded (left out of
            :meth:`to_dict`, like the next three).
        trials: the trials scored, in the order given.
        scores: ``(n_trials,)`` their cosine scores.
        normalized_scores: ``(n_trials,)`` their AS-norm scores, None without a cohort.
    """

    n_files: int
    failed_files: dict[str, str]
    n_trials: int
    n_target: int
    n_nontarget: int
    n_dropped_trials: int
    n_speakers: int
    raw: Metrics
    normalized: Metrics | None = None
    normalization: dict[str, Any] | None = None
    confidence: float = 0.95
    embeddings: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    trials: list[Trial] = field(default_factory=list, repr=False)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    normalized_scores: np.ndarray | None = field(default=None, repr=False)

    @property
    def primary(self) -> Metrics:
        """The headline metrics: normalised if a cohort was used, else raw."""
        return self.normalized if self.normalized is not None else self.raw

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (infinite thresholds become None)."""
        return {
            "n_files": self.n_files,
            "n_failed_files": len(self.failed_files),
            "failure_reasons": failure_reasons(self.failed_files),
            "failed_files": self.failed_files,
            "n_trials": self.n_trials,
            "n_target": self.n_target,
            "n_nontarget": self.n_nontarget,
            "n_dropped_trials": self.n_dropped_trials,
            "n_speakers": self.n_speakers,
            "confidence": self.confidence,
            "raw": self.raw.to_dict(),
            "normalized": None if self.normalized is None else self.normalized.to_dict(),
            "normalization": self.normalization,
        }

    def format_table(self) -> str:
        """A plain-text table of the metrics (raw, and AS-norm when used)."""
        columns = [("raw", self.raw)]
        if self.normalized is not None:
            columns.append(("as-norm", self.normalized))
        pct = f"{self.confidence * 100:g}%"
        rows: list[tuple[str, list[str]]] = [
            ("EER (%)", [f"{m.eer * 100:.2f}" for _, m in columns]),
            (
                f"EER {pct} CI (%)",
                [
                    "-" if m.eer_ci is None else f"{m.eer_ci[0] * 100:.2f}-{m.eer_ci[1] * 100:.2f}"
                    for _, m in columns
                ],
            ),
        ]
        for p in self.raw.min_dcf:
            rows.append((f"minDCF (p={p:g})", [f"{m.min_dcf[p][0]:.4f}" for _, m in columns]))
        rows.append(("threshold at EER", [f"{m.eer_threshold:.4f}" for _, m in columns]))
        far = f"{self.raw.far * 100:g}%"
        rows.append((f"threshold at FAR {far}", [f"{m.far_threshold:.4f}" for _, m in columns]))
        rows.append((f"FRR at FAR {far} (%)", [f"{m.frr_at_far * 100:.2f}" for _, m in columns]))
        rows.append(("min Cllr (bits)", [f"{m.min_cllr:.4f}" for _, m in columns]))
        rows.append(
            ("Cllr (bits)", ["-" if m.cllr is None else f"{m.cllr:.4f}" for _, m in columns])
        )
        failed = describe_failures(self.failed_files).partition(": ")[2]
        lines = [
            f"files: {self.n_files} embedded, {len(self.failed_files)} failed"
            + (f" ({failed})" if failed else "")
            + f"; speakers: {self.n_speakers}",
            f"trials: {self.n_trials} ({self.n_target} target, {self.n_nontarget} non-target), "
            f"{self.n_dropped_trials} dropped",
            f"{'metric':<24}" + "".join(f"{name:>14}" for name, _ in columns),
        ]
        lines += [f"{label:<24}" + "".join(f"{v:>14}" for v in values) for label, values in rows]
        return "\n".join(lines)


def trial_speakers(items: Sequence[ManifestItem], trials: Sequence[Trial]) -> dict[str, str]:
    """The manifest as :func:`path_key` -> speaker, checking that it lists every trial file.

    Call it before embedding to fail fast on a trial list that does not match the manifest.

    Raises:
        ValueError: a trial file is not in the manifest (the message shows a few).
    """
    speaker_of = {path_key(item.path): item.speaker for item in items}
    missing = sorted({path_key(p) for t in trials for p in (t.path1, t.path2)} - speaker_of.keys())
    if missing:
        raise ValueError(
            f"{len(missing)} trial file(s) are not in the manifest, e.g. {missing[:3]}; every "
            "trial file must be listed (check the trial list's root folder)"
        )
    return speaker_of


def evaluate_embeddings(
    embeddings: Mapping[str, np.ndarray],
    items: Sequence[ManifestItem],
    trials: Sequence[Trial],
    *,
    failed_files: Mapping[str, str] | None = None,
    cohort: np.ndarray | None = None,
    top_k: int = 200,
    p_targets: Sequence[float] = DEFAULT_P_TARGETS,
    far: float = 0.01,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    llr: Callable[[np.ndarray], np.ndarray] | None = None,
) -> VerificationReport:
    """Score trials from precomputed embeddings and compute the report.

    Args:
        embeddings: :func:`path_key` -> ``(D,)`` embedding (as :func:`embed_files` returns).
        items: the manifest; it gives each trial file's speaker (for the bootstrap).
        trials: the trials; those with a file in ``failed_files`` are dropped and counted.
        failed_files: :func:`path_key` -> error for files that could not be embedded.
        cohort: ``(C, D)`` cohort embeddings for AS-norm; None skips normalisation.
        top_k: AS-norm cohort size per side.
        p_targets: priors at which to report minDCF.
        far: false-accept rate of the reported fixed-FAR threshold.
        n_bootstrap: bootstrap rounds for the EER interval; 0 skips it.
        confidence: coverage of the interval.
        seed: seed of the bootstrap.
        llr: maps raw cosine scores to log-likelihood ratios (a calibration of this model's
            scores) for the raw metrics' Cllr; None leaves it out.

    Returns:
        A :class:`VerificationReport`.

    Raises:
        ValueError: a trial file is not in the manifest, or no target or non-target trial is
            left after dropping.
        KeyError: a trial file is neither embedded nor in ``failed_files``.
    """
    failed = dict(failed_files or {})
    speaker_of = trial_speakers(items, trials)
    kept = [
        t for t in trials if path_key(t.path1) not in failed and path_key(t.path2) not in failed
    ]
    if len(kept) < len(trials):
        logger.warning(
            "%s; dropped the %d of %d trial(s) with such a file",
            describe_failures(failed),
            len(trials) - len(kept),
            len(trials),
        )
    if not kept:
        raise ValueError(f"no trial left: every one of the {len(trials)} has a file that failed")
    labels = np.array([t.label for t in kept], dtype=np.int64)
    speakers1 = [speaker_of[path_key(t.path1)] for t in kept]
    speakers2 = [speaker_of[path_key(t.path2)] for t in kept]
    options: dict[str, Any] = {
        "p_targets": p_targets,
        "far": far,
        "n_bootstrap": n_bootstrap,
        "confidence": confidence,
        "seed": seed,
    }
    scores = score_trials(embeddings, kept)
    raw = compute_metrics(scores, labels, speakers1, speakers2, llr=llr, **options)

    normalized = normalization = None
    normed: np.ndarray | None = None
    if cohort is not None:
        used = list(dict.fromkeys(path_key(p) for t in kept for p in (t.path1, t.path2)))
        mean, std = norm.cohort_statistics(np.stack([embeddings[k] for k in used]), cohort, top_k)
        row = {key: i for i, key in enumerate(used)}
        i1 = np.array([row[path_key(t.path1)] for t in kept], dtype=np.int64)
        i2 = np.array([row[path_key(t.path2)] for t in kept], dtype=np.int64)
        normed = norm.as_norm(scores, (mean[i1], std[i1]), (mean[i2], std[i2]))
        normalized = compute_metrics(normed, labels, speakers1, speakers2, **options)
        normalization = {
            "method": "as-norm",
            "top_k": min(top_k, len(cohort)),
            "cohort_size": len(cohort),
        }

    return VerificationReport(
        n_files=len({path_key(p) for t in kept for p in (t.path1, t.path2)}),
        failed_files=failed,
        n_trials=len(kept),
        n_target=int(labels.sum()),
        n_nontarget=int(len(kept) - labels.sum()),
        n_dropped_trials=len(trials) - len(kept),
        n_speakers=len(set(speakers1) | set(speakers2)),
        raw=raw,
        normalized=normalized,
        normalization=normalization,
        confidence=confidence,
        embeddings=dict(embeddings),
        trials=kept,
        scores=scores,
        normalized_scores=normed,
    )


def cohort_embeddings(
    embedder: SupportsIterEmbed,
    cohort_items: Sequence[ManifestItem],
    *,
    exclude_speakers: Sequence[str] = (),
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """Embed a cohort manifest into one mean embedding per cohort speaker.

    Args:
        embedder: the model wrapper.
        cohort_items: the cohort files (speakers that are not in the test set).
        exclude_speakers: speakers to leave out of the cohort (the test speakers); a warning
            says how many were found.
        batch_size: inputs (or windows of long inputs) per forward pass.
        progress: show a progress bar.

    Returns:
        ``(S, D)`` unit-length speaker means.

    Raises:
        ValueError: no cohort file could be embedded.
    """
    excluded = set(exclude_speakers)
    keep = [item for item in cohort_items if item.speaker not in excluded]
    n_overlap = len({item.speaker for item in cohort_items} & excluded)
    if n_overlap:
        logger.warning("left %d test speaker(s) out of the cohort", n_overlap)
    embedded, failures = embed_files(
        embedder, [item.path for item in keep], batch_size=batch_size, progress=progress
    )
    if failures:
        logger.warning("%d cohort file(s) could not be embedded", len(failures))
    usable = [item for item in keep if path_key(item.path) in embedded]
    if not usable:
        raise ValueError("no cohort file could be embedded: the cohort is empty")
    vectors = np.stack([embedded[path_key(item.path)] for item in usable])
    return norm.speaker_means(vectors, [item.speaker for item in usable])


def evaluate(
    embedder: SupportsIterEmbed,
    items: Sequence[ManifestItem],
    trials: Sequence[Trial],
    *,
    cohort_items: Sequence[ManifestItem] | None = None,
    top_k: int = 200,
    batch_size: int = 32,
    progress: bool = False,
    p_targets: Sequence[float] = DEFAULT_P_TARGETS,
    far: float = 0.01,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    llr: Callable[[np.ndarray], np.ndarray] | None = None,
) -> VerificationReport:
    """Embed the trial files once (batched), score the trials and compute the metrics.

    Args:
        embedder: the model wrapper (``voxvec.inference.Embedder``).
        items: the manifest (``path,speaker``) the trial files come from.
        trials: the trials (:func:`~voxvec.eval.trials.read_trials` or
            :func:`~voxvec.eval.trials.generate_trials`).
        cohort_items: a cohort manifest for AS-norm (speakers disjoint from the test set;
            overlapping ones are left out); None skips normalisation.
        top_k: AS-norm cohort size per side.
        batch_size: inputs (or windows of long inputs) per forward pass.
        progress: show a progress bar.
        p_targets: priors at which to report minDCF.
        far: false-accept rate of the reported fixed-FAR threshold.
        n_bootstrap: bootstrap rounds for the EER interval; 0 skips it.
        confidence: coverage of the interval.
        seed: seed of the bootstrap.
        llr: as in :func:`evaluate_embeddings`.

    Returns:
        A :class:`VerificationReport`.

    Raises:
        ValueError: a trial file is not in the manifest, or too few trials are left.
    """
    trial_speakers(items, trials)
    paths = [p for t in trials for p in (t.path1, t.path2)]
    embeddings, failures = embed_files(embedder, paths, batch_size=batch_size, progress=progress)
    cohort = None
    if cohort_items is not None:
        cohort = cohort_embeddings(
            embedder,
            cohort_items,
            exclude_speakers=sorted({item.speaker for item in items}),
            batch_size=batch_size,
            progress=progress,
        )
    return evaluate_embeddings(
        embeddings,
        items,
        trials,
        failed_files=failures,
        cohort=cohort,
        top_k=top_k,
        p_targets=p_targets,
        far=far,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        llr=llr,
    )
