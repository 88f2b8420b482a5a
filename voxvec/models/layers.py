"""Building blocks shared by several architectures."""

from __future__ import annotations

import torch
from torch import Tensor


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
        if max_len < min_len:
            raise ValueError(f"input of {max_len} {unit} is shorter than the minimum {min_len}")
        return torch.full((batch,), max_len, dtype=torch.long, device=device)
    if lengths.shape != (batch,):
        raise ValueError(
            f"lengths must have shape ({batch},) for a batch of {batch}, got {tuple(lengths.shape)}"
        )
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex:
        raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
    lengths = lengths.to(device=device, dtype=torch.long)
    if batch:
        low, high = int(lengths.min()), int(lengths.max())
        if low < min_len or high > max_len:
            raise ValueError(
                f"lengths must lie in [{min_len}, {max_len}] {unit} (the minimum the model "
                f"takes, the padded length), got values in [{low}, {high}]"
            )
    return lengths
