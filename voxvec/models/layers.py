"""Building blocks shared by several architectures."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def resolve_lengths(
    lengths: Tensor | None,
    batch: int,
    max_len: int,
    device: torch.device,
    *,
    min_len: int = 1,
    unit: str = "frames",
) -> Tensor:
    """Check the per-item lengths of a right-padded batch.

    Args:
        lengths: ``(B,)`` integer valid steps per item, or None (every item is ``max_len`` long).
        batch: B, the batch size.
        max_len: the padded length of the batch.
        device: where the returned lengths live.
        min_len: the fewest steps the model can take.
        unit: what a step is ("frames", "samples"), for error messages.

    Returns:
        ``(B,)`` LongTensor on ``device``.

    Raises:
        ValueError: ``lengths`` is not ``(B,)``, or a length is outside ``[min_len, max_len]``.
    """
    if lengths is None:
        lengths = torch.full((batch,), max_len, dtype=torch.long, device=device)
    if lengths.shape != (batch,):
        raise ValueError(
            f"lengths must have shape ({batch},) for a batch of {batch}, got {tuple(lengths.shape)}"
        )
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex:
        raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
    lengths = lengths.to(device=device, dtype=torch.long)
    # Values are checked eagerly only: a traced check would freeze the example's lengths.
    if batch and not torch.jit.is_tracing():
        low, high = int(lengths.min()), int(lengths.max())
        if low < min_len or high > max_len:
            raise ValueError(
                f"lengths must lie in [{min_len}, {max_len}] {unit} (the minimum the model "
                f"takes, the padded length), got values in [{low}, {high}]"
            )
    return lengths


def check_features(
    features: Tensor, lengths: Tensor | None, n_bins: int, what: str
) -> tuple[Tensor, Tensor]:
    """Check a ``(B, n_frames, n_bins)`` feature batch and its frame lengths.

    Args:
        features: the front-end's output.
        lengths: ``(B,)`` valid frames per item, or None (all valid).
        n_bins: the feature size the model was built for.
        what: the model and its feature kind, for the message (``"ECAPA expects log-mels"``).

    Returns:
        ``(features, lengths)``, lengths as a ``(B,)`` LongTensor.

    Raises:
        ValueError: a wrong shape, or lengths outside ``[1, n_frames]``.
    """
    if features.dim() != 3 or features.shape[-1] != n_bins:
        raise ValueError(f"{what} (B, n_frames, {n_bins}), got shape {tuple(features.shape)}")
    batch, n_frames, _ = features.shape
    return features, resolve_lengths(lengths, batch, n_frames, features.device, unit="frames")


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm of ``(B, C, T)`` frames whose batch statistics count only the valid frames.

    :class:`torch.nn.BatchNorm1d` in training mode takes its batch mean and variance (and so its
    running statistics) over every frame, padding included: the more a batch is padded, the
    more its valid frames are normalised by statistics of zeros and biases. Here a ``(B, 1, T)``
    ``mask`` (1 on valid frames) restricts both to the valid frames, so a batch's output on its
    valid frames does not depend on how far it is padded. With running statistics in eval mode,
    or without a mask, it is :class:`torch.nn.BatchNorm1d` exactly, with the same state dict.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None or not (self.training or self.running_mean is None):
            return super().forward(x)
        keep = mask.to(torch.float32).expand(x.shape[0], 1, x.shape[-1])
        count = keep.sum().clamp(min=2.0)
        x32 = x.float()  # statistics in float32 under bfloat16 autocast too
        mean = (x32 * keep).sum(dim=(0, 2)) / count
        centred = x32 - mean[:, None]
        var = (centred**2 * keep).sum(dim=(0, 2)) / count
        if self.training and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                momentum = self.momentum
                if momentum is None:  # a cumulative average, as torch's
                    momentum = 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean), momentum)
                unbiased = var * count / (count - 1)
                self.running_var.lerp_(unbiased.to(self.running_var), momentum)
        out = centred * torch.rsqrt(var[:, None] + self.eps)
        if self.affine:
            out = out * self.weight[:, None] + self.bias[:, None]
        return out.to(x.dtype)
