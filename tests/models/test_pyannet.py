"""Tests of voxvec.models.pyannet: frame arithmetic, powerset classes, sinc filters, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxvec.models.pyannet import PyanNet, PyanNetConfig


def test_powerset_classes_are_ordered_by_size_then_speaker() -> None:
    assert PyanNetConfig().powerset == ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2))


def test_frame_step_receptive_field_and_count() -> None:
    cfg = PyanNetConfig()
    assert cfg.frame_step == 270
    assert cfg.receptive_field == 991
    assert cfg.n_frames(160000) == 589  # a 10 s chunk
    assert cfg.n_frames(cfg.receptive_field) == 1
    assert cfg.n_frames(100) == 0


def test_output_is_log_probabilities_of_every_frame() -> None:
    torch.manual_seed(0)
    model = PyanNet().eval()
    wav = 0.1 * torch.randn(2, 32000)
    with torch.inference_mode():
        out = model(wav)
    assert out.shape == (2, PyanNetConfig().n_frames(32000), 7)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, out.shape[1]))
    with pytest.raises(ValueError, match="T >= 991"):
        model(torch.zeros(1, 500))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(torch.zeros(32000))


def test_sinc_filters_pass_their_band_and_stop_the_rest() -> None:
    model = PyanNet()
    bank = model.sincnet.conv1d[0].filterbank
    filters = bank.filters().detach()[:, 0].numpy()  # (80, 251)
    assert filters.shape == (80, 251)
    cfg = model.config
    low = cfg.min_low_hz + bank.low_hz_.detach().abs().numpy()[:, 0]
    high = low + cfg.min_band_hz + bank.band_hz_.detach().abs().numpy()[:, 0]
    freqs = np.fft.rfftfreq(4096, 1 / cfg.sample_rate)
    for i in (5, 20, 35):  # cosine filters: symmetric band-pass
        np.testing.assert_allclose(filters[i], filters[i][::-1], atol=1e-6)
        response = np.abs(np.fft.rfft(filters[i], 4096))
        centre = (low[i] + high[i]) / 2
        inside = response[np.argmin(np.abs(freqs - centre))]
        far = response[(freqs < low[i] / 2) | (freqs > min(2 * high[i], 7900))]
        assert inside > 10 * np.median(far)
        sine = filters[40 + i]  # sine filters: antisymmetric
        np.testing.assert_allclose(sine, -sine[::-1], atol=1e-6)
