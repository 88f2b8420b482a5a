"""Kaldi-compatible log mel filterbanks: a pure, batched, device-agnostic torch function.

:func:`kaldi_fbank` computes what Kaldi's ``compute-fbank-feats`` (and
``torchaudio.compliance.kaldi.fbank``, ``kaldi-native-fbank``) compute, for a right-padded batch:
frames of ``frame_length_ms`` every ``frame_shift_ms`` with snipped edges (only whole frames
inside the signal, so padding never changes a frame), per-frame DC removal, pre-emphasis
(the first sample is its own predecessor), a window (Povey's by default), zero padding to a
power-of-two FFT, the power (or magnitude) spectrum, Kaldi's triangular mel filters (mel =
1127 ln(1 + f / 700), the Nyquist bin excluded) and the natural log floored at float32's
epsilon. Optionally the per-utterance mean of each band over the valid frames is then subtracted
(3D-Speaker's ``mean_nor``). Everything is a field of :class:`KaldiFbankConfig`; its defaults are
Kaldi's (and 3D-Speaker's CAM++ recipe: :data:`KALDI_FBANK_80`).

The waveform is taken as it comes (floats in [-1, 1]); Kaldi's tools read 16-bit integers, a
gain of 32768 that only shifts every log energy by ln(32768 ** 2) and cancels in the mean
subtraction, except where the floor bites.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from voxvec.audio.features import waveform_batch
from voxvec.audio.traceable import dft_power, frame

FLOAT32_EPS = float(np.finfo(np.float32).eps)
"""Kaldi's log floor (``std::numeric_limits<float>::epsilon()``)."""


@dataclass(frozen=True)
class KaldiFbankConfig:
    """Everything that defines a Kaldi log mel filterbank (Kaldi's option names in brackets).

    Attributes:
        sample_rate: input sample rate in Hz (``sample-frequency``).
        frame_length_ms: analysis window length in ms (``frame-length``).
        frame_shift_ms: hop between frames in ms (``frame-shift``).
        n_mels: number of triangular mel bins (``num-mel-bins``).
        low_freq: lowest filter edge in Hz (``low-freq``).
        high_freq: highest filter edge in Hz; zero or negative counts back from the Nyquist
            frequency (``high-freq``).
        preemphasis: coefficient of ``y[n] = x[n] - a * x[n-1]`` within each frame
            (``preemphasis-coefficient``); 0 disables it.
        remove_dc_offset: subtract each frame's mean before pre-emphasis (``remove-dc-offset``).
        window: "povey" (Hann ** 0.85), "hanning", "hamming" or "rectangular"
            (``window-type``; all symmetric, as Kaldi builds them).
        round_to_power_of_two: zero-pad each frame to the next power of two for the FFT
            (``round-to-power-of-two``); otherwise the FFT is the window length.
        use_power: power spectrum (True) or magnitude (``use-power``).
        log_floor: the log is taken of ``max(energy, log_floor)`` (Kaldi: float32 epsilon).
        snip_edges: only whole frames inside the signal (``snip-edges``); must be True, since
            Kaldi's reflected edge frames would depend on where each item of a batch ends.
        dither: random noise added before analysis (``dither``); must be 0: features are
            deterministic.
        mean_normalize: subtract, from every valid frame, the mean of each bin over the item's
            valid frames (3D-Speaker's ``mean_nor``; not part of Kaldi's fbank itself).
    """

    sample_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    n_mels: int = 80
    low_freq: float = 20.0
    high_freq: float = 0.0
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    window: Literal["povey", "hanning", "hamming", "rectangular"] = "povey"
    round_to_power_of_two: bool = True
    use_power: bool = True
    log_floor: float = FLOAT32_EPS
    snip_edges: bool = True
    dither: float = 0.0
    mean_normalize: bool = True

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.n_mels <= 0:
            raise ValueError(
                f"sample_rate and n_mels must be positive, got {self.sample_rate}, {self.n_mels}"
            )
        if self.win_length < 2 or self.hop_length < 1:
            raise ValueError(
                f"frame_length_ms ({self.frame_length_ms}) and frame_shift_ms "
                f"({self.frame_shift_ms}) must give at least 2 and 1 samples at "
                f"{self.sample_rate} Hz"
            )
        nyquist = self.sample_rate / 2
        if not 0 <= self.low_freq < self.f_max <= nyquist:
            raise ValueError(
                f"need 0 <= low_freq < high_freq <= {nyquist} Hz (high_freq <= 0 counts back "
                f"from Nyquist), got low_freq={self.low_freq}, high_freq={self.high_freq}"
            )
        if self.window not in ("povey", "hanning", "hamming", "rectangular"):
            raise ValueError(
                "window must be 'povey', 'hanning', 'hamming' or 'rectangular', "
                f"got {self.window!r}"
            )
        if not self.snip_edges:
            raise ValueError(
                "snip_edges must be True: reflected edge frames depend on where each item of a "
                "padded batch ends"
            )
        if self.dither != 0:
            raise ValueError(f"dither must be 0 (deterministic features), got {self.dither}")
        if self.log_floor <= 0:
            raise ValueError(f"log_floor must be positive, got {self.log_floor}")

    @property
    def win_length(self) -> int:
        """Window length in samples (Kaldi truncates: ``int(sample_rate * ms / 1000)``)."""
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def hop_length(self) -> int:
        """Hop between frames in samples."""
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def n_fft(self) -> int:
        """FFT size in samples."""
        if not self.round_to_power_of_two:
            return self.win_length
        return 1 << (self.win_length - 1).bit_length()

    @property
    def f_max(self) -> float:
        """The highest filter edge in Hz (``high_freq`` resolved against Nyquist)."""
        return self.high_freq if self.high_freq > 0 else self.sample_rate / 2 + self.high_freq

    @property
    def min_frames(self) -> int:
        """Fewest frames that carry information: two with ``mean_normalize`` (one frame is its
        own mean, so it normalises to all zeros whatever the input), else one."""
        return 2 if self.mean_normalize else 1

    @property
    def min_samples(self) -> int:
        """Fewest input samples that give :attr:`min_frames` frames: one window, and one hop
        more per further frame."""
        return self.win_length + (self.min_frames - 1) * self.hop_length


KALDI_FBANK_80 = KaldiFbankConfig()
"""80 bins, 25 / 10 ms at 16 kHz, Kaldi's defaults, mean-normalised: 3D-Speaker's CAM++ input."""


def _kaldi_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + hz / 700.0)


@lru_cache(maxsize=16)
def _mel_banks_np(config: KaldiFbankConfig) -> np.ndarray:
    n_bins = config.n_fft // 2
    mel_low, mel_high = _kaldi_mel(np.array([config.low_freq, config.f_max]))
    delta = (mel_high - mel_low) / (config.n_mels + 1)
    left = mel_low + delta * np.arange(config.n_mels)[:, None]  # (n_mels, 1)
    centre, right = left + delta, left + 2 * delta
    mel = _kaldi_mel(config.sample_rate / config.n_fft * np.arange(n_bins))[None]  # (1, n_bins)
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    weights = np.maximum(0.0, np.minimum(up, down))
    # Kaldi's filters stop below the Nyquist bin: its column is zero.
    return np.pad(weights, ((0, 0), (0, 1))).astype(np.float32)  # (n_mels, n_fft // 2 + 1)


def kaldi_mel_banks(config: KaldiFbankConfig) -> Tensor:
    """Kaldi's triangular mel filters ``(n_mels, n_fft // 2 + 1)``, float32."""
    return torch.from_numpy(_mel_banks_np(config).copy())


def _window(config: KaldiFbankConfig, device: torch.device) -> Tensor:
    n = config.win_length
    if config.window == "rectangular":
        return torch.ones(n, device=device)
    if config.window == "hamming":
        return torch.hamming_window(n, periodic=False, alpha=0.54, beta=0.46, device=device)
    hann = torch.hann_window(n, periodic=False, device=device)
    return hann.pow(0.85) if config.window == "povey" else hann


def fbank_frame_lengths(lengths: Tensor, config: KaldiFbankConfig) -> Tensor:
    """Frames of inputs of ``lengths`` samples (snipped edges; LongTensor, same shape)."""
    return torch.clamp((lengths - config.win_length) // config.hop_length + 1, min=0)


def kaldi_fbank(
    wav: Tensor, config: KaldiFbankConfig = KALDI_FBANK_80, lengths: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Kaldi log mel filterbanks of a batch of waveforms (see the module docstring).

    Args:
        wav: ``(T,)`` or ``(B, T)`` float waveform(s) at ``config.sample_rate``.
        config: the filterbank definition.
        lengths: ``(B,)`` valid samples per item of a right-padded batch; None: all ``T`` valid.

    Returns:
        ``(features, n_frames)``: ``(B, F, n_mels)`` float32 (zero past each item's
        ``n_frames``) and ``(B,)`` LongTensor. Each item's valid frames equal those of the item
        computed alone. A ``(T,)`` input gives B = 1.

    Raises:
        ValueError: ``wav`` is not 1-D or 2-D, or an item is shorter than
            ``config.min_samples`` (one window; two frames when mean-normalised).
    """
    wav, lengths = waveform_batch(
        wav, lengths, config.min_samples, config.min_frames, config.sample_rate
    )
    tracing = torch.jit.is_tracing()  # ONNX and TorchScript export: see voxvec.audio.traceable
    if tracing:
        frames = frame(wav, config.win_length, config.hop_length)  # (B, F, win_length)
    else:
        frames = wav.unfold(1, config.win_length, config.hop_length)
    if config.remove_dc_offset:
        frames = frames - frames.mean(-1, keepdim=True)
    if config.preemphasis:
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames - config.preemphasis * previous
    frames = frames * _window(config, wav.device)
    if tracing:
        energy = dft_power(frames, config.n_fft)
    else:
        parts = torch.view_as_real(torch.fft.rfft(frames, n=config.n_fft))  # (B, F, n_freqs, 2)
        energy = parts[..., 0] ** 2 + parts[..., 1] ** 2
    if not config.use_power:
        energy = energy.sqrt()
    mel = torch.matmul(energy, kaldi_mel_banks(config).to(wav.device).T)  # (B, F, n_mels)
    feats = torch.log(torch.clamp(mel, min=config.log_floor))
    n_frames = fbank_frame_lengths(lengths, config)
    mask = (torch.arange(feats.shape[1], device=wav.device)[None] < n_frames[:, None])[..., None]
    feats = feats * mask
    if config.mean_normalize:
        feats = (feats - feats.sum(1, keepdim=True) / n_frames[:, None, None]) * mask
    return feats.contiguous(), n_frames
