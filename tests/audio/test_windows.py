"""Tests for voxvec.audio.windows: padding with lengths, sliding windows, random crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxvec.audio.windows import pad_batch, random_crop, window_starts


def test_pad_batch_mixed_inputs() -> None:
    rng = np.random.default_rng(0)
    waves = [
        rng.standard_normal(5).astype(np.float32),
        torch.randn(9, dtype=torch.float64),
        rng.standard_normal(1),  # float64 numpy
        torch.zeros(0),
    ]
    batch, lengths = pad_batch(waves)
    assert batch.dtype == torch.float32 and batch.shape == (4, 9)
    assert lengths.dtype == torch.long and lengths.tolist() == [5, 9, 1, 0]
    for i, w in enumerate(waves):
        n = int(lengths[i])
        np.testing.assert_allclose(batch[i, :n].numpy(), np.asarray(w, np.float32), rtol=1e-6)
        assert torch.all(batch[i, n:] == 0)


def test_pad_batch_single_and_errors() -> None:
    batch, lengths = pad_batch([torch.arange(3.0)])
    assert batch.tolist() == [[0.0, 1.0, 2.0]] and lengths.tolist() == [3]
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([])
    with pytest.raises(ValueError, match=r"waveform 1 must be 1-D"):
        pad_batch([np.zeros(3), np.zeros((2, 3))])


def covered(n_samples: int, window: int, starts: list[int]) -> np.ndarray:
    mask = np.zeros(n_samples, dtype=bool)
    for s in starts:
        mask[s : s + window] = True
    return mask


@pytest.mark.parametrize(
    ("n_samples", "window", "hop"),
    [
        (100, 10, 5),
        (101, 10, 5),
        (109, 10, 10),
        (110, 10, 10),
        (48000, 16000, 8000),
        (50000, 16000, 8000),
        (50000, 16000, 16000),
        (12345, 700, 1),
    ],
)
def test_window_starts_cover_signal(n_samples: int, window: int, hop: int) -> None:
    starts = window_starts(n_samples, window, hop)
    assert starts[0] == 0
    assert starts[-1] + window == n_samples  # the last window ends at the end
    assert all(s + window <= n_samples for s in starts)
    steps = np.diff(starts)
    assert np.all(steps > 0) and np.all(steps <= hop)
    assert np.all(steps[:-1] == hop)  # regular grid, only the last step may be shorter
    assert covered(n_samples, window, starts).all()


def test_window_starts_exact_grid_has_no_extra_window() -> None:
    assert window_starts(30, 10, 10) == [0, 10, 20]
    assert window_starts(35, 10, 10) == [0, 10, 20, 25]
    assert window_starts(10, 10, 3) == [0]


@pytest.mark.parametrize("n_samples", [0, 1, 99, 100])
def test_window_starts_short_signal(n_samples: int) -> None:
    assert window_starts(n_samples, 100, 50) == [0]


def test_window_starts_errors() -> None:
    with pytest.raises(ValueError, match="hop"):
        window_starts(100, 10, 11)
    with pytest.raises(ValueError, match="hop"):
        window_starts(100, 10, 0)
    with pytest.raises(ValueError, match="window"):
        window_starts(100, 0, 1)
    with pytest.raises(ValueError, match="n_samples"):
        window_starts(-1, 10, 5)


def test_random_crop_reproducible_and_in_bounds() -> None:
    wav = torch.arange(1000.0)
    crops = [random_crop(wav, 100, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(crops[0], crops[1])
    gen = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(200):
        crop = random_crop(wav, 100, gen)
        assert crop.shape == (100,)
        start = int(crop[0])
        assert torch.equal(crop, wav[start : start + 100])  # contiguous
        assert 0 <= start <= 900
        starts.add(start)
    assert len(starts) > 50  # starts vary
    assert min(starts) < 100 and max(starts) > 800


def test_random_crop_edges_and_batched() -> None:
    wav = torch.randn(50)
    assert random_crop(wav, 50) is wav
    assert random_crop(wav, 80) is wav  # shorter than the crop: returned whole
    batch = torch.arange(20.0).reshape(2, 10)
    crop = random_crop(batch, 4, torch.Generator().manual_seed(1))
    assert crop.shape == (2, 4)
    assert torch.equal(crop[1] - crop[0], torch.full((4,), 10.0))  # same span for every row
    assert torch.all(crop[0, 1:] - crop[0, :-1] == 1)
    # Every start position, including the last, is reachable.
    gen = torch.Generator().manual_seed(3)
    seen = {int(random_crop(torch.arange(5.0), 3, gen)[0]) for _ in range(100)}
    assert seen == {0, 1, 2}
    with pytest.raises(ValueError, match="n_samples"):
        random_crop(wav, 0)
