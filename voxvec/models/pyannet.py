"""PyanNet: the local speaker-segmentation network of pyannote's segmentation-3.0 checkpoint.

Plaquet & Bredin, "Powerset multi-class cross entropy loss for neural speaker diarization",
Interspeech 2023; the architecture of the MIT-licensed ``pyannote/segmentation-3.0`` checkpoint,
written for voxvec from its published description and the shapes of its state dict:

- SincNet on the raw 16 kHz waveform: an affine instance norm of the waveform; 80 parametrised
  sinc band-pass filters (40 cosine + 40 sine, 251 taps, stride 10; each filter is defined by a
  low cut-off and a band width in Hz, Hamming-windowed), absolute value; then two 1-D
  convolutions of 60 channels (kernel 5); every one of the three layers is followed by a max
  pool (3, stride 3), an affine instance norm and a leaky ReLU;
- a 4-layer bidirectional LSTM (128 units each way) over the frames;
- two linear layers of 128 with leaky ReLU and a linear classifier with log-softmax over the
  *powerset* classes: every set of at most 2 of the chunk's 3 local speakers, in the order
  ``{}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}``.

It is not a :class:`~voxvec.models.base.SpeakerEncoder` (it gives frame-level local speaker
activity, not embeddings) and is not registered as one. One output frame every 270 samples
(16.875 ms at 16 kHz); frame ``i`` sees samples ``[270 i, 270 i + 991)``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class PyanNetConfig:
    """Hyper-parameters of :class:`PyanNet`; the defaults are those of segmentation-3.0.

    Attributes:
        sample_rate: input rate in Hz.
        chunk_s: the chunk length in seconds the model was trained on.
        sinc_filters: sinc band-pass filters (even: half cosine, half sine).
        sinc_kernel: taps of each sinc filter (odd).
        sinc_stride: stride of the sinc convolution in samples.
        min_low_hz: the lowest low cut-off in Hz.
        min_band_hz: the narrowest band in Hz.
        conv_channels: channels of the two 1-D convolutions after the sinc layer.
        conv_kernel: their kernel.
        pool: max-pool size and stride after each of the three layers.
        lstm_hidden: LSTM units per direction.
        lstm_layers: stacked bidirectional LSTM layers.
        linear_hidden: width of the linear layers.
        linear_layers: number of linear layers.
        max_speakers_per_chunk: local speakers per chunk.
        max_speakers_per_frame: speakers that can be active in one frame.
    """

    sample_rate: int = 16000
    chunk_s: float = 10.0
    sinc_filters: int = 80
    sinc_kernel: int = 251
    sinc_stride: int = 10
    min_low_hz: float = 50.0
    min_band_hz: float = 50.0
    conv_channels: int = 60
    conv_kernel: int = 5
    pool: int = 3
    lstm_hidden: int = 128
    lstm_layers: int = 4
    linear_hidden: int = 128
    linear_layers: int = 2
    max_speakers_per_chunk: int = 3
    max_speakers_per_frame: int = 2

    @property
    def powerset(self) -> tuple[tuple[int, ...], ...]:
        """The set of local speakers of each output class, in class order."""
        speakers = range(self.max_speakers_per_chunk)
        return tuple(
            combo
            for size in range(self.max_speakers_per_frame + 1)
            for combo in itertools.combinations(speakers, size)
        )

    @property
    def frame_step(self) -> int:
        """Samples between output frames."""
        return self.sinc_stride * self.pool**3

    @property
    def receptive_field(self) -> int:
        """Samples one output frame sees."""
        layers = [
            (self.sinc_kernel, self.sinc_stride),
            (self.pool, self.pool),
            (self.conv_kernel, 1),
            (self.pool, self.pool),
            (self.conv_kernel, 1),
            (self.pool, self.pool),
        ]
        size, jump = 1, 1
        for kernel, stride in layers:
            size += (kernel - 1) * jump
            jump *= stride
        return size

    def n_frames(self, n_samples: int) -> int:
        """Output frames for an input of ``n_samples``."""
        n = (n_samples - self.sinc_kernel) // self.sinc_stride + 1
        for kernel in (None, self.conv_kernel, self.conv_kernel):
            if kernel is not None:
                n = n - kernel + 1
            n //= self.pool
        return max(0, n)


def _mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _hz(mel: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


class SincFilterbank(nn.Module):
    """Parametrised sinc band-pass filters: ``low_hz_`` and ``band_hz_`` per filter pair.

    Each pair shares a band ``[low, high]`` (``low = min_low_hz + |low_hz_|``, ``high = low +
    min_band_hz + |band_hz_|`` clipped to Nyquist): its cosine filter is the ideal band-pass
    impulse response ``(sin(2 pi high n) - sin(2 pi low n)) / (pi n)``, its sine filter the
    matching quadrature response; both Hamming-windowed and divided by twice the band width.
    Initialised on a mel scale from 30 Hz (the checkpoint overwrites it).
    """

    window_: Tensor
    n_: Tensor

    def __init__(self, config: PyanNetConfig) -> None:
        super().__init__()
        self.config = config
        half = config.sinc_filters // 2
        top = config.sample_rate / 2 - (config.min_low_hz + config.min_band_hz)
        mel = torch.linspace(_mel(30.0), _mel(top), half + 1, dtype=torch.float64)
        edges = _hz(mel)
        self.low_hz_ = nn.Parameter(edges[:-1].float().view(-1, 1))
        self.band_hz_ = nn.Parameter(edges.diff().float().view(-1, 1))
        n_half = config.sinc_kernel // 2
        # The half window's n_half points spread evenly over [0, K / 2 - 1] (not 0..n_half - 1):
        # the layout of the checkpoint's buffer.
        taps = torch.linspace(0, config.sinc_kernel / 2 - 1, n_half, dtype=torch.float64)
        window = 0.54 - 0.46 * torch.cos(2 * math.pi * taps / config.sinc_kernel)
        self.register_buffer("window_", window.float())
        # Angular frequency factor of the left half of the taps: 2 pi n / sample_rate, n < 0.
        left = torch.arange(-n_half, 0, dtype=torch.float32)
        self.register_buffer("n_", (2 * math.pi * left / config.sample_rate).view(1, -1))

    def filters(self) -> Tensor:
        """``(sinc_filters, 1, sinc_kernel)``: cosine filters then sine filters."""
        cfg = self.config
        low = cfg.min_low_hz + self.low_hz_.abs()  # (H, 1)
        high = torch.clamp(
            low + cfg.min_band_hz + self.band_hz_.abs(), cfg.min_low_hz, cfg.sample_rate / 2
        )
        band = high - low  # (H, 1)
        phase_low, phase_high = low @ self.n_, high @ self.n_  # (H, K // 2)
        scale = self.window_ / (self.n_ / 2)
        cos_left = (phase_high.sin() - phase_low.sin()) * scale
        sin_left = (phase_low.cos() - phase_high.cos()) * scale
        cos = torch.cat([cos_left, 2 * band, cos_left.flip(1)], dim=1)
        sin = torch.cat([sin_left, torch.zeros_like(band), -sin_left.flip(1)], dim=1)
        bank = torch.cat([cos, sin], dim=0) / (2 * torch.cat([band, band], dim=0))
        return bank.unsqueeze(1)


class SincConv(nn.Module):
    """The sinc convolution layer (its filters in ``filterbank``)."""

    def __init__(self, config: PyanNetConfig) -> None:
        super().__init__()
        self.filterbank = SincFilterbank(config)
        self.stride = config.sinc_stride

    def forward(self, wav: Tensor) -> Tensor:
        """``(B, 1, T)`` -> ``(B, sinc_filters, T')``."""
        return F.conv1d(wav, self.filterbank.filters(), stride=self.stride)


class SincNet(nn.Module):
    """Waveform norm, the sinc layer and two convolutions, each pooled, normed, leaky-ReLU'd."""

    def __init__(self, config: PyanNetConfig) -> None:
        super().__init__()
        ch = config.conv_channels
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList(
            [
                SincConv(config),
                nn.Conv1d(config.sinc_filters, ch, config.conv_kernel),
                nn.Conv1d(ch, ch, config.conv_kernel),
            ]
        )
        self.pool1d = nn.ModuleList([nn.MaxPool1d(config.pool, config.pool) for _ in range(3)])
        self.norm1d = nn.ModuleList(
            [nn.InstanceNorm1d(c, affine=True) for c in (config.sinc_filters, ch, ch)]
        )

    def forward(self, wav: Tensor) -> Tensor:
        """``(B, 1, T)`` -> ``(B, conv_channels, F)``."""
        x = self.wav_norm1d(wav)
        for i, (conv, pool, norm) in enumerate(
            zip(self.conv1d, self.pool1d, self.norm1d, strict=True)
        ):
            x = conv(x)
            if i == 0:
                x = x.abs()
            x = F.leaky_relu(norm(pool(x)))
        return x


class PyanNet(nn.Module):
    """SincNet, BiLSTM, linear layers and a powerset classifier (see the module docstring).

    Args:
        config: the hyper-parameters.
    """

    def __init__(self, config: PyanNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or PyanNetConfig()
        cfg = self.config
        self.sincnet = SincNet(cfg)
        self.lstm = nn.LSTM(
            cfg.conv_channels,
            cfg.lstm_hidden,
            num_layers=cfg.lstm_layers,
            bidirectional=True,
            batch_first=True,
        )
        widths = [2 * cfg.lstm_hidden] + [cfg.linear_hidden] * cfg.linear_layers
        self.linear = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.classifier = nn.Linear(widths[-1], len(cfg.powerset))

    def forward(self, wav: Tensor) -> Tensor:
        """Powerset log-probabilities of each frame.

        Args:
            wav: ``(B, T)`` float waveforms at ``config.sample_rate``, ``T`` at least
                ``config.receptive_field`` (it was trained on chunks of ``config.chunk_s``).

        Returns:
            ``(B, F, C)`` log-probabilities over the ``C`` powerset classes
            (``F = config.n_frames(T)``).

        Raises:
            ValueError: ``wav`` is not 2-D or is shorter than the receptive field.
        """
        if wav.dim() != 2 or wav.shape[1] < self.config.receptive_field:
            raise ValueError(
                f"PyanNet expects (B, T) waveforms with T >= {self.config.receptive_field} "
                f"samples, got shape {tuple(wav.shape)}"
            )
        x = self.sincnet(wav.unsqueeze(1)).transpose(1, 2)  # (B, F, C)
        x, _ = self.lstm(x)
        for layer in self.linear:
            x = F.leaky_relu(layer(x))
        return F.log_softmax(self.classifier(x), dim=-1)
