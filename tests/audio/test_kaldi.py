"""voxvec.audio.kaldi: Kaldi filterbanks against an independent implementation, batching, config."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from voxvec.audio.kaldi import (
    FLOAT32_EPS,
    KALDI_FBANK_80,
    KaldiFbankConfig,
    fbank_frame_lengths,
    kaldi_fbank,
    kaldi_mel_banks,
)
from voxvec.models.frontends import KaldiFbank, create_frontend

# Measured against kaldi-native-fbank 1.23.0 on 16 real files of 4 corpora (the files below):
# largest absolute difference of any log energy 9.9e-4 (raw) and 9.8e-4 (mean-normalised);
# float32 rounding in the FFTs, most of it in low-energy bins.
MAX_ABS_DIFF = 2e-3
CORPORA = (
    "speechocean762",
    "common-voice-subsets",
    "arabic-speech-commands",
    "librispeech-train-clean-100-sample",
)


def real_files(root: Path) -> list[Path]:
    """4 files spread over each corpus's manifest (16 kHz, 1-15 s)."""
    files = []
    for corpus in CORPORA:
        with open(root / corpus / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        files += [root / corpus / row["path"] for row in rows[::97][:4]]
    return files


def knf_fbank(wav: np.ndarray) -> np.ndarray:
    """kaldi-native-fbank's features of a float waveform, Kaldi defaults, 80 bins, no dither."""
    knf = pytest.importorskip("kaldi_native_fbank", reason="the dev extra installs it")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = 80
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(16000, wav.tolist())
    computer.input_finished()
    return np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)])


def test_matches_kaldi_native_fbank_on_real_speech(shared_data: Path) -> None:
    import soundfile as sf

    raw = KaldiFbankConfig(mean_normalize=False)
    for path in real_files(shared_data):
        wav, rate = sf.read(str(path), dtype="float32")
        assert rate == 16000
        expected = knf_fbank(wav)
        ours, n_frames = kaldi_fbank(torch.from_numpy(wav), raw)
        assert ours.shape == (1, *expected.shape) and int(n_frames[0]) == len(expected)
        assert np.abs(ours[0].numpy() - expected).max() < MAX_ABS_DIFF, path
        normalised, _ = kaldi_fbank(torch.from_numpy(wav), KALDI_FBANK_80)
        expected -= expected.mean(0, keepdims=True)
        assert np.abs(normalised[0].numpy() - expected).max() < MAX_ABS_DIFF, path


def test_padded_batch_gives_each_item_alone() -> None:
    gen = torch.Generator().manual_seed(0)
    n_samples = [16000, 5200, 561, 9999]
    wav = 3.0 * torch.randn(len(n_samples), max(n_samples), generator=gen)  # loud padding
    for i, n in enumerate(n_samples):
        wav[i, :n] = 0.1 * torch.randn(n, generator=gen)
    feats, n_frames = kaldi_fbank(wav, KALDI_FBANK_80, torch.tensor(n_samples))
    assert n_frames.tolist() == [1 + (n - 400) // 160 for n in n_samples]
    for i, n in enumerate(n_samples):
        alone, _ = kaldi_fbank(wav[i, :n])
        valid = int(n_frames[i])
        torch.testing.assert_close(feats[i, :valid], alone[0], atol=1e-5, rtol=0)
        assert not feats[i, valid:].any()
        # Mean normalisation over the valid frames only: each bin averages to zero there.
        assert feats[i, :valid].mean(0).abs().max() < 1e-4


def test_mel_banks_are_kaldis() -> None:
    banks = kaldi_mel_banks(KALDI_FBANK_80)
    assert banks.shape == (80, 257)
    assert not banks[:, -1].any()  # the Nyquist bin is outside every filter
    assert float(banks.max()) <= 1.0 and float(banks.min()) == 0.0
    # Triangles on Kaldi's mel scale (1127 ln(1 + f / 700)) between 20 Hz and 8 kHz: the first
    # filter peaks near its centre frequency and nothing lies below 20 Hz (bin 0 is 0 Hz).
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    centre_hz = 700.0 * (np.exp((mel(20.0) + (mel(8000.0) - mel(20.0)) / 81) / 1127.0) - 1)
    assert abs(int(banks[0].argmax()) * 16000 / 512 - centre_hz) < 16000 / 512
    assert not banks[:, 0].any()


def test_config_derived_sizes_and_floor() -> None:
    cfg = KALDI_FBANK_80
    assert (cfg.win_length, cfg.hop_length, cfg.n_fft, cfg.f_max) == (400, 160, 512, 8000.0)
    assert (cfg.min_frames, cfg.min_samples, cfg.log_floor) == (2, 560, FLOAT32_EPS)
    assert KaldiFbankConfig(mean_normalize=False).min_samples == 400
    assert KaldiFbankConfig(round_to_power_of_two=False).n_fft == 400
    assert KaldiFbankConfig(high_freq=-400).f_max == 7600.0
    assert fbank_frame_lengths(torch.tensor([399, 400, 559, 560]), cfg).tolist() == [0, 1, 1, 2]
    silence, _ = kaldi_fbank(torch.zeros(800), KaldiFbankConfig(mean_normalize=False))
    torch.testing.assert_close(silence, torch.full_like(silence, float(np.log(FLOAT32_EPS))))


@pytest.mark.parametrize("window", ["hanning", "hamming", "rectangular"])
def test_other_windows_change_the_features(window: str) -> None:
    wav = 0.1 * torch.randn(4000, generator=torch.Generator().manual_seed(1))
    povey, _ = kaldi_fbank(wav)
    other, _ = kaldi_fbank(wav, KaldiFbankConfig(window=window))  # type: ignore[arg-type]
    assert other.shape == povey.shape and not torch.allclose(other, povey, atol=1e-3)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"snip_edges": False}, "snip_edges must be True"),
        ({"dither": 1.0}, "dither must be 0"),
        ({"high_freq": 9000.0}, "need 0 <= low_freq < high_freq <= 8000.0 Hz"),
        ({"low_freq": 8000.0}, "need 0 <= low_freq"),
        ({"window": "blackman"}, "window must be"),
        ({"n_mels": 0}, "must be positive"),
        ({"frame_length_ms": 0.05}, "at least 2 and 1 samples"),
        ({"log_floor": 0.0}, "log_floor must be positive"),
    ],
)
def test_invalid_config_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KaldiFbankConfig(**fields)


def test_short_or_malformed_input_is_refused() -> None:
    with pytest.raises(ValueError, match="input of 559 samples is shorter than 2 analysis frames"):
        kaldi_fbank(torch.zeros(2, 800), lengths=torch.tensor([800, 559]))
    raw = KaldiFbankConfig(mean_normalize=False)
    with pytest.raises(ValueError, match="input of 399 samples is shorter than one analysis"):
        kaldi_fbank(torch.zeros(2, 800), raw, lengths=torch.tensor([800, 399]))
    with pytest.raises(ValueError, match="input of 300 samples"):
        kaldi_fbank(torch.zeros(300))
    with pytest.raises(ValueError, match=r"expected a \(T,\) or \(B, T\) waveform"):
        kaldi_fbank(torch.zeros(1, 1, 800))


def test_front_end_is_kaldi_fbank() -> None:
    frontend = create_frontend(KALDI_FBANK_80)
    assert isinstance(frontend, KaldiFbank) and frontend.kind == "kaldi_fbank"
    assert (frontend.sample_rate, frontend.min_samples, frontend.n_mels) == (16000, 560, 80)
    wav = 0.1 * torch.randn(2, 5000, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([5000, 3000])
    features, n_frames = frontend(wav, lengths)
    expected, expected_frames = kaldi_fbank(wav, KALDI_FBANK_80, lengths)
    torch.testing.assert_close(features, expected, atol=0, rtol=0)
    assert torch.equal(n_frames, expected_frames)
    assert torch.equal(frontend.output_lengths(lengths), n_frames)
    assert frontend.state_dict() == {}
