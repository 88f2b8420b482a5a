"""Log-mel front-ends: pure, batched, device-agnostic torch functions of ``(Tensor, MelConfig)``.

Every detail of a spectrogram is a field of :class:`MelConfig`; there are no hidden defaults.
Two presets are provided:

- :data:`TACOTRON_22K`: the original GRU model's Tacotron log-mel (22.05 kHz, magnitude STFT,
  Slaney mel, natural log floored at 1e-5, centred reflect-padded frames).
- :data:`LOGMEL_16K`: 16 kHz, 25 ms Hamming window, 10 ms hop, 80 bands 20-7600 Hz, pre-emphasis,
  power spectrum, per-utterance mean normalisation, uncentred frames (so right-padding a batch
  cannot change any valid frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from voxvec.audio.traceable import dft_power, frame, reflect_pad_items


@dataclass(frozen=True)
class MelConfig:
    """Everything that defines a log-mel spectrogram.

    Attributes:
        sample_rate: input sample rate in Hz.
        n_fft: FFT size in samples.
        win_length: analysis window length in samples (<= n_fft, centred in the FFT frame).
        hop_length: hop between frames in samples.
        n_mels: number of mel bands.
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz.
        window: "hann" or "hamming" (periodic, as ``torch.hann_window`` builds them).
        center: reflect-pad ``n_fft // 2`` samples on both sides so frame t is centred at
            ``t * hop_length``; otherwise frames start at ``t * hop_length``.
        power: 1.0 for a magnitude spectrogram, 2.0 for power.
        mel_scale: "slaney" (librosa's default) or "htk".
        mel_norm: "slaney" (area normalisation, librosa's default) or "none".
        log_floor: the log is taken of ``max(mel, log_floor)``.
        preemphasis: coefficient of ``y[t] = x[t] - a * x[t-1]``; 0 disables it.
        normalize: "none" or "mean" (subtract the per-utterance mean of each band over the
            valid frames).
    """

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 20.0
    f_max: float = 7600.0
    window: Literal["hann", "hamming"] = "hamming"
    center: bool = False
    power: float = 2.0
    mel_scale: Literal["slaney", "htk"] = "slaney"
    mel_norm: Literal["slaney", "none"] = "slaney"
    log_floor: float = 1e-6
    preemphasis: float = 0.97
    normalize: Literal["none", "mean"] = "mean"

    def __post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={self.f_min}, "
                f"f_max={self.f_max}, sample_rate={self.sample_rate}"
            )
        if self.window not in ("hann", "hamming"):
            raise ValueError(f"window must be 'hann' or 'hamming', got {self.window!r}")
        if self.normalize not in ("none", "mean"):
            raise ValueError(f"normalize must be 'none' or 'mean', got {self.normalize!r}")

    @property
    def min_frames(self) -> int:
        """Fewest frames that carry information: two with ``normalize="mean"`` (one frame is its
        own mean, so it normalises to all zeros whatever the input), else one."""
        return 2 if self.normalize == "mean" else 1

    @property
    def min_samples(self) -> int:
        """Fewest input samples that give :attr:`min_frames` frames.

        Uncentred frames read ``n_fft`` samples (a shorter window sits centred inside them);
        centred frames need more samples than the ``n_fft // 2`` of reflect padding; every
        further frame needs ``hop_length`` more.
        """
        further = (self.min_frames - 1) * self.hop_length
        if self.center:
            return max(self.n_fft // 2 + 1, further)
        return self.n_fft + further


TACOTRON_22K = MelConfig(
    sample_rate=22050,
    n_fft=1024,
    win_length=1024,
    hop_length=256,
    n_mels=80,
    f_min=0.0,
    f_max=8000.0,
    window="hann",
    center=True,
    power=1.0,
    mel_scale="slaney",
    mel_norm="slaney",
    log_floor=1e-5,
    preemphasis=0.0,
    normalize="none",
)

LOGMEL_16K = MelConfig()


def _hz_to_mel(hz: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    # Slaney: linear below 1 kHz, logarithmic above.
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    mel = hz / f_sp
    log_region = hz >= min_log_hz
    mel[log_region] = min_log_mel + np.log(hz[log_region] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    hz = f_sp * mel
    log_region = mel >= min_log_mel
    hz[log_region] = min_log_hz * np.exp(logstep * (mel[log_region] - min_log_mel))
    return hz


@lru_cache(maxsize=16)
def _mel_filterbank_np(config: MelConfig) -> np.ndarray:
    n_freqs = config.n_fft // 2 + 1
    fft_hz = np.linspace(0.0, config.sample_rate / 2, n_freqs)
    mel_edges = np.linspace(
        _hz_to_mel(np.array([config.f_min]), config.mel_scale)[0],
        _hz_to_mel(np.array([config.f_max]), config.mel_scale)[0],
        config.n_mels + 2,
    )
    hz_edges = _mel_to_hz(mel_edges, config.mel_scale)
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_hz[None, :]  # (n_mels + 2, n_freqs)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if config.mel_norm == "slaney":
        weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights.astype(np.float32)  # (n_mels, n_freqs)


def mel_filterbank(config: MelConfig) -> Tensor:
    """Mel filterbank ``(n_mels, n_fft // 2 + 1)``, float32, as librosa.filters.mel builds it."""
    return torch.from_numpy(_mel_filterbank_np(config).copy())


def _window(config: MelConfig, device: torch.device) -> Tensor:
    make = torch.hann_window if config.window == "hann" else torch.hamming_window
    return make(config.win_length, periodic=True, dtype=torch.float32, device=device)


def frame_lengths(lengths: Tensor, config: MelConfig) -> Tensor:
    """Number of valid frames for inputs of ``lengths`` samples (LongTensor, same shape)."""
    if config.center:
        return lengths // config.hop_length + 1
    return torch.clamp((lengths - config.n_fft) // config.hop_length + 1, min=0)


def _spectrogram_1(wav: Tensor, config: MelConfig) -> Tensor:
    """(B, T) -> (B, n_freqs, F) magnitude ** power."""
    spec = torch.stft(
        wav,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=_window(config, wav.device),
        center=config.center,
        pad_mode="reflect",
        return_complex=True,
    )
    parts = torch.view_as_real(spec)
    return _power(parts[..., 0] ** 2 + parts[..., 1] ** 2, config)  # |X|^2: faster than abs()


def _power(power: Tensor, config: MelConfig) -> Tensor:
    """``|X| ** config.power`` from the power spectrum ``|X| ** 2``."""
    if config.power == 2.0:
        return power
    return power.sqrt() if config.power == 1.0 else power.pow(config.power / 2)


def _spectrogram_traceable(wav: Tensor, lengths: Tensor, config: MelConfig) -> Tensor:
    """(B, T) -> (B, n_freqs, F): each item's ``_spectrogram_1`` in ops that trace with dynamic
    batch and length (see :mod:`voxvec.audio.traceable`)."""
    if config.center:
        wav = reflect_pad_items(wav, lengths, config.n_fft // 2)
    left = (config.n_fft - config.win_length) // 2
    window = F.pad(_window(config, wav.device), (left, config.n_fft - config.win_length - left))
    frames = frame(wav, config.n_fft, config.hop_length) * window  # (B, F, n_fft)
    return _power(dft_power(frames, config.n_fft), config).transpose(1, 2)


def waveform_batch(
    wav: Tensor, lengths: Tensor | None, min_samples: int, min_frames: int, sample_rate: int
) -> tuple[Tensor, Tensor]:
    """A front-end's input checked: ``(B, T)`` float32 and ``(B,)`` LongTensor lengths.

    Args:
        wav: ``(T,)`` or ``(B, T)`` waveform(s); ``(T,)`` gives B = 1.
        lengths: ``(B,)`` valid samples per item of a right-padded batch; None: all ``T``.
        min_samples: the fewest samples that give ``min_frames`` frames.
        min_frames: the fewest frames the features need (1, or 2 when mean-normalised), for the
            error message.
        sample_rate: the rate in Hz, for the error message.

    Raises:
        ValueError: ``wav`` is not 1-D or 2-D, or an item is shorter than ``min_samples``.
    """
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2:
        raise ValueError(f"expected a (T,) or (B, T) waveform, got shape {tuple(wav.shape)}")
    if lengths is None:
        lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
    lengths = lengths.to(device=wav.device, dtype=torch.long)
    short = lengths < min_samples
    if bool(short.any()):
        bad = int(lengths[short][0])
        if min_frames == 1:
            needed = f"one analysis window ({min_samples} samples at {sample_rate} Hz)"
        else:
            needed = (
                f"{min_frames} analysis frames ({min_samples} samples at {sample_rate} Hz; "
                "the per-utterance mean normalisation makes a single frame all zeros)"
            )
        raise ValueError(f"input of {bad} samples is shorter than {needed}")
    return wav.float(), lengths


def log_mel(wav: Tensor, config: MelConfig, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Log-mel spectrogram of a batch of waveforms.

    Args:
        wav: ``(T,)`` or ``(B, T)`` float waveform(s) at ``config.sample_rate``, in [-1, 1].
        config: the spectrogram definition.
        lengths: ``(B,)`` valid samples per item when the batch is right-padded; None means all
            ``T`` samples are valid.

    Returns:
        ``(features, n_frames)``: features ``(B, F, n_mels)`` float32 (frames past an item's
        ``n_frames`` are zero) and ``n_frames`` ``(B,)`` LongTensor. A ``(T,)`` input gives B = 1.
        Each item's valid frames equal those of the item computed alone.

    Raises:
        ValueError: an item is shorter than ``config.min_samples``.
    """
    wav, lengths = waveform_batch(
        wav, lengths, config.min_samples, config.min_frames, config.sample_rate
    )
    batch, total = wav.shape
    if config.preemphasis:
        wav = torch.cat([wav[:, :1], wav[:, 1:] - config.preemphasis * wav[:, :-1]], dim=1)
    n_frames = frame_lengths(lengths, config)
    if torch.jit.is_tracing():
        spec = _spectrogram_traceable(wav, lengths, config)
    elif config.center and bool((lengths != total).any()):
        # Reflect padding at the end depends on where an item ends: compute items one by one.
        specs = [_spectrogram_1(wav[i : i + 1, : int(lengths[i])], config) for i in range(batch)]
        spec = wav.new_zeros(batch, specs[0].shape[1], int(n_frames.max()))
        for i, s in enumerate(specs):
            spec[i, :, : s.shape[-1]] = s[0]
    else:
        spec = _spectrogram_1(wav, config)  # (B, n_freqs, F)
    fbank = mel_filterbank(config).to(wav.device)
    mel = torch.matmul(fbank, spec)  # (B, n_mels, F)
    feats = torch.log(torch.clamp(mel, min=config.log_floor)).transpose(1, 2)  # (B, F, n_mels)
    mask = (torch.arange(feats.shape[1], device=wav.device)[None] < n_frames[:, None])[..., None]
    if config.normalize == "mean":
        mean = (feats * mask).sum(1, keepdim=True) / n_frames.clamp(min=1)[:, None, None]
        feats = feats - mean
    feats = feats * mask
    return feats.contiguous(), n_frames
