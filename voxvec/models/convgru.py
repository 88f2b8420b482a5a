"""ConvGRU speaker encoder on raw 16 kHz waveforms: the original "simple speaker embeddings" one.

A 7-layer convolutional encoder (512 channels; (kernel, stride) = (10, 5), (3, 2) x 4, (2, 2) x 2;
no bias; GELU after each convolution; GroupNorm(512, 512) after the first) turns L samples into
``floor((L - 400) / 320) + 1`` frames of 512 features (20 ms hop, 25 ms receptive field). A
3-layer bidirectional GRU (hidden 768) reads them; the forward direction's output at the last
valid frame and the backward direction's output at the first frame are concatenated, projected
to 256 dimensions and L2-normalised.

Padding cannot change an embedding: the first layer's GroupNorm, which normalises each channel
over time, takes its statistics over each item's valid frames only (on an unpadded input it is
exactly ``nn.GroupNorm``), every later convolution's valid frames only see valid frames, and the
GRU reads packed sequences.

Parameter names match the original release (the ``model_state_dict`` of
``convgru_ckpt_00700000_strip.pt``): ``conv_encoder.conv_layers.{i}.0.weight`` (convolutions),
``conv_encoder.conv_layers.0.2.weight/bias`` (the GroupNorm), ``rnn.*`` and ``head.*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxvec.models.base import SpeakerEncoder, length_mask
from voxvec.models.frontends import WaveformConfig
from voxvec.models.layers import resolve_lengths
from voxvec.registry import register_model

ConvSpec = tuple[tuple[int, int, int], ...]

DEFAULT_CONV_LAYERS: ConvSpec = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
"""(channels, kernel, stride) of each convolution of the original encoder."""


@dataclass(frozen=True)
class ConvGRUConfig:
    """Hyper-parameters of :class:`ConvGRUEncoder`.

    Attributes:
        frontend: the waveform front-end (its sample rate is the model's).
        conv_layers: ``(channels, kernel, stride)`` of each convolution, first to last.
        conv_dropout: dropout after each convolution (training only).
        hidden_size: GRU hidden units per layer and direction.
        n_layers: stacked bidirectional GRU layers.
        dropout: dropout between GRU layers (training only).
        embed_dim: output embedding size D.
    """

    frontend: WaveformConfig = field(default_factory=WaveformConfig)
    conv_layers: ConvSpec = DEFAULT_CONV_LAYERS
    conv_dropout: float = 0.0
    hidden_size: int = 768
    n_layers: int = 3
    dropout: float = 0.3
    embed_dim: int = 256

    def __post_init__(self) -> None:
        if not self.conv_layers or any(len(layer) != 3 for layer in self.conv_layers):
            raise ValueError(
                "conv_layers must be a non-empty sequence of (channels, kernel, stride), "
                f"got {self.conv_layers!r}"
            )


class MaskedGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` over ``(B, C, T)`` whose statistics use only the valid frames.

    With ``mask=None`` (or an all-true mask) it computes exactly what ``nn.GroupNorm`` computes.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """Normalise ``x`` ``(B, C, T)``; ``mask`` ``(B, T)`` bool marks the valid frames."""
        if mask is None:
            return super().forward(x)
        batch, channels, n_frames = x.shape
        # Statistics in float32 (as autocast runs nn.GroupNorm): sums over many frames.
        groups = x.float().reshape(batch, self.num_groups, -1, n_frames)  # (B, G, C/G, T)
        weight = mask[:, None, None, :].float()
        count = weight.sum(-1, keepdim=True) * groups.shape[2]
        mean = (groups * weight).sum((-2, -1), keepdim=True) / count
        var = ((groups - mean) ** 2 * weight).sum((-2, -1), keepdim=True) / count
        out = ((groups - mean) / (var + self.eps).sqrt()).reshape(batch, channels, n_frames)
        if self.affine:
            out = out * self.weight[None, :, None] + self.bias[None, :, None]
        return out.to(x.dtype)


class ConvEncoder(nn.Module):
    """Strided 1-D convolutions: waveforms ``(B, T)`` -> frames ``(B, n_frames, channels)``.

    ``conv_layers[i]`` is ``Sequential(Conv1d, Dropout, [MaskedGroupNorm,] GELU)``; only the first
    block has the norm (the original's layout, so parameter names match its checkpoints).
    """

    def __init__(self, spec: ConvSpec, dropout: float = 0.0) -> None:
        super().__init__()
        self.spec = spec
        self.conv_layers = nn.ModuleList()
        n_in = 1
        for i, (channels, kernel, stride) in enumerate(spec):
            conv = nn.Conv1d(n_in, channels, kernel, stride=stride, bias=False)
            nn.init.kaiming_normal_(conv.weight)
            layers: list[nn.Module] = [conv, nn.Dropout(dropout)]
            if i == 0:
                layers.append(MaskedGroupNorm(channels, channels, affine=True))
            layers.append(nn.GELU())
            self.conv_layers.append(nn.Sequential(*layers))
            n_in = channels

    def output_lengths(self, n_samples: Tensor) -> Tensor:
        """Frames out for inputs of ``n_samples`` (each layer: ``(n - kernel) // stride + 1``).

        For the default spec this equals ``floor((n_samples - 400) / 320) + 1``.
        """
        n = n_samples
        for _, kernel, stride in self.spec:
            n = (n - kernel) // stride + 1
        return n

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Encode waveforms ``x`` ``(B, T)`` with ``lengths`` ``(B,)`` valid samples.

        Returns:
            ``(frames, n_frames)``: ``(B, F, channels)`` and ``(B,)`` LongTensor of valid frames;
            each item's valid frames equal those it gives alone.
        """
        h = x[:, None, :]  # (B, 1, T)
        for (_, kernel, stride), block in zip(self.spec, self.conv_layers, strict=True):
            lengths = (lengths - kernel) // stride + 1
            for layer in block.children():
                if isinstance(layer, MaskedGroupNorm) and bool((lengths < h.shape[-1]).any()):
                    h = layer(h, length_mask(lengths, h.shape[0], h.shape[-1], h.device))
                else:
                    h = layer(h)
        return h.transpose(1, 2), lengths


@register_model("convgru")
class ConvGRUEncoder(SpeakerEncoder):
    """ConvGRU speaker encoder: 16 kHz waveforms ``(B, T)`` -> ``(B, embed_dim)``.

    ``lengths`` counts valid samples per item; each item needs at least :attr:`min_samples`
    (400 with the default config). With the default config: 31.8 M parameters.
    """

    config_class = ConvGRUConfig
    config: ConvGRUConfig

    def __init__(self, config: ConvGRUConfig) -> None:
        super().__init__(config)
        self.conv_encoder = ConvEncoder(config.conv_layers, config.conv_dropout)
        self.rnn = nn.GRU(
            config.conv_layers[-1][0],
            config.hidden_size,
            num_layers=config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
            bidirectional=True,
        )
        for name, param in self.rnn.named_parameters():
            if name.startswith("bias"):
                nn.init.zeros_(param)
            else:
                nn.init.xavier_normal_(param)
        self.head = nn.Linear(2 * config.hidden_size, config.embed_dim)

    @property
    def min_samples(self) -> int:
        """Fewest samples that give one frame (the encoder's receptive field)."""
        n = 1
        for _, kernel, stride in reversed(self.config.conv_layers):
            n = (n - 1) * stride + kernel
        return n

    def frame_lengths(self, n_samples: Tensor) -> Tensor:
        """GRU frames for waveforms of ``n_samples`` (``floor((n - 400) / 320) + 1`` by default)."""
        return self.conv_encoder.output_lengths(n_samples)

    def encode(self, features: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Embed waveforms (the ``"waveform"`` front-end's features are the samples).

        Args:
            features: ``(B, T)`` float waveforms at :attr:`sample_rate`, in [-1, 1].
            lengths: ``(B,)`` valid samples per item of a right-padded batch; None: all valid.

        Returns:
            ``(B, embed_dim)`` L2-normalised embeddings.

        Raises:
            ValueError: ``x`` is not ``(B, T)``, or a length is outside
                ``[min_samples, T]``.
        """
        x = features
        if x.dim() != 2:
            raise ValueError(f"ConvGRUEncoder expects waveforms (B, T), got shape {tuple(x.shape)}")
        batch, n_samples = x.shape
        lengths = resolve_lengths(
            lengths, batch, n_samples, x.device, min_len=self.min_samples, unit="samples"
        )
        frames, n_frames = self.conv_encoder(x.float(), lengths)  # (B, F, C), (B,)
        packed = nn.utils.rnn.pack_padded_sequence(
            frames, n_frames.cpu(), batch_first=True, enforce_sorted=False
        )
        _, h_n = self.rnn(packed)  # (2 * n_layers, B, hidden): last layer's directions at -2, -1
        # Forward direction at each item's last valid frame ++ backward direction at frame 0.
        pooled = torch.cat([h_n[-2], h_n[-1]], dim=1)  # (B, 2 * hidden)
        return F.normalize(self.head(pooled), dim=-1)
