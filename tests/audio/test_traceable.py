"""Tests for voxvec.audio.traceable: the traced front-end ops equal the eager ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from voxvec.audio.traceable import dft_power, frame, reflect_pad_items


def test_frame_equals_unfold() -> None:
    wav = torch.randn(3, 1001, generator=torch.Generator().manual_seed(0))
    assert torch.equal(frame(wav, 400, 160), wav.unfold(1, 400, 160))


def test_every_item_is_reflect_padded_at_its_own_end() -> None:
    wav = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([50, 31, 9])
    padded = reflect_pad_items(wav, lengths, 8)
    assert padded.shape == (3, 66)
    for i, n in enumerate(lengths.tolist()):
        alone = F.pad(wav[i : i + 1, :n], (8, 8), mode="reflect")[0]
        assert torch.equal(padded[i, : n + 16], alone)


@pytest.mark.parametrize(("width", "n_fft"), [(400, 512), (512, 512), (1024, 1024)])
def test_dft_power_equals_the_fft(width: int, n_fft: int) -> None:
    frames = torch.randn(2, 5, width, generator=torch.Generator().manual_seed(2))
    expected = torch.fft.rfft(frames, n=n_fft).abs() ** 2
    torch.testing.assert_close(dft_power(frames, n_fft), expected, rtol=1e-4, atol=1e-3)
