"""Tests for voxvec.eval.norm: cohort statistics and AS-norm."""

from __future__ import annotations

import numpy as np
import pytest

from voxvec.eval.metrics import eer
from voxvec.eval.norm import as_norm, cohort_statistics, speaker_means


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_cohort_statistics_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(23, 8))
    cohort = rng.normal(size=(40, 8)) * 3  # not unit length: normalised inside
    for top_k in (1, 5, 40, 100):
        mean, std = cohort_statistics(emb, cohort, top_k=top_k, chunk_size=7)
        scores = unit(emb) @ unit(cohort).T
        top = np.sort(scores, axis=1)[:, ::-1][:, : min(top_k, 40)]
        np.testing.assert_allclose(mean, top.mean(axis=1))
        np.testing.assert_allclose(std, np.maximum(top.std(axis=1), 1e-6))


def test_as_norm_formula_and_symmetry() -> None:
    scores = np.array([0.5, 0.1])
    s1 = (np.array([0.1, 0.0]), np.array([0.2, 0.1]))
    s2 = (np.array([0.3, 0.2]), np.array([0.1, 0.5]))
    expected = 0.5 * ((scores - s1[0]) / s1[1] + (scores - s2[0]) / s2[1])
    np.testing.assert_allclose(as_norm(scores, s1, s2), expected)
    np.testing.assert_allclose(as_norm(scores, s2, s1), expected)
    with pytest.raises(ValueError, match="equal length"):
        as_norm(scores, s1, (np.zeros(3), np.ones(3)))


def nuisance_embeddings(rng, n_speakers, files, direction):
    """Speaker vectors plus a per-file amount of one shared nuisance direction (a channel)."""
    dim = direction.size
    speakers = unit(rng.normal(size=(n_speakers, dim)))
    labels = np.repeat(np.arange(n_speakers), files)
    x = unit(speakers[labels] + 0.5 * unit(rng.normal(size=(labels.size, dim))))
    amount = rng.uniform(0, 1.5, labels.size)
    return unit(x + amount[:, None] * direction), labels


@pytest.mark.parametrize("seed", [0, 1])
def test_as_norm_lowers_eer_under_a_per_file_nuisance(seed: int) -> None:
    # files with more of the nuisance score high against everyone; AS-norm measures each file
    # against the cohort and removes most of that offset
    rng = np.random.default_rng(seed)
    direction = unit(rng.normal(size=32))
    x, labels = nuisance_embeddings(rng, 30, 4, direction)
    cohort, _ = nuisance_embeddings(rng, 100, 2, direction)
    i, j = np.triu_indices(len(x), k=1)
    target = (labels[i] == labels[j]).astype(int)
    raw = np.einsum("nd,nd->n", x[i], x[j])
    mean, std = cohort_statistics(x, cohort, top_k=50)
    normed = as_norm(raw, (mean[i], std[i]), (mean[j], std[j]))
    assert eer(normed, target)[0] < 0.7 * eer(raw, target)[0]


def test_speaker_means() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -2.0], [3.0, 0.0]])
    means = speaker_means(emb, ["b", "b", "a", "a"])
    np.testing.assert_allclose(means, unit(np.array([[1.0, -1.0], [1.0, 1.0]])))
    with pytest.raises(ValueError, match="speaker ids"):
        speaker_means(emb, ["a"])


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="differs"):
        cohort_statistics(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="non-empty"):
        cohort_statistics(np.ones((2, 3)), np.ones((0, 3)))
    with pytest.raises(ValueError, match="top_k"):
        cohort_statistics(np.ones((2, 3)), np.ones((4, 3)), top_k=0)
