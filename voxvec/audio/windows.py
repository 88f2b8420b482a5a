"""Batching helpers for waveforms: right-padding with lengths, sliding windows, random crops.

All lengths, window sizes and hops are in samples. :func:`window_starts` is plain Python, so the
torch-free inference path (:mod:`voxvec.pipeline`) uses it without importing torch; the tensor
helpers import torch when called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import Tensor


def pad_batch(waves: Sequence[np.ndarray | Tensor]) -> tuple[Tensor, Tensor]:
    """Right-pad 1-D waveforms with zeros into one batch.

    Args:
        waves: ``B >= 1`` waveforms ``(T_i,)`` (numpy arrays or tensors, any real dtype).

    Returns:
        ``(batch, lengths)``: ``batch`` float32 ``(B, max T_i)`` with zeros past each item's end,
        on the device of the first tensor (CPU for numpy input); ``lengths`` LongTensor ``(B,)``
        holding ``T_i`` on the same device.

    Raises:
        ValueError: ``waves`` is empty or an item is not 1-D.
    """
    import torch

    if len(waves) == 0:
        raise ValueError("pad_batch needs at least one waveform, got an empty sequence")
    items = [torch.as_tensor(w) for w in waves]
    for i, item in enumerate(items):
        if item.dim() != 1:
            raise ValueError(f"waveform {i} must be 1-D (T,), got shape {tuple(item.shape)}")
    device = items[0].device
    lengths = torch.tensor([item.shape[0] for item in items], dtype=torch.long, device=device)
    batch = torch.zeros(len(items), int(lengths.max()), dtype=torch.float32, device=device)
    for i, item in enumerate(items):
        batch[i, : item.shape[0]] = item.to(device=device, dtype=torch.float32)
    return batch, lengths


CPU_BATCH_S = 60.0
"""Seconds of (padded) audio per forward pass on a CPU: larger batches of long inputs fall out
of the caches (voxvec-default on 14 s files: 4 per pass 383-437x real time, 16 per pass
332-339x; CAM++ ran at half speed with 16). Short inputs still batch ``batch_size`` at a time."""


def batch_bound(sample_rate: int, on_cpu: bool) -> int | None:
    """The ``max_samples`` of :func:`length_batches` for a model at ``sample_rate``: the
    :data:`CPU_BATCH_S` bound on a CPU, none elsewhere."""
    return int(CPU_BATCH_S * sample_rate) if on_cpu else None


def length_batches(
    lengths: Sequence[int], batch_size: int, max_samples: int | None = None
) -> list[list[int]]:
    """The batches a list of waveforms is embedded in: indices, longest first.

    Sorting by length keeps padding small; every embedder batches this way (the PyTorch
    :func:`voxvec.runtime.embed_waveforms` and the onnxruntime backend alike).

    Args:
        lengths: length of each item, in samples.
        batch_size: items per batch (>= 1).
        max_samples: at most this many samples in a padded batch (items x its longest), but
            never fewer than one item; None: no bound (on a CPU the embedders pass
            :func:`batch_bound`).

    Returns:
        Lists of item indices, each of at most ``batch_size`` items, in decreasing length
        (ties in input order); together they hold every index once.

    Raises:
        ValueError: ``batch_size < 1`` or ``max_samples < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, start = [], 0
    while start < len(order):
        size = batch_size  # the batch's first item is its longest
        if max_samples is not None:
            size = max(1, min(batch_size, max_samples // max(1, lengths[order[start]])))
        batches.append(order[start : start + size])
        start += size
    return batches


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start indices of windows of ``window`` samples every ``hop`` that cover a signal.

    Windows start at 0, hop, 2 * hop, ...; when that grid does not end exactly at the end of
    the signal, one more window is added that ends at ``n_samples`` (so the last window always
    ends at the end and every sample is covered). A signal of at most ``window`` samples gets the
    single start 0 (that window is the whole, shorter signal).

    Args:
        n_samples: signal length in samples (>= 0).
        window: window length in samples (> 0).
        hop: distance between consecutive starts in samples (0 < hop <= window).

    Returns:
        Increasing start indices; each window is ``[start, min(start + window, n_samples))``.

    Raises:
        ValueError: an argument is outside the ranges above.
    """
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    if window <= 0:
        raise ValueError(f"window must be > 0 samples, got {window}")
    if not 0 < hop <= window:
        raise ValueError(
            f"hop must be in (0, window={window}] samples to cover the signal, got {hop}"
        )
    if n_samples <= window:
        return [0]
    last = n_samples - window
    starts = list(range(0, last + 1, hop))
    if starts[-1] != last:
        starts.append(last)
    return starts


def random_crop(wav: Tensor, n_samples: int, generator: torch.Generator | None = None) -> Tensor:
    """A random contiguous crop of ``n_samples`` along the last (time) dimension.

    Args:
        wav: waveform ``(..., T)``.
        n_samples: crop length in samples (> 0).
        generator: source of randomness (CPU generator); None uses torch's global one.

    Returns:
        ``(..., n_samples)``, a view of ``wav``; ``wav`` itself when ``T <= n_samples``.

    Raises:
        ValueError: ``n_samples <= 0`` or ``wav`` is 0-D.
    """
    import torch

    if n_samples <= 0:
        raise ValueError(f"n_samples must be > 0, got {n_samples}")
    if wav.dim() == 0:
        raise ValueError("random_crop needs a waveform with a time dimension, got a scalar")
    total = wav.shape[-1]
    if total <= n_samples:
        return wav
    start = int(torch.randint(0, total - n_samples + 1, (1,), generator=generator))
    return wav[..., start : start + n_samples]
