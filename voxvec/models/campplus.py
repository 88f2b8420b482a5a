"""CAM++: densely connected TDNN with context-aware masking, on Kaldi filterbanks.

Wang et al., "CAM++: A Fast and Efficient Network for Speaker Verification Using Context-Aware
Masking", Interspeech 2023 (arXiv 2303.00332); the architecture of 3D-Speaker's public CAM++
checkpoints (github.com/modelscope/3D-Speaker, Apache-2.0), written for voxvec:

- FCM, a 2-D residual front module: a 3x3 convolution and two stages of two residual blocks on
  ``(frequency, time)``, each stage and a last 3x3 convolution halving the frequency axis only
  (80 bins -> 10), flattened to ``channels x bins`` per frame;
- a strided TDNN layer (kernel 5, stride 2: 50 frames/s);
- three densely connected blocks of CAM layers (each: BN-ReLU, 1x1 bottleneck, BN-ReLU, a dilated
  convolution gated by a context mask computed from the utterance mean plus the mean of the
  frame's 100-frame segment), each followed by a BN-ReLU-1x1 transition halving the channels;
- BN-ReLU, statistics pooling (mean and unbiased standard deviation) and a linear embedding
  layer with a non-affine batch norm; voxvec L2-normalises the result.

Padding never changes an embedding: every convolution with a time context reads zeros past
each item's frames, as it would alone, and every mean (the utterance and segment contexts of the
masks, the statistics pooling) runs over valid frames only, accumulated in float32. The context
masks are computed once per segment (they are constant within one), not once per frame.

The network computes in float32 even under autocast: in bfloat16 its 52 densely connected layers
move the embeddings of real speech by up to 8e-4 in cosine from 3D-Speaker's (0.0002 with the
2-D front module and TDNN kept in float32), beyond the 1e-4 that voxvec guarantees, and on CPUs
without AMX it is no faster. In eval mode every batch norm that follows a convolution is folded
into it, and the 2-D front module runs channels-last. After the TDNN layer activations are
channel-major, ``(C, B, T)``: every 1-D convolution is then one matrix product over all items
and frames (:class:`_SameConv1d`), and the channel slices that batch norms and convolutions read
are contiguous. Without autograd (inference) ReLUs and the residual sums work in place, a dense
block writes its layers' channels into one buffer instead of concatenating at every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxvec.audio.kaldi import KALDI_FBANK_80, KaldiFbankConfig
from voxvec.models.base import SpeakerEncoder, length_mask
from voxvec.models.layers import check_features
from voxvec.registry import register_model


@dataclass(frozen=True)
class CAMPPlusConfig:
    """Hyper-parameters of :class:`CAMPPlus`; the defaults are those of 3D-Speaker's checkpoints.

    Attributes:
        frontend: the Kaldi filterbank front-end (``frontend.n_mels`` bins, a multiple of 8).
        fcm_channels: channels of the 2-D front module.
        fcm_blocks: residual blocks in each of its two frequency-halving stages.
        init_channels: output channels of the TDNN layer.
        tdnn_kernel: kernel of the TDNN layer (odd; stride 2).
        growth_rate: channels each CAM layer adds to its block.
        bottleneck_factor: a CAM layer's bottleneck is ``bottleneck_factor * growth_rate`` wide.
        block_layers: CAM layers per dense block (the number of blocks).
        block_kernels: kernel of each block's dilated convolutions (odd).
        block_dilations: dilation of each block's convolutions.
        cam_reduction: the context mask's hidden layer is the bottleneck width divided by this.
        segment_frames: length of the segments whose means give the local context, in frames of
            the TDNN rate.
        embed_dim: output embedding size D.
    """

    frontend: KaldiFbankConfig = KALDI_FBANK_80
    fcm_channels: int = 32
    fcm_blocks: tuple[int, ...] = field(default=(2, 2))
    init_channels: int = 128
    tdnn_kernel: int = 5
    growth_rate: int = 32
    bottleneck_factor: int = 4
    block_layers: tuple[int, ...] = field(default=(12, 24, 16))
    block_kernels: tuple[int, ...] = field(default=(3, 3, 3))
    block_dilations: tuple[int, ...] = field(default=(1, 2, 2))
    cam_reduction: int = 2
    segment_frames: int = 100
    embed_dim: int = 192

    def __post_init__(self) -> None:
        if self.frontend.n_mels % 8:
            raise ValueError(
                f"frontend.n_mels must be a multiple of 8 (the front module halves it 3 times), "
                f"got {self.frontend.n_mels}"
            )
        if len(self.fcm_blocks) != 2 or min(self.fcm_blocks) < 1:
            raise ValueError(f"fcm_blocks must be 2 positive counts, got {self.fcm_blocks}")
        n_blocks = len(self.block_layers)
        if n_blocks == 0 or {len(self.block_kernels), len(self.block_dilations)} != {n_blocks}:
            raise ValueError(
                "block_layers, block_kernels and block_dilations must be non-empty and of one "
                f"length, got {self.block_layers}, {self.block_kernels}, {self.block_dilations}"
            )
        kernels = (self.tdnn_kernel, *self.block_kernels)
        if any(k % 2 == 0 or k < 1 for k in kernels):
            raise ValueError(f"tdnn_kernel and block_kernels must be odd, got {kernels}")
        if self.segment_frames < 1:
            raise ValueError(f"segment_frames must be positive, got {self.segment_frames}")


def _conv_bn(
    conv: nn.Conv1d | nn.Conv2d, norm: nn.modules.batchnorm._BatchNorm, x: Tensor
) -> Tensor:
    """``norm(conv(x))``; in eval mode one convolution with the batch norm folded into it."""
    if norm.training or norm.running_mean is None or norm.running_var is None:
        return norm(conv(x))
    scale = torch.rsqrt(norm.running_var + norm.eps)
    shift = -norm.running_mean * scale
    if norm.weight is not None and norm.bias is not None:
        scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    return conv._conv_forward(x, weight, shift)


class _SameConv1d(nn.Conv1d):
    """A stride-1, zero-padded ("same") 1-D convolution of channel-major ``(C, B, T)`` input,
    computed as one matrix product over every item and frame.

    On CPUs torch's convolution barely threads for these shapes, a matrix product does (a 1x1
    convolution of 800 channels over 700 frames: 912 us as a convolution, 682 us as a product
    on 2 threads). A kernel of ``k`` taps is ``k`` stacked matrices whose products are added
    with their shifts. The state dict is that of :class:`torch.nn.Conv1d`.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 1, dilation: int = 1, bias: bool = True
    ) -> None:
        padding = (kernel - 1) // 2 * dilation
        super().__init__(c_in, c_out, kernel, padding=padding, dilation=dilation, bias=bias)

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        c_out, c_in, kernel = weight.shape
        _, batch, n_frames = x.shape
        stacked = weight.permute(2, 0, 1).reshape(kernel * c_out, c_in)
        y = torch.mm(stacked, x.reshape(c_in, -1)).view(-1, batch, n_frames)  # (k * O, B, T)
        if kernel > 1:
            pad = (kernel // 2) * self.dilation[0]
            y = F.pad(y, (pad, pad))
            taps = []
            for j in range(kernel):  # tap j reads frame t + j * dilation - pad
                end = j * self.dilation[0] - 2 * pad
                taps.append(y[j * c_out : (j + 1) * c_out, :, j * self.dilation[0] : end or None])
            y = torch.stack(taps).sum(0)
        return y if bias is None else y + bias[:, None, None]


class _SameNorm(nn.BatchNorm1d):
    """Batch norm of channel-major ``(C, B, T)`` input (contiguous channel slices: torch's fast
    path; batch norm of a ``(B, C, T)`` channel slice was 2.3x slower for two items)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(1, x.shape[0], -1)).view(x.shape)


class _ResBlock2d(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, plus a (1x1 conv-BN) shortcut, ReLU; stride on frequency."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x`` (B, C, F, T) zero past each item's frames; ``mask`` (B, 1, 1, T) or None."""
        out = _masked(_relu(_conv_bn(self.conv1, self.bn1, x)), mask)
        residual = x
        if len(self.shortcut):  # 3D-Speaker's names: shortcut.0 the conv, shortcut.1 its norm
            conv, norm = self.shortcut
            residual = _conv_bn(cast(nn.Conv2d, conv), cast(nn.BatchNorm2d, norm), x)
        out = _conv_bn(self.conv2, self.bn2, out)
        out = out + residual if torch.is_grad_enabled() else out.add_(residual)
        return _masked(_relu(out), mask)


def _relu(x: Tensor) -> Tensor:
    """ReLU, in place when no gradient is recorded (inference): no new activation allocated."""
    return F.relu(x, inplace=not torch.is_grad_enabled())


def _masked(x: Tensor, mask: Tensor | None) -> Tensor:
    """``x`` with the frames past each item zeroed; ``mask`` None: no padding.

    In place when no gradient is recorded (inference), so no new activation is allocated.
    """
    if mask is None:
        return x
    return x * mask if torch.is_grad_enabled() else x.mul_(mask)


class _FCM(nn.Module):
    """The 2-D front module: (B, F, T) filterbanks -> (B, channels * F / 8, T).

    Its convolutions run channels-last (several times faster on CPUs than channels-first).
    """

    def __init__(self, channels: int, n_blocks: tuple[int, ...]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.ModuleList(
            [_ResBlock2d(channels, channels, 2 if i == 0 else 1) for i in range(n_blocks[0])]
        )
        self.layer2 = nn.ModuleList(
            [_ResBlock2d(channels, channels, 2 if i == 0 else 1) for i in range(n_blocks[1])]
        )
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x`` (B, F, T) zero past each item's frames; ``mask`` (B, 1, 1, T) or None."""
        x = x[:, None].contiguous(memory_format=torch.channels_last)
        h = _masked(_relu(_conv_bn(self.conv1, self.bn1, x)), mask)  # (B, C, F, T)
        for block in (*self.layer1, *self.layer2):
            h = block(h, mask)
        h = _relu(_conv_bn(self.conv2, self.bn2, h))  # (B, C, F / 8, T)
        return h.contiguous().flatten(1, 2)  # (B, C * F / 8, T)


class _Context:
    """Masks and averaging weights at the TDNN frame rate, shared by every CAM layer.

    Attributes:
        mask: ``(1, B, T)`` 1.0 on valid frames; None when no item is padded (nothing to zero).
        averages: ``(B, T, S + 1)``: a frame's weight in its segment's mean (columns
            ``:S``, over the segment's valid frames) and in the utterance mean (column ``S``).
        segment_of_frame: ``(T,)`` the segment of each frame.
    """

    def __init__(self, lengths: Tensor, n_frames: int, segment_frames: int) -> None:
        device = lengths.device
        valid = length_mask(lengths, lengths.shape[0], n_frames, device)  # (B, T)
        self.mask = None if bool(valid.all()) else valid[None].float()
        self.segment_of_frame = torch.arange(n_frames, device=device) // segment_frames
        n_segments = (n_frames - 1) // segment_frames + 1  # from the size: traces dynamically
        member = F.one_hot(self.segment_of_frame, n_segments).float() * valid[..., None]
        counts = member.sum(1, keepdim=True).clamp(min=1.0)  # (B, 1, S)
        whole = valid.float()[..., None] / lengths.float()[:, None, None]  # (B, T, 1)
        self.averages = torch.cat([member / counts, whole], dim=-1)


class _CAMLayer(nn.Module):
    """A dilated convolution whose output is gated by a mask of the utterance + segment context."""

    def __init__(
        self, channels: int, c_out: int, kernel: int, dilation: int, reduction: int
    ) -> None:
        super().__init__()
        self.local = _SameConv1d(channels, c_out, kernel, dilation, bias=False)
        self.context_down = _SameConv1d(channels, channels // reduction)
        self.context_up = _SameConv1d(channels // reduction, c_out)

    def forward(self, x: Tensor, ctx: _Context) -> Tensor:
        """``x`` (C, B, T), any values past each item's frames -> (c_out, B, T)."""
        x = _masked(x, ctx.mask)
        # Each segment's mean plus the utterance mean: (C, B, S). The gate is constant within a
        # segment: computed per segment, then spread over its frames.
        means = torch.matmul(x.transpose(0, 1), ctx.averages).transpose(0, 1)
        context = means[..., :-1] + means[..., -1:]
        gate = torch.sigmoid(self.context_up(_relu(self.context_down(context))))
        return self.local(x) * gate.index_select(-1, ctx.segment_of_frame)


class _CAMDenseLayer(nn.Module):
    """BN-ReLU, 1x1 bottleneck conv, BN-ReLU, CAM layer: ``growth_rate`` new channels."""

    def __init__(
        self, c_in: int, growth: int, bottleneck: int, kernel: int, dilation: int, reduction: int
    ) -> None:
        super().__init__()
        self.norm1 = _SameNorm(c_in)
        self.conv1 = _SameConv1d(c_in, bottleneck, bias=False)
        self.norm2 = _SameNorm(bottleneck)
        self.cam = _CAMLayer(bottleneck, growth, kernel, dilation, reduction)

    def forward(self, x: Tensor, ctx: _Context) -> Tensor:
        h = _relu(_conv_bn(self.conv1, self.norm2, _relu(self.norm1(x))))
        return self.cam(h, ctx)


class _CAMDenseBlock(nn.Module):
    """CAM layers, each fed the concatenation of the block input and all earlier outputs."""

    def __init__(
        self,
        n_layers: int,
        c_in: int,
        growth: int,
        bottleneck: int,
        kernel: int,
        dilation: int,
        reduction: int,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                _CAMDenseLayer(c_in + i * growth, growth, bottleneck, kernel, dilation, reduction)
                for i in range(n_layers)
            ]
        )
        self.growth = growth

    def forward(self, x: Tensor, ctx: _Context) -> Tensor:
        """``x`` (C, B, T) -> (C + layers x growth, B, T)."""
        if torch.is_grad_enabled():  # autograd keeps every layer's input: concatenate
            for layer in self.layers:
                x = torch.cat([x, layer(x, ctx)])
            return x
        # Inference: the layers write their channels into one buffer and read its growing
        # (contiguous) front, instead of copying everything so far at every layer.
        c_in, batch, n_frames = x.shape
        out = x.new_empty(c_in + len(self.layers) * self.growth, batch, n_frames)
        out[:c_in] = x
        for i, layer in enumerate(self.layers):
            start = c_in + i * self.growth
            out[start : start + self.growth] = layer(out[:start], ctx)
        return out


class _Transit(nn.Module):
    """BN-ReLU then a 1x1 conv (no bias): the transition between dense blocks."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm = _SameNorm(c_in)
        self.conv = _SameConv1d(c_in, c_out, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(_relu(self.norm(x)))


class _TDNN(nn.Module):
    """Strided conv (no bias), BN, ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=2, padding=kernel // 2, bias=False)
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return _relu(_conv_bn(self.conv, self.norm, x))


@register_model("campplus")
class CAMPPlus(SpeakerEncoder):
    """CAM++ speaker encoder: 16 kHz waveforms -> Kaldi filterbanks -> ``(B, embed_dim)``.

    With the default config: 6.85 M parameters (3D-Speaker's checkpoints), 192-d embeddings,
    50 frames/s after the TDNN layer.
    """

    config_class = CAMPPlusConfig
    config: CAMPPlusConfig
    supports_bfloat16 = False  # see the module docstring

    def __init__(self, config: CAMPPlusConfig) -> None:
        super().__init__(config)
        self.fcm = _FCM(config.fcm_channels, config.fcm_blocks)
        self.tdnn = _TDNN(
            config.fcm_channels * (config.frontend.n_mels // 8),
            config.init_channels,
            config.tdnn_kernel,
        )
        channels = config.init_channels
        bottleneck = config.bottleneck_factor * config.growth_rate
        blocks, transits = [], []
        for n_layers, kernel, dilation in zip(
            config.block_layers, config.block_kernels, config.block_dilations, strict=True
        ):
            blocks.append(
                _CAMDenseBlock(
                    n_layers,
                    channels,
                    config.growth_rate,
                    bottleneck,
                    kernel,
                    dilation,
                    config.cam_reduction,
                )  # fmt: skip
            )
            channels += n_layers * config.growth_rate
            transits.append(_Transit(channels, channels // 2))
            channels //= 2
        self.blocks = nn.ModuleList(blocks)
        self.transits = nn.ModuleList(transits)
        self.out_norm = _SameNorm(channels)
        self.embedding = nn.Linear(channels * 2, config.embed_dim, bias=False)
        self.embedding_norm = nn.BatchNorm1d(config.embed_dim, affine=False)

    def _tdnn_lengths(self, lengths: Tensor) -> Tensor:
        kernel = self.config.tdnn_kernel
        return (lengths + 2 * (kernel // 2) - kernel) // 2 + 1

    def encode(self, features: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Embed filterbanks ``(B, n_frames, n_mels)`` with ``lengths`` ``(B,)`` valid frames.

        Computed in float32 whatever autocast is active (see the module docstring).

        Returns:
            ``(B, embed_dim)`` L2-normalised float32 embeddings.

        Raises:
            ValueError: ``features`` is not ``(B, n_frames, n_mels)`` with ``n_mels`` of the
                config, or a length is outside ``[1, n_frames]``.
        """
        features, lengths = check_features(
            features, lengths, self.config.frontend.n_mels, "CAM++ expects filterbanks"
        )
        with torch.autocast(features.device.type, enabled=False):
            return self._encode(features.float(), lengths)

    def _encode(self, features: Tensor, lengths: Tensor) -> Tensor:
        batch, n_frames, _ = features.shape
        padded = bool((lengths < n_frames).any())
        frame_mask = length_mask(lengths, batch, n_frames, features.device).float()
        x = (features * frame_mask[..., None]).transpose(1, 2)  # (B, n_mels, n_frames)
        h = self.fcm(x, frame_mask[:, None, None] if padded else None)  # (B, C * n_mels / 8, F)
        h = self.tdnn(_masked(h, frame_mask[:, None] if padded else None))  # (B, C0, T)
        h = h.transpose(0, 1).contiguous()  # channel-major (C0, B, T) from here on
        lengths = self._tdnn_lengths(lengths)
        ctx = _Context(lengths, h.shape[-1], self.config.segment_frames)
        for block, transit in zip(self.blocks, self.transits, strict=True):
            h = transit(block(h, ctx))
        valid = length_mask(lengths, batch, h.shape[-1], h.device)[None].float()
        h = F.relu(self.out_norm(h)) * valid  # (C, B, T)
        count = lengths.float()
        mean = h.sum(-1) / count
        # Unbiased, as 3D-Speaker's; a single frame (which it cannot embed) gets 0, not NaN.
        var = ((h - mean[..., None]) ** 2 * valid).sum(-1) / (count - 1).clamp(min=1)
        stats = torch.cat([mean, var.sqrt()]).T  # (B, 2C)
        return F.normalize(self.embedding_norm(self.embedding(stats)), dim=-1)
