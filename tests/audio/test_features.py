"""Tests for voxvec.audio.features: filterbanks and log-mel front-ends against librosa."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from voxvec.audio.features import (
    LOGMEL_16K,
    TACOTRON_22K,
    MelConfig,
    frame_lengths,
    log_mel,
    mel_filterbank,
)
from voxvec.audio.io import load

PRESETS = {"tacotron_22k": TACOTRON_22K, "logmel_16k": LOGMEL_16K}


def synthetic(n_samples: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A chirp plus noise bursts: energy across the whole band, with quiet stretches."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sample_rate
    chirp = 0.3 * np.sin(2 * np.pi * (100 + 2000 * t) * t)
    noise = 0.05 * rng.standard_normal(n_samples) * (np.sin(2 * np.pi * 1.5 * t) > 0)
    return (chirp + noise).astype(np.float32)


def real_speech(shared_data: Path, sample_rate: int) -> np.ndarray:
    corpus = shared_data / "speechocean762"
    with open(corpus / "manifest.csv", newline="") as f:
        path = corpus / next(csv.DictReader(f))["path"]
    return load(path, sample_rate)


def librosa_log_mel(wav: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """Reference pipeline written with librosa: (frames, n_mels) float64."""
    librosa = pytest.importorskip("librosa")
    x = wav.astype(np.float64)
    if cfg.preemphasis:
        x = np.concatenate([x[:1], x[1:] - cfg.preemphasis * x[:-1]])
    spec = (
        np.abs(
            librosa.stft(
                x,
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                win_length=cfg.win_length,
                window=librosa.filters.get_window(cfg.window, cfg.win_length, fftbins=True),
                center=cfg.center,
                pad_mode="reflect",
            )
        )
        ** cfg.power
    )
    basis = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=cfg.mel_scale == "htk",
        norm="slaney" if cfg.mel_norm == "slaney" else None,
    )
    logmel = np.log(np.maximum(basis @ spec, cfg.log_floor)).T
    if cfg.normalize == "mean":
        logmel = logmel - logmel.mean(axis=0, keepdims=True)
    return logmel


def assert_logmel_close(ours: np.ndarray, ref: np.ndarray) -> None:
    """Equal up to float32 STFT round-off, which only shows in bands near the log floor."""
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-2)
    loud = ref > ref.max() - np.log(1e4)  # within 80 dB (power) / 40 dB (magnitude) of the top
    assert loud.mean() > 0.3
    np.testing.assert_allclose(ours[loud], ref[loud], atol=1e-3)


@pytest.mark.parametrize(
    "cfg",
    [
        TACOTRON_22K,
        LOGMEL_16K,
        dataclasses.replace(LOGMEL_16K, mel_scale="htk", mel_norm="none", f_min=0.0, f_max=8000.0),
    ],
    ids=["tacotron_22k", "logmel_16k", "htk_nonorm"],
)
def test_filterbank_matches_librosa(cfg: MelConfig) -> None:
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(cfg)
    assert ours.dtype == torch.float32 and ours.shape == (cfg.n_mels, cfg.n_fft // 2 + 1)
    ref = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=cfg.mel_scale == "htk",
        norm="slaney" if cfg.mel_norm == "slaney" else None,
    )
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-4, atol=1e-7 * float(ref.max()))


def test_tacotron_matches_librosa_synthetic() -> None:
    wav = synthetic(22050 * 2 + 123, 22050)
    feats, n_frames = log_mel(torch.from_numpy(wav), TACOTRON_22K)
    ref = librosa_log_mel(wav, TACOTRON_22K)
    assert feats.shape == (1, *ref.shape) and int(n_frames[0]) == ref.shape[0]
    assert_logmel_close(feats[0].numpy(), ref)


def test_tacotron_matches_librosa_real_speech(shared_data: Path) -> None:
    wav = real_speech(shared_data, 22050)
    feats, n_frames = log_mel(torch.from_numpy(wav), TACOTRON_22K)
    ref = librosa_log_mel(wav, TACOTRON_22K)
    assert int(n_frames[0]) == ref.shape[0] == len(wav) // 256 + 1
    assert_logmel_close(feats[0].numpy(), ref)
    assert float(feats.min()) >= np.log(1e-5) - 1e-4  # the floor: log(1e-5) = -11.5129
    assert 0.0 < float(feats.max()) < 5.0


def test_logmel16k_matches_librosa() -> None:
    wav = synthetic(16000 + 77, 16000, seed=1)
    feats, n_frames = log_mel(torch.from_numpy(wav), LOGMEL_16K)
    ref = librosa_log_mel(wav, LOGMEL_16K)
    assert feats.shape == (1, *ref.shape) and int(n_frames[0]) == ref.shape[0]
    assert_logmel_close(feats[0].numpy(), ref)


def test_logmel16k_sanity() -> None:
    n = 16000
    t = np.arange(n) / 16000
    wav = torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    feats, n_frames = log_mel(wav, LOGMEL_16K)
    expected_frames = (n - LOGMEL_16K.n_fft) // LOGMEL_16K.hop_length + 1
    assert feats.shape == (1, expected_frames, 80) and n_frames.tolist() == [expected_frames]
    assert torch.isfinite(feats).all()
    # Mean normalisation: every band has zero mean over the valid frames.
    torch.testing.assert_close(feats.mean(dim=1), torch.zeros(1, 80), atol=1e-4, rtol=0)
    # Without it, the loudest band is the one around 1 kHz.
    raw, _ = log_mel(wav, dataclasses.replace(LOGMEL_16K, normalize="none"))
    fbank = mel_filterbank(LOGMEL_16K)
    bin_1k = round(1000 * LOGMEL_16K.n_fft / 16000)
    assert int(raw[0].mean(0).argmax()) == int(fbank[:, bin_1k].argmax())


@pytest.mark.parametrize("name", list(PRESETS))
def test_batch_with_lengths_equals_items_alone(name: str) -> None:
    cfg = PRESETS[name]
    rate = cfg.sample_rate
    lengths = [rate, rate // 2 + 37, cfg.min_samples, rate // 3]
    waves = [torch.from_numpy(synthetic(n, rate, seed=i)) for i, n in enumerate(lengths)]
    total = max(lengths)
    batch = torch.randn(len(waves), total)  # padding is noise: it must not leak into any item
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    feats, n_frames = log_mel(batch, cfg, torch.tensor(lengths))
    assert n_frames.tolist() == frame_lengths(torch.tensor(lengths), cfg).tolist()
    assert feats.shape == (len(waves), int(n_frames.max()), cfg.n_mels)
    for i, w in enumerate(waves):
        alone, n_alone = log_mel(w, cfg)
        n = int(n_frames[i])
        assert n == int(n_alone[0]) == alone.shape[1]
        torch.testing.assert_close(feats[i, :n], alone[0], atol=1e-4, rtol=1e-4)
        assert torch.all(feats[i, n:] == 0)


@pytest.mark.parametrize("name", list(PRESETS))
def test_frame_counts(name: str) -> None:
    cfg = PRESETS[name]
    for n in [cfg.min_samples, cfg.min_samples + 1, 1000, 4095, 4096, 16001]:
        feats, n_frames = log_mel(torch.zeros(n), cfg)
        assert feats.shape[1] == int(n_frames[0]) == int(frame_lengths(torch.tensor([n]), cfg)[0])
        if cfg.center:
            assert feats.shape[1] == n // cfg.hop_length + 1
        else:
            assert feats.shape[1] == (n - cfg.n_fft) // cfg.hop_length + 1
    # Digital silence gives the log floor everywhere (before any normalisation).
    silent, _ = log_mel(torch.zeros(4096), dataclasses.replace(cfg, normalize="none"))
    torch.testing.assert_close(silent, torch.full_like(silent, float(np.log(cfg.log_floor))))


def test_min_samples_give_two_frames_when_mean_normalised() -> None:
    # One frame is its own mean: it would normalise to all zeros whatever the input.
    assert (LOGMEL_16K.min_frames, LOGMEL_16K.min_samples) == (2, 512 + 160)
    assert dataclasses.replace(LOGMEL_16K, normalize="none").min_samples == 512
    assert (TACOTRON_22K.min_frames, TACOTRON_22K.min_samples) == (1, 513)
    centred_mean = dataclasses.replace(TACOTRON_22K, normalize="mean")
    assert centred_mean.min_samples == 513
    assert int(frame_lengths(torch.tensor(513), centred_mean)) >= 2


@pytest.mark.parametrize("name", list(PRESETS))
def test_too_short_input(name: str) -> None:
    cfg = PRESETS[name]
    needed = "one analysis window" if cfg.min_frames == 1 else "2 analysis frames"
    with pytest.raises(ValueError, match=f"shorter than {needed}"):
        log_mel(torch.zeros(cfg.min_samples - 1), cfg)
    with pytest.raises(ValueError, match=f"{cfg.min_samples - 1} samples"):
        log_mel(torch.zeros(2, 4096), cfg, torch.tensor([4096, cfg.min_samples - 1]))


def test_input_shape_errors() -> None:
    with pytest.raises(ValueError, match="shape"):
        log_mel(torch.zeros(1, 2, 4096), LOGMEL_16K)
    with pytest.raises(ValueError, match="win_length"):
        MelConfig(n_fft=256, win_length=400)
    with pytest.raises(ValueError, match="f_max"):
        MelConfig(sample_rate=8000, f_max=7600.0)
