"""Tests of voxvec.apps.index: exact blocked search, and faiss against it on real embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxvec.apps.index import ExactIndex, FaissIndex, build_index


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_search_equals_brute_force_across_blocks() -> None:
    rng = np.random.default_rng(0)
    matrix = unit(rng.standard_normal((1003, 16)))
    queries = unit(rng.standard_normal((37, 16)))
    brute = queries @ matrix.T
    for block_rows in (1003, 100, 7):
        scores, rows = ExactIndex(matrix, block_rows=block_rows).search(queries, 5)
        assert scores.shape == rows.shape == (37, 5)
        expected_rows = np.argsort(-brute, axis=1)[:, :5]
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_allclose(scores, np.take_along_axis(brute, expected_rows, 1), atol=1e-6)
    # k larger than the store returns every row
    scores, rows = ExactIndex(matrix[:3]).search(queries, 10)
    assert rows.shape == (37, 3) and sorted(rows[0].tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"queries must be \(Q, 16\)"):
        ExactIndex(matrix).search(np.ones((2, 8)), 1)
    with pytest.raises(ValueError, match="unknown index 'hnsw'"):
        build_index("hnsw", matrix)


@pytest.fixture(scope="module")
def real_embeddings(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of 600 real 1 s recordings of 25 speakers (400 to search, 200 queries)."""
    import voxvec
    from voxvec.data.manifest import read_manifest

    items = read_manifest(shared_data / "arabic-speech-commands" / "manifest.csv")
    picked = [items[i].path for i in np.random.default_rng(0).permutation(len(items))[:600]]
    emb = voxvec.load(min_speech_s=0).embed(picked, batch_size=64)
    return emb[:400], emb[400:]


def test_faiss_recall_at_1_on_real_embeddings(real_embeddings) -> None:
    pytest.importorskip("faiss", reason="the faiss index needs pip install 'voxvec[index]'")
    base, queries = real_embeddings
    _, exact = ExactIndex(base).search(queries, 1)
    # the defaults (every list at this size: recall 1), and a quarter of 16 lists, the share the
    # default probes in large stores (measured here: 2 of 16 lists give recall 0.93-0.94, 4 give
    # 0.975 with float32 embeddings and 0.99 with bfloat16 ones, 8 give 0.995-1.0)
    for index, least in ((FaissIndex(base), 0.99), (FaissIndex(base, nlist=16, nprobe=4), 0.97)):
        scores, rows = index.search(queries, 5)
        recall = float(np.mean(rows[:, 0] == exact[:, 0]))
        assert recall >= least, (index.nlist, index.nprobe, recall)
        # reported scores are exact cosines of the rows returned
        np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", base[rows], queries), atol=1e-5)
