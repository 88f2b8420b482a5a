"""Tests for voxvec.pipeline: the backend contract. A BaseEmbedder subclass supplies only its
rate, size, minimum input and forward pass (embed_waveforms); inputs, windows, batching order,
means and thresholds come from the shared code, which imports no torch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest

from voxvec.audio.windows import length_batches
from voxvec.pipeline import BaseEmbedder


class Summary(BaseEmbedder):
    """A forward pass without a model: each waveform's length, mean and energy, unit length."""

    def __init__(self, **options: object) -> None:
        self.calls: list[list[int]] = []
        super().__init__({"thresholds": {"eer": 0.5}}, **options)

    sample_rate = 8000
    embed_dim = 3
    min_samples = 100

    def embed_waveforms(self, waves: Sequence[np.ndarray], *, batch_size: int = 16) -> np.ndarray:
        self.calls.append([len(w) for w in waves])
        rows = np.array([[len(w) / 8000, w.mean(), (w**2).mean()] for w in waves])
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 8000))).astype(np.float32)


def test_a_backend_supplies_only_the_forward_pass() -> None:
    embedder = Summary(window_s=1.0, hop_s=0.5, min_speech_s=0)
    long, short = noise(2.2, 0), noise(0.5, 1)
    windows = embedder.embed_windows([long, short], 8000)
    assert embedder.calls == [[8000] * 4 + [4000]]  # the windows of every input in one pass
    np.testing.assert_array_equal(windows[0].starts_s, [0, 0.5, 1.0, 1.2])
    assert windows[1].embeddings.shape == (1, 3)
    np.testing.assert_allclose(embedder.embed([long, short], 8000)[0], windows[0].mean())
    assert embedder.verify(long, long, sample_rate=8000) == (pytest.approx(1.0), True)  # card: 0.5
    with pytest.raises(ValueError, match="shorter than the model's minimum input of 100"):
        embedder.embed(noise(0.01, 2), 8000)


def test_window_options_are_checked_against_the_backend() -> None:
    with pytest.raises(ValueError, match="shorter than the model's minimum input"):
        Summary(window_s=0.01)
    with pytest.raises(TypeError, match="abstract"):
        BaseEmbedder()


def test_length_batches_are_longest_first_and_cover_every_item() -> None:
    assert length_batches([3, 9, 5, 9, 1], 2) == [[1, 3], [2, 0], [4]]
    assert length_batches([], 4) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        length_batches([1], 0)
    # At most max_samples per padded batch (items x the first, longest), never fewer than one.
    assert length_batches([3, 9, 5, 9, 1], 4, max_samples=18) == [[1, 3], [2, 0, 4]]
    assert length_batches([30, 9], 4, max_samples=10) == [[0], [1]]
    with pytest.raises(ValueError, match="max_samples must be >= 1"):
        length_batches([1], 2, max_samples=0)


def test_the_pipeline_imports_no_torch() -> None:
    code = "import sys, voxvec.pipeline; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
