"""ECAPA-TDNN-lite: a compact ECAPA-TDNN on 16 kHz log-mels, voxvec's default architecture.

Desplanques et al., "ECAPA-TDNN: Emphasized Channel Attention, Propagation and Aggregation in TDNN
Based Speaker Verification", Interspeech 2020, made small for CPUs: a strided first convolution
(50 frames/s instead of 100), three SE-Res2Net blocks, multi-layer feature aggregation, attentive
statistics pooling with global context, and a linear projection to the embedding.

Every layer masks the frames past each item's length, so padding a batch never changes an
embedding, in training too: the batch norms take their training statistics over valid frames
only (:class:`~voxvec.models.layers.MaskedBatchNorm1d`). In training mode an optional
SpecAugment (one frequency and one time mask per item) is applied to the input, like dropout:
it is off in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxvec.audio.features import LOGMEL_16K, MelConfig
from voxvec.models.base import SpeakerEncoder, length_mask
from voxvec.models.layers import MaskedBatchNorm1d, check_features
from voxvec.registry import register_model


@dataclass(frozen=True)
class ECAPAConfig:
    """Hyper-parameters of :class:`ECAPA`.

    Attributes:
        frontend: the log-mel front-end (``frontend.n_mels`` input bands), computed inside the
            model.
        channels: width C of the TDNN blocks.
        stem_kernel: kernel of the first convolution.
        stem_stride: stride of the first convolution (2 halves the frame rate and the cost).
        res2_scale: number of Res2Net groups per block (C must be divisible by it).
        dilations: one dilation per SE-Res2Net block (the number of blocks).
        se_channels: bottleneck width of squeeze-excitation.
        mfa_channels: channels after multi-layer feature aggregation.
        attention_channels: bottleneck width of attentive statistics pooling.
        embed_dim: output embedding size D.
        freq_mask_bins: training only: width bound of one random frequency mask (0 disables).
        time_mask_frames: training only: width bound of one random time mask (0 disables).
    """

    frontend: MelConfig = LOGMEL_16K
    channels: int = 256
    stem_kernel: int = 5
    stem_stride: int = 2
    res2_scale: int = 8
    dilations: tuple[int, ...] = field(default=(2, 3, 4))
    se_channels: int = 128
    mfa_channels: int = 768
    attention_channels: int = 128
    embed_dim: int = 256
    freq_mask_bins: int = 0
    time_mask_frames: int = 0

    def __post_init__(self) -> None:
        if self.channels % self.res2_scale:
            raise ValueError(
                f"channels ({self.channels}) must be divisible by res2_scale ({self.res2_scale})"
            )


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time of ``x`` (B, C, T) on frames where ``mask`` (B, 1, T) is 1 -> (B, C, 1).

    A matrix product (fast, and accumulated in float32 even for bfloat16 inputs) divided by the
    frame count counted in float32 (bfloat16 holds integers exactly only up to 256).
    """
    total = torch.bmm(x, mask.transpose(1, 2).to(x.dtype))
    count = mask.sum(-1, keepdim=True, dtype=torch.float32).clamp(min=1.0)
    return (total / count).to(x.dtype)


class _ConvBlock(nn.Module):
    """Conv1d -> ReLU -> BatchNorm, padded to keep the frame count (for stride 1)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            c_in, c_out, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2
        )
        self.norm = MaskedBatchNorm1d(c_out)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.norm(F.relu(self.conv(x)), mask) * mask


class _SERes2Block(nn.Module):
    """1x1 conv, Res2Net dilated convs, 1x1 conv, squeeze-excitation, residual."""

    def __init__(self, channels: int, scale: int, dilation: int, se_channels: int) -> None:
        super().__init__()
        width = channels // scale
        self.scale = scale
        self.pre = _ConvBlock(channels, channels, 1)
        self.res2 = nn.ModuleList([_ConvBlock(width, width, 3, dilation) for _ in range(scale - 1)])
        self.post = _ConvBlock(channels, channels, 1)
        self.se_down = nn.Conv1d(channels, se_channels, 1)
        self.se_up = nn.Conv1d(se_channels, channels, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = self.pre(x, mask)
        chunks = torch.chunk(out, self.scale, dim=1)
        parts = [chunks[0]]
        previous = chunks[0]
        for i, conv in enumerate(self.res2):
            previous = conv(chunks[i + 1] if i == 0 else chunks[i + 1] + previous, mask)
            parts.append(previous)
        out = self.post(torch.cat(parts, dim=1), mask)
        gate = torch.sigmoid(self.se_up(F.relu(self.se_down(_masked_mean(out, mask)))))
        return (out * gate + x) * mask


class _AttentiveStatsPool(nn.Module):
    """Channel-wise attentive mean and standard deviation with global context -> (B, 2C)."""

    def __init__(self, channels: int, attention_channels: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv1d(channels * 3, attention_channels, 1),
            nn.ReLU(),
            MaskedBatchNorm1d(attention_channels),
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, 1),
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        mean = _masked_mean(x, mask)
        std = _masked_mean((x - mean) ** 2, mask).clamp(min=1e-6).sqrt()
        context = torch.cat([x, mean.expand_as(x), std.expand_as(x)], dim=1)
        h = context
        for layer in self.attention:
            h = layer(h, mask) if isinstance(layer, MaskedBatchNorm1d) else layer(h)
        logits = h.masked_fill(mask == 0, float("-inf"))
        weights = torch.softmax(logits, dim=-1).to(x.dtype)
        w_mean = torch.linalg.vecdot(weights, x)
        # Centred, not E[x^2] - E[x]^2: that difference loses every digit in bfloat16.
        w_var = torch.linalg.vecdot(weights, (x - w_mean[..., None]) ** 2)
        return torch.cat([w_mean, w_var.clamp(min=1e-6).sqrt()], dim=1)


@register_model("ecapa")
class ECAPA(SpeakerEncoder):
    """ECAPA-TDNN-lite speaker encoder: 16 kHz waveforms -> log-mels -> ``(B, embed_dim)``.

    With the default config: 2.15 M parameters, 50 frames/s inside the network.
    """

    config_class = ECAPAConfig
    config: ECAPAConfig

    def __init__(self, config: ECAPAConfig) -> None:
        super().__init__(config)
        c = config.channels
        self.stem = nn.Conv1d(
            config.frontend.n_mels,
            c,
            config.stem_kernel,
            stride=config.stem_stride,
            padding=config.stem_kernel // 2,
        )
        self.stem_norm = MaskedBatchNorm1d(c)
        self.blocks = nn.ModuleList(
            [_SERes2Block(c, config.res2_scale, d, config.se_channels) for d in config.dilations]
        )
        self.mfa = _ConvBlock(c * len(config.dilations), config.mfa_channels, 1)
        self.pool = _AttentiveStatsPool(config.mfa_channels, config.attention_channels)
        self.pool_norm = nn.BatchNorm1d(config.mfa_channels * 2)
        self.projection = nn.Linear(config.mfa_channels * 2, config.embed_dim)

    def _stem_lengths(self, lengths: Tensor) -> Tensor:
        cfg = self.config
        pad = cfg.stem_kernel // 2
        return (lengths + 2 * pad - cfg.stem_kernel) // cfg.stem_stride + 1

    def _spec_augment(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Zero one random band and one random stretch of frames per item (training only)."""
        batch, n_frames, n_mels = x.shape
        keep = torch.ones_like(x)
        if self.config.freq_mask_bins > 0:
            width = torch.randint(0, self.config.freq_mask_bins + 1, (batch, 1), device=x.device)
            start = (torch.rand(batch, 1, device=x.device) * (n_mels - width)).long()
            bins = torch.arange(n_mels, device=x.device)[None]
            band = (bins >= start) & (bins < start + width)  # (B, n_mels)
            keep = keep * (~band)[:, None, :]
        if self.config.time_mask_frames > 0:
            width = torch.randint(0, self.config.time_mask_frames + 1, (batch, 1), device=x.device)
            start = (
                torch.rand(batch, 1, device=x.device) * (lengths[:, None] - width).clamp(min=0)
            ).long()
            frames = torch.arange(n_frames, device=x.device)[None]
            stretch = (frames >= start) & (frames < start + width)  # (B, n_frames)
            keep = keep * (~stretch)[:, :, None]
        return x * keep

    def encode(self, features: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Embed log-mels ``(B, n_frames, n_mels)`` with ``lengths`` ``(B,)`` valid frames.

        Returns:
            ``(B, embed_dim)`` L2-normalised embeddings.

        Raises:
            ValueError: ``features`` is not ``(B, n_frames, n_mels)`` with ``n_mels`` of the
                config, or a length is outside ``[1, n_frames]``.
        """
        x, lengths = check_features(
            features, lengths, self.config.frontend.n_mels, "ECAPA expects log-mels"
        )
        batch, n_frames, _ = x.shape
        if self.training:
            x = self._spec_augment(x, lengths)
        x = x * length_mask(lengths, batch, n_frames, x.device)[..., None]
        x = x.transpose(1, 2)  # (B, n_mels, n_frames)
        lengths = self._stem_lengths(lengths)
        h = self.stem(x)
        mask = length_mask(lengths, batch, h.shape[-1], x.device)[:, None].to(h.dtype)
        h = self.stem_norm(F.relu(h), mask) * mask
        outputs = []
        for block in self.blocks:
            h = block(h, mask)
            outputs.append(h)
        h = self.mfa(torch.cat(outputs, dim=1), mask)  # (B, mfa_channels, T')
        pooled = self.pool_norm(self.pool(h, mask))  # (B, 2 * mfa_channels)
        return F.normalize(self.projection(pooled), dim=-1)
