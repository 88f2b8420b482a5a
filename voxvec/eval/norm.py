"""Adaptive symmetric score normalisation (AS-norm) with a cohort of impostor embeddings.

For a trial between embeddings ``e`` and ``t`` with cosine score ``s``, each side is scored
against the cohort; the ``top_k`` highest cohort scores of each side give a mean and a standard
deviation, and::

    s_norm = ((s - mean_e) / std_e + (s - mean_t) / std_t) / 2

(Matejka et al., "Analysis of score normalization in multilingual speaker recognition",
Interspeech 2017). The cohort must not contain the test speakers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float64]


def _unit_rows(x: np.ndarray, name: str) -> Float:
    rows = np.asarray(x, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {rows.shape}")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def speaker_means(embeddings: np.ndarray, speakers: Sequence[str]) -> Float:
    """One unit-length mean embedding per speaker: ``(N, D)`` -> ``(S, D)``, speakers sorted.

    Raises:
        ValueError: ``speakers`` does not have one id per row.
    """
    emb = _unit_rows(embeddings, "embeddings")
    if len(speakers) != emb.shape[0]:
        raise ValueError(f"{len(speakers)} speaker ids for {emb.shape[0]} embeddings")
    _, codes = np.unique(np.asarray(speakers), return_inverse=True)
    sums = np.zeros((int(codes.max()) + 1, emb.shape[1]))
    np.add.at(sums, codes, emb)
    return _unit_rows(sums, "speaker means")


def cohort_statistics(
    embeddings: np.ndarray, cohort: np.ndarray, top_k: int = 200, chunk_size: int = 4096
) -> tuple[Float, Float]:
    """Mean and standard deviation of each embedding's ``top_k`` highest cohort cosine scores.

    Args:
        embeddings: ``(N, D)`` embeddings to normalise.
        cohort: ``(C, D)`` cohort embeddings (impostors).
        top_k: how many of the closest cohort entries to use (capped at C).
        chunk_size: rows of ``embeddings`` scored at a time (bounds memory to chunk_size x C).

    Returns:
        ``(mean, std)``, each ``(N,)``; ``std`` is floored at 1e-6.

    Raises:
        ValueError: bad shapes, different D, or ``top_k < 1``.
    """
    emb = _unit_rows(embeddings, "embeddings")
    coh = _unit_rows(cohort, "cohort")
    if emb.shape[1] != coh.shape[1]:
        raise ValueError(f"embedding size {emb.shape[1]} differs from cohort's {coh.shape[1]}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    k = min(top_k, coh.shape[0])
    mean = np.empty(emb.shape[0])
    std = np.empty(emb.shape[0])
    for start in range(0, emb.shape[0], chunk_size):
        scores = emb[start : start + chunk_size] @ coh.T  # (chunk, C)
        top = -np.partition(-scores, k - 1, axis=1)[:, :k]  # (chunk, k) highest, unordered
        mean[start : start + chunk_size] = top.mean(axis=1)
        std[start : start + chunk_size] = top.std(axis=1)
    return mean, np.maximum(std, 1e-6)


def as_norm(
    scores: np.ndarray,
    stats1: tuple[np.ndarray, np.ndarray],
    stats2: tuple[np.ndarray, np.ndarray],
) -> Float:
    """Apply AS-norm to trial scores.

    Args:
        scores: ``(T,)`` raw cosine scores.
        stats1: ``(mean, std)``, each ``(T,)``, of each trial's first embedding (from
            :func:`cohort_statistics`).
        stats2: the same for each trial's second embedding.

    Returns:
        ``(T,)`` normalised scores.

    Raises:
        ValueError: the arrays do not all have the shape of ``scores``.
    """
    s = np.asarray(scores, dtype=np.float64)
    arrays = [np.asarray(a, dtype=np.float64) for a in (*stats1, *stats2)]
    if s.ndim != 1 or any(a.shape != s.shape for a in arrays):
        raise ValueError(
            f"scores and statistics must all be 1-D of equal length, got {s.shape} and "
            f"{[a.shape for a in arrays]}"
        )
    mean1, std1, mean2, std2 = arrays
    return 0.5 * ((s - mean1) / std1 + (s - mean2) / std2)
