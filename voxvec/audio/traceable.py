"""Spectral building blocks that trace into graphs with dynamic batch and length axes.

``torch.stft``, ``Tensor.unfold`` and ``torch.fft.rfft`` have no ONNX form in the tracing
exporter (complex outputs, static sizes), and a batch whose items end in different places was
framed item by item. While a model is traced (:func:`voxvec.export.export` to ONNX or
TorchScript), the front-ends frame by indexing, reflect-pad each item at its own end with one
gather, and take the DFT as two matrix products; eagerly they keep the FFT.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def frame(wav: Tensor, frame_length: int, hop_length: int) -> Tensor:
    """Whole frames of a batch: ``(B, T)`` -> ``(B, F, frame_length)``, as ``wav.unfold(1, ...)``.

    Args:
        wav: ``(B, T)`` waveforms, ``T >= frame_length``.
        frame_length: samples per frame.
        hop_length: samples between frame starts.

    Returns:
        ``(B, (T - frame_length) // hop_length + 1, frame_length)``.
    """
    n_frames = (wav.shape[1] - frame_length) // hop_length + 1
    starts = torch.arange(n_frames, device=wav.device)[:, None] * hop_length
    return wav[:, starts + torch.arange(frame_length, device=wav.device)[None]]


def reflect_pad_items(wav: Tensor, lengths: Tensor, pad: int) -> Tensor:
    """Reflect-pad every item of a right-padded batch by ``pad`` samples at both of its ends.

    Item ``b``'s first ``lengths[b] + 2 * pad`` samples equal
    ``F.pad(wav[b, :lengths[b]], (pad, pad), mode="reflect")``; later ones are arbitrary.

    Args:
        wav: ``(B, T)`` waveforms.
        lengths: ``(B,)`` valid samples per item, each more than ``pad``.
        pad: samples to add at each end.

    Returns:
        ``(B, T + 2 * pad)``.
    """
    source = (torch.arange(wav.shape[1] + 2 * pad, device=wav.device) - pad).abs()[None]
    last = lengths[:, None] - 1
    source = torch.where(source > last, 2 * last - source, source).clamp(min=0)
    return wav.gather(1, source.clamp(max=wav.shape[1] - 1))


def dft_power(frames: Tensor, n_fft: int) -> Tensor:
    """``|rfft(frames, n=n_fft)| ** 2`` by matrix products: ``(..., W)`` -> ``(..., n_fft//2+1)``.

    Args:
        frames: ``(..., W)`` real frames, ``W <= n_fft`` (zero-padded to ``n_fft`` implicitly).
        n_fft: the DFT size.

    Returns:
        The power spectrum, float32.
    """
    width = frames.shape[-1]
    # Phase index n * k mod n_fft in integers, so the angles are exact before the cosine.
    phase = (torch.arange(width)[:, None] * torch.arange(n_fft // 2 + 1)[None]) % n_fft
    angle = phase.double() * (2 * math.pi / n_fft)
    real = frames @ torch.cos(angle).float().to(frames.device)
    imag = frames @ torch.sin(angle).float().to(frames.device)
    return real**2 + imag**2
