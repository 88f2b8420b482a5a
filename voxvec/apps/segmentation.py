"""Speech and overlapped-speech activity from pyannote's segmentation-3.0 model.

:class:`SegmentationActivity` runs :class:`voxvec.models.pyannet.PyanNet` over 10 s chunks every
``step_s`` seconds, averages the frame probabilities of the chunks that see each frame, and
turns them into two sets of spans: speech (probability that at least one speaker talks) and
overlapped speech (probability that two talk at once). The model's local speaker identities are
not used (they are only defined within a chunk); who speaks is left to the embeddings.

The checkpoint is read with voxvec's restricted unpickler (no code from the file runs):
:func:`load_segmentation`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from voxvec.apps.diarize import Activity
from voxvec.models.pyannet import PyanNet, PyanNetConfig
from voxvec.weights.converters import read_pyannote_segmentation

logger = logging.getLogger(__name__)

SEGMENTATION_ENV = "VOXVEC_SEGMENTATION"
"""Environment variable naming the segmentation-3.0 checkpoint (``pytorch_model.bin``)."""


def default_segmentation_path() -> Path | None:
    """The checkpoint named by :data:`SEGMENTATION_ENV`, or None when it is unset."""
    value = os.environ.get(SEGMENTATION_ENV)
    return Path(value) if value else None


def load_segmentation(path: str | os.PathLike) -> PyanNet:
    """The segmentation-3.0 model from its checkpoint, in eval mode on the CPU.

    Args:
        path: pyannote's ``pytorch_model.bin`` (segmentation-3.0).

    Returns:
        The model with the checkpoint's weights (strictly loaded).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a segmentation-3.0 checkpoint.
    """
    _, state = read_pyannote_segmentation(path)
    model = PyanNet(PyanNetConfig())
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"'{path}' does not fit the segmentation-3.0 architecture: {e}") from e
    return model.eval()


def _spans(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """Sample spans of the runs of True frames (frame ``i`` spans ``[starts[i], ends[i])``)."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [
        (int(starts[a]), int(ends[b - 1])) for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]


def _clean(spans: list[tuple[int, int]], min_duration: int, min_gap: int) -> list[tuple[int, int]]:
    """Bridge gaps under ``min_gap`` samples, then drop spans under ``min_duration`` samples."""
    bridged: list[tuple[int, int]] = []
    for start, end in spans:
        if bridged and start - bridged[-1][1] < min_gap:
            bridged[-1] = (bridged[-1][0], end)
        else:
            bridged.append((start, end))
    return [(a, b) for a, b in bridged if b - a >= min_duration]


class SegmentationActivity:
    """Speech and overlap spans from the segmentation-3.0 model (an activity stage).

    Args:
        model: a loaded :class:`PyanNet` (see :func:`load_segmentation`).
        step_s: seconds between chunk starts (chunks are ``model.config.chunk_s`` long).
        speech_threshold: a frame is speech when P(at least one speaker) reaches this.
        overlap_threshold: a frame is overlapped when P(two speakers) reaches this.
        min_speech_s: speech spans shorter than this are dropped.
        min_gap_s: pauses shorter than this inside speech are bridged.
        min_overlap_s: overlap spans shorter than this are dropped.
        batch_size: chunks per forward pass.

    Raises:
        ValueError: a parameter is out of range.
    """

    def __init__(
        self,
        model: PyanNet,
        *,
        step_s: float = 2.5,
        speech_threshold: float = 0.5,
        overlap_threshold: float = 0.5,
        min_speech_s: float = 0.1,
        min_gap_s: float = 0.1,
        min_overlap_s: float = 0.2,
        batch_size: int = 8,
    ) -> None:
        cfg = model.config
        if not 0 < step_s <= cfg.chunk_s:
            raise ValueError(f"step_s must be in (0, {cfg.chunk_s}], got {step_s}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.sample_rate = cfg.sample_rate
        self.chunk = round(cfg.chunk_s * cfg.sample_rate)
        self.step = round(step_s * cfg.sample_rate)
        self.speech_threshold = speech_threshold
        self.overlap_threshold = overlap_threshold
        self.min_speech = round(min_speech_s * cfg.sample_rate)
        self.min_gap = round(min_gap_s * cfg.sample_rate)
        self.min_overlap = round(min_overlap_s * cfg.sample_rate)
        self.batch_size = batch_size
        powerset = cfg.powerset
        self._silence_class = powerset.index(())
        self._overlap_classes = [i for i, s in enumerate(powerset) if len(s) >= 2]

    def probabilities(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame probabilities of speech and of overlap over a waveform.

        Args:
            wav: ``(T,)`` float32 at the model's rate.

        Returns:
            ``(starts, p_speech, p_overlap)``: ``(F,)`` first sample of each frame (frames
            every ``frame_step`` samples) and the two probabilities, averaged over the chunks
            that see the frame.
        """
        cfg = self.model.config
        n = len(wav)
        chunk_starts = list(range(0, max(1, n - self.chunk) + 1, self.step))
        if chunk_starts[-1] + self.chunk < n:
            chunk_starts.append(n - self.chunk)
        step = cfg.frame_step
        n_frames = max(1, -(-n // step))
        speech = np.zeros(n_frames, dtype=np.float64)
        overlap = np.zeros(n_frames, dtype=np.float64)
        count = np.zeros(n_frames, dtype=np.float64)
        for first in range(0, len(chunk_starts), self.batch_size):
            starts = chunk_starts[first : first + self.batch_size]
            batch = np.zeros((len(starts), self.chunk), dtype=np.float32)
            for row, s in enumerate(starts):
                piece = wav[s : s + self.chunk]
                batch[row, : len(piece)] = piece
            with torch.inference_mode():
                probs = self.model(torch.from_numpy(batch)).exp().numpy()  # (B, F, C)
            for row, s in enumerate(starts):
                p = probs[row]
                valid = min(p.shape[0], -(-(min(n, s + self.chunk) - s) // step))
                offset = s // step
                stop = min(n_frames, offset + valid)
                k = stop - offset
                speech[offset:stop] += 1.0 - p[:k, self._silence_class]
                overlap[offset:stop] += p[:k, self._overlap_classes].sum(-1)
                count[offset:stop] += 1.0
        count = np.maximum(count, 1.0)
        return np.arange(n_frames) * step, speech / count, overlap / count

    def __call__(self, wav: np.ndarray, sample_rate: int) -> Activity:
        """Speech and overlap spans of ``wav``.

        Args:
            wav: ``(T,)`` float32 mono waveform.
            sample_rate: its rate in Hz (must be the model's).

        Returns:
            The :class:`Activity`, in samples of ``wav``.

        Raises:
            ValueError: ``sample_rate`` is not the model's.
        """
        if sample_rate != self.sample_rate:
            raise ValueError(
                f"the segmentation model runs at {self.sample_rate} Hz, got {sample_rate} Hz"
            )
        if len(wav) == 0:
            return Activity([], [])
        starts, p_speech, p_overlap = self.probabilities(wav)
        step = self.model.config.frame_step
        ends = np.minimum(starts + step, len(wav))
        speech = _clean(
            _spans(p_speech >= self.speech_threshold, starts, ends), self.min_speech, self.min_gap
        )
        overlap = _clean(
            _spans(p_overlap >= self.overlap_threshold, starts, ends), self.min_overlap, 1
        )
        return Activity(speech, overlap)
