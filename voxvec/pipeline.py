"""The torch-free half of inference: inputs in, windows and batches out, embeddings back.

:class:`BaseEmbedder` is everything an embedder does between raw audio and a forward pass:
decoding files (:mod:`voxvec.audio.io`: soundfile and soxr), checking and resampling arrays,
silence trimming (:mod:`voxvec.audio.vad`), sliding windows over long inputs, the order in which
windows of many inputs go through shared batches, the re-normalised means, verification with the
thresholds of the model card. Its one abstract step is :meth:`BaseEmbedder.embed_waveforms`
(decoded, checked waveforms in, unit embeddings out): :class:`voxvec.inference.Embedder` runs it
with a PyTorch model, :class:`voxvec.onnx_embedder.OnnxEmbedder` with onnxruntime. So both give
the same answers for the same inputs whatever the backend, up to the forward pass.

This module imports no torch: tensors are accepted as input (and ``return_tensors="pt"``
returns one) only where torch is already in use.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeGuard

import numpy as np

from voxvec.audio import io
from voxvec.audio.vad import METHODS as VAD_METHODS
from voxvec.audio.vad import active_level_db, non_speech_reason, speech_segments
from voxvec.audio.windows import window_starts

if TYPE_CHECKING:
    from torch import Tensor

logger = logging.getLogger(__name__)

PathLike: TypeAlias = "str | os.PathLike"
AudioLike: TypeAlias = "PathLike | np.ndarray | Tensor"
EmbedInput: TypeAlias = "AudioLike | Sequence[AudioLike]"


@dataclass(frozen=True)
class EmbedResult:
    """The outcome of embedding one input with :meth:`BaseEmbedder.iter_embed`.

    Attributes:
        index: position of the input in the sequence given.
        source: the input's name: its path, or ``input[i]`` for an array.
        embedding: ``(D,)`` float32 unit vector, or None when the input failed.
        error: why the input failed (an :class:`OSError` or :class:`ValueError` naming it), or None.
    """

    index: int
    source: str
    embedding: np.ndarray | None
    error: Exception | None


@dataclass(frozen=True)
class WindowEmbeddings:
    """The window embeddings of one input, with where each window lies in the original audio.

    Attributes:
        source: the input's name: its path, or ``input[i]`` for an array.
        embeddings: ``(W, D)`` float32 unit vectors, one per window, in time order.
        starts_s: ``(W,)`` float64: where each window's first sample lies, in seconds of the
            original audio (before any VAD trimming).
        ends_s: ``(W,)`` float64: the end of each window's last sample, in seconds of the
            original audio (with VAD a window may bridge removed silence, so ``ends_s -
            starts_s`` can exceed the window length).
        duration_s: length of the original audio in seconds.
        speech_s: seconds of audio that were embedded (after VAD; ``duration_s`` without).
    """

    source: str
    embeddings: np.ndarray
    starts_s: np.ndarray
    ends_s: np.ndarray
    duration_s: float
    speech_s: float

    def mean(self) -> np.ndarray:
        """``(D,)`` float32: the re-normalised mean of the windows (what :meth:`BaseEmbedder.embed`
        gives for this input)."""
        mean = self.embeddings.astype(np.float64).mean(0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


@dataclass(frozen=True)
class _Speech:
    """A decoded input: its speech samples and where they came from in the original audio."""

    wav: np.ndarray  # (S,) float32 at the model's rate: the kept segments, joined
    segments: list[tuple[int, int]]  # kept (start, end) sample spans of the original audio
    n_samples: int  # length of the original audio

    def original_index(self, positions: np.ndarray) -> np.ndarray:
        """Original-audio sample index of each position in ``wav``."""
        lengths = np.array([end - start for start, end in self.segments])
        offsets = np.concatenate([[0], np.cumsum(lengths)])  # where each segment starts in wav
        seg = np.searchsorted(offsets, positions, side="right") - 1
        starts = np.array([start for start, _ in self.segments])
        return starts[seg] + (positions - offsets[seg])


@dataclass(frozen=True)
class _Item:
    """One input before decoding: a file path or a waveform at ``sample_rate``."""

    source: str
    path: Path | None = None
    wave: np.ndarray | None = None
    sample_rate: int | None = None


def _torch_tensor(x: object) -> TypeGuard[Tensor]:
    """Whether ``x`` is a torch tensor (it cannot be one while torch is not imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x: np.ndarray | Tensor) -> np.ndarray:
    if _torch_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _is_array(x: object) -> bool:
    return isinstance(x, np.ndarray) or _torch_tensor(x)


class BaseEmbedder(ABC):
    """Speaker embeddings from files, arrays and batches: everything but the forward pass.

    Subclasses set up their model, then call this constructor, and implement
    :attr:`sample_rate`, :attr:`embed_dim`, :attr:`min_samples` and :meth:`embed_waveforms`.

    Args:
        card: the model card; its ``thresholds`` give :meth:`verify` its default decision
            threshold.
        window_s, hop_s, vad, min_speech_s, level_db: as :class:`voxvec.inference.Embedder`.

    Attributes:
        card: the model card (a copy; empty when none was given).
        window: window length in samples at :attr:`sample_rate`, or None (no windows).
        hop: hop between windows in samples, or None.
        vad: the VAD method, one of :data:`voxvec.audio.vad.METHODS`.
        min_speech_s: the least speech, in seconds, an input must hold.
        level_db: the active level (dBFS) every input is scaled to, or None.

    Raises:
        ValueError: an option is out of range.
    """

    def __init__(
        self,
        card: dict[str, Any] | None = None,
        *,
        window_s: float | None = 20.0,
        hop_s: float | None = None,
        vad: str = "off",
        min_speech_s: float = 0.5,
        level_db: float | None = None,
    ) -> None:
        self.card: dict[str, Any] = dict(card or {})
        if vad not in VAD_METHODS:
            raise ValueError(f"vad must be one of {VAD_METHODS}, got {vad!r}")
        self.vad = vad
        if not (isinstance(min_speech_s, (int, float)) and 0 <= min_speech_s < math.inf):
            raise ValueError(f"min_speech_s must be a finite number >= 0, got {min_speech_s!r}")
        self.min_speech_s = float(min_speech_s)
        if level_db is not None and not (
            isinstance(level_db, (int, float)) and -60.0 <= level_db <= 0.0
        ):
            raise ValueError(
                f"level_db must be None or a number in [-60, 0] dBFS, got {level_db!r}"
            )
        self.level_db = None if level_db is None else float(level_db)
        self.window: int | None = None
        self.hop: int | None = None
        if window_s is not None:
            hop_s = window_s if hop_s is None else hop_s
            if not (0 < hop_s <= window_s < math.inf):
                raise ValueError(
                    f"need 0 < hop_s <= window_s, got window_s={window_s}, hop_s={hop_s}"
                )
            self.window = round(window_s * self.sample_rate)
            self.hop = max(1, round(hop_s * self.sample_rate))
            if self.window < self.min_samples:
                raise ValueError(
                    f"window_s={window_s} is shorter than the model's minimum input "
                    f"({self.min_samples} samples at {self.sample_rate} Hz)"
                )
        elif hop_s is not None:
            raise ValueError("hop_s needs window_s")

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """The sample rate in Hz every input is resampled to."""

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """Size D of the embeddings."""

    @property
    @abstractmethod
    def min_samples(self) -> int:
        """The shortest input, in samples at :attr:`sample_rate`, the model takes."""

    @property
    def threshold(self) -> float | None:
        """The model card's default decision threshold (its ``"eer"`` operating point), or None."""
        value = (self.card.get("thresholds") or {}).get("eer")
        return None if value is None else float(value)

    def resolve_threshold(self, threshold: float | str | None = None) -> float:
        """A decision threshold: a number as given, or an operating point of the model card.

        Args:
            threshold: a cosine score; a name from the card's ``thresholds`` (for the default
                model ``"eer"``, the equal-error point, and ``"far1"``, 1% false accepts, both
                chosen on held-out validation speakers); None for ``"eer"``.

        Raises:
            ValueError: a name the card does not have, or no threshold at all.
        """
        if isinstance(threshold, (int, float)):
            if not math.isfinite(threshold):
                raise ValueError(f"a decision threshold must be a finite number, got {threshold!r}")
            return float(threshold)
        points = self.card.get("thresholds") or {}
        name = "eer" if threshold is None else threshold
        if name not in points:
            raise ValueError(
                f"no decision threshold {name!r}: the model card has {sorted(points) or 'none'} "
                "(calibrate one on your data with `voxvec eval`) - pass a number instead"
            )
        return float(points[name])

    def threshold_source(self, threshold: float | str | None = None) -> str:
        """Where :meth:`resolve_threshold` takes ``threshold`` from, in words (for reports).

        Raises:
            ValueError: as :meth:`resolve_threshold`.
        """
        self.resolve_threshold(threshold)
        if isinstance(threshold, (int, float)):
            return "given"
        name = "eer" if threshold is None else threshold
        where = self.card.get("thresholds_from")
        model = self.card.get("name") or self.card.get("source") or "the model"
        return f"operating point {name!r} of {model}'s card" + (f" ({where})" if where else "")

    # ------------------------------------------------------------------ inputs

    def _items(
        self, x: EmbedInput, sample_rate: int | None, lengths: np.ndarray | Tensor | None
    ) -> list[_Item]:
        """Normalise any accepted input into a list of items (nothing decoded yet)."""
        if isinstance(x, (str, os.PathLike)):
            if lengths is not None:
                raise ValueError("lengths is only valid with a (B, T) batch")
            return [_Item(source=os.fspath(x), path=Path(x))]
        if _is_array(x):
            arr = _to_numpy(x)  # type: ignore[arg-type]
            sr = self._need_rate(sample_rate)
            if arr.ndim == 1:
                if lengths is not None:
                    raise ValueError("lengths is only valid with a (B, T) batch")
                return [_Item(source="input", wave=arr, sample_rate=sr)]
            if arr.ndim != 2:
                raise ValueError(f"expected a (T,) waveform or (B, T) batch, got shape {arr.shape}")
            lens = self._batch_lengths(arr, lengths)
            return [
                _Item(source=f"input[{i}]", wave=arr[i, : lens[i]], sample_rate=sr)
                for i in range(arr.shape[0])
            ]
        if isinstance(x, Sequence):
            if lengths is not None:
                raise ValueError("lengths is only valid with a (B, T) batch")
            items = []
            for i, elem in enumerate(x):
                if isinstance(elem, (str, os.PathLike)):
                    items.append(_Item(source=os.fspath(elem), path=Path(elem)))
                elif _is_array(elem):
                    arr = _to_numpy(elem)  # type: ignore[arg-type]
                    if arr.ndim != 1:
                        raise ValueError(
                            f"input[{i}]: list elements must be paths or 1-D waveforms, got an "
                            f"array of shape {arr.shape} (pass a (B, T) batch on its own)"
                        )
                    items.append(
                        _Item(
                            source=f"input[{i}]", wave=arr, sample_rate=self._need_rate(sample_rate)
                        )
                    )
                else:
                    raise TypeError(
                        f"input[{i}]: expected a path, numpy array or tensor, "
                        f"got {type(elem).__name__}"
                    )
            return items
        raise TypeError(
            "expected a path, a 1-D or (B, T) numpy array or tensor, or a list of paths and 1-D "
            f"arrays, got {type(x).__name__}"
        )

    def _need_rate(self, sample_rate: int | None) -> int:
        if sample_rate is None:
            raise ValueError(
                "sample_rate is required for array input (the rate of the samples given; they are "
                f"resampled to the model's {self.sample_rate} Hz)"
            )
        return io.check_rate(sample_rate, "sample_rate")

    @staticmethod
    def _batch_lengths(batch: np.ndarray, lengths: np.ndarray | Tensor | None) -> list[int]:
        n, total = batch.shape
        if lengths is None:
            return [total] * n
        lens = _to_numpy(lengths)
        if lens.shape != (n,):
            raise ValueError(f"lengths must have shape ({n},) for a batch of {n}, got {lens.shape}")
        if not np.issubdtype(lens.dtype, np.integer) or (lens < 1).any() or (lens > total).any():
            raise ValueError(f"lengths must be integers in [1, {total}], got {lens.tolist()}")
        return [int(v) for v in lens]

    def _decode(self, item: _Item) -> _Speech:
        """The item's speech at the model's rate and where it lies in the original audio."""
        if item.path is not None:
            wav = io.load(item.path, self.sample_rate)
        else:
            assert item.wave is not None and item.sample_rate is not None
            wav = io.fit_peak(io.check_waveform(item.wave, item.source), item.source)
            if item.sample_rate != self.sample_rate:
                wav = io.resample(wav, item.sample_rate, self.sample_rate)
        segments = speech_segments(wav, self.sample_rate, self.vad)
        parts = [wav[a:b] for a, b in segments]
        speech = (parts[0] if len(parts) == 1 else np.concatenate([wav[:0], *parts])).astype(
            np.float32, copy=False
        )
        speech_s = len(speech) / self.sample_rate
        if speech_s < self.min_speech_s:
            what = (
                f"speech found by VAD (of {len(wav) / self.sample_rate:.2f} s)"
                if self.vad != "off"
                else "audio"
            )
            raise ValueError(
                f"{item.source}: {speech_s:.2f} s of {what} is below "
                f"min_speech_s={self.min_speech_s:g}; an embedding of it would be meaningless "
                "(give a longer recording, or lower min_speech_s)"
            )
        reason = non_speech_reason(speech, self.sample_rate) if self.min_speech_s > 0 else None
        if reason is not None:
            raise ValueError(
                f"{item.source}: no speech: the audio is {reason}; an embedding of it would be "
                "meaningless (min_speech_s=0 embeds it anyway)"
            )
        if len(speech) < self.min_samples:
            raise ValueError(
                f"{item.source}: {len(speech)} samples at {self.sample_rate} Hz is shorter than "
                f"the model's minimum input of {self.min_samples} samples"
            )
        if self.level_db is not None:
            gain = 10.0 ** ((self.level_db - active_level_db(speech, self.sample_rate)) / 20.0)
            speech = (speech * np.float32(gain)).astype(np.float32, copy=False)
        return _Speech(speech, segments, len(wav))

    def _window_spans(self, n_samples: int) -> list[tuple[int, int]]:
        """``(start, end)`` of each window over ``n_samples``: one span when it fits one window."""
        if self.window is None or self.hop is None or n_samples <= self.window:
            return [(0, n_samples)]
        return [(s, s + self.window) for s in window_starts(n_samples, self.window, self.hop)]

    def _iter_windows(
        self,
        x: EmbedInput,
        sample_rate: int | None,
        lengths: np.ndarray | Tensor | None,
        batch_size: int,
        chunk_size: int,
    ) -> Iterator[tuple[int, str, WindowEmbeddings | None, Exception | None]]:
        """``(index, source, windows or None, error or None)`` per input, in order."""
        if batch_size < 1 or chunk_size < 1:
            raise ValueError(
                f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}"
            )
        items = self._items(x, sample_rate, lengths)
        rate = float(self.sample_rate)
        for first in range(0, len(items), chunk_size):
            chunk = items[first : first + chunk_size]
            decoded: dict[int, tuple[_Speech, list[tuple[int, int]]]] = {}
            errors: dict[int, Exception] = {}
            waves: list[np.ndarray] = []
            for k, item in enumerate(chunk):
                try:
                    speech = self._decode(item)
                except (OSError, ValueError) as err:
                    errors[k] = err
                    continue
                spans = self._window_spans(len(speech.wav))
                decoded[k] = (speech, spans)
                waves.extend(speech.wav[a:b] for a, b in spans)
            emb = self.embed_waveforms(waves, batch_size=batch_size) if waves else None
            row = 0
            for k, item in enumerate(chunk):
                if k in errors:
                    yield first + k, item.source, None, errors[k]
                    continue
                assert emb is not None
                speech, spans = decoded[k]
                rows = emb[row : row + len(spans)]
                row += len(spans)
                if not np.isfinite(rows).all():  # a bug, never an answer: say so, do not score it
                    error = ValueError(
                        f"{item.source}: the model gave a non-finite embedding (please report this "
                        "with the input)"
                    )
                    yield first + k, item.source, None, error
                    continue
                bounds = np.array(spans, dtype=np.int64)  # (W, 2) in speech samples
                starts = speech.original_index(bounds[:, 0])
                ends = speech.original_index(bounds[:, 1] - 1) + 1
                windows = WindowEmbeddings(
                    source=item.source,
                    embeddings=rows,
                    starts_s=starts / rate,
                    ends_s=ends / rate,
                    duration_s=speech.n_samples / rate,
                    speech_s=len(speech.wav) / rate,
                )
                yield first + k, item.source, windows, None

    # ------------------------------------------------------------------ public

    @abstractmethod
    def embed_waveforms(self, waves: Sequence[np.ndarray], *, batch_size: int = 16) -> np.ndarray:
        """The forward passes behind every method: embeddings of decoded, checked waveforms.

        A subclass may send the passes elsewhere (the HTTP service groups the waveforms of
        concurrent requests into shared batches this way, :mod:`voxvec.serve.worker`).

        Args:
            waves: ``S`` 1-D float32 waveforms at :attr:`sample_rate` (speech, windows already
                cut), each at least :attr:`min_samples` long.
            batch_size: waveforms per forward pass.

        Returns:
            ``(S, D)`` float32 unit embeddings, in the order of ``waves``.
        """

    def iter_embed(
        self,
        x: EmbedInput,
        sample_rate: int | None = None,
        *,
        lengths: np.ndarray | Tensor | None = None,
        batch_size: int = 16,
        chunk_size: int = 64,
    ) -> Iterator[EmbedResult]:
        """Embed inputs chunk by chunk, yielding one :class:`EmbedResult` per input, in order.

        Unlike :meth:`embed`, an input that cannot be read or is too short does not stop the
        others: its result carries the error. At most ``chunk_size`` inputs are decoded at a
        time, so many files can be embedded in bounded memory.

        Args:
            x, sample_rate, lengths, batch_size: as in :meth:`embed`.
            chunk_size: inputs decoded (and then embedded together) at a time.

        Yields:
            :class:`EmbedResult` for each input in the order given.

        Raises:
            ValueError / TypeError: the input as a whole is malformed (see :meth:`embed`).
        """
        for index, source, windows, error in self._iter_windows(
            x, sample_rate, lengths, batch_size, chunk_size
        ):
            vec = None if windows is None else windows.mean()
            yield EmbedResult(index, source, vec, error)

    def embed_windows(
        self,
        x: EmbedInput,
        sample_rate: int | None = None,
        *,
        lengths: np.ndarray | Tensor | None = None,
        batch_size: int = 16,
    ) -> list[WindowEmbeddings]:
        """The window embeddings of each input, with their times in the original audio.

        Windows are ``window_s`` long every ``hop_s`` over each input's speech (the last one ends
        at its end; an input no longer than one window, or any input when ``window_s`` is None,
        is one window). :meth:`embed` gives the re-normalised mean of these.

        Args:
            x, sample_rate, lengths, batch_size: as in :meth:`embed`.

        Returns:
            One :class:`WindowEmbeddings` per input, in order.

        Raises:
            As :meth:`embed`.
        """
        out: list[WindowEmbeddings] = []
        for _, _, windows, error in self._iter_windows(
            x, sample_rate, lengths, batch_size, chunk_size=64
        ):
            if error is not None:
                raise error
            assert windows is not None
            out.append(windows)
        return out

    def embed(
        self,
        x: EmbedInput,
        sample_rate: int | None = None,
        *,
        lengths: np.ndarray | Tensor | None = None,
        batch_size: int = 16,
        return_tensors: Literal["np", "pt"] = "np",
    ) -> Any:
        """Speaker embeddings of one or many inputs.

        Args:
            x: a path; a 1-D waveform (numpy array or tensor); a list mixing paths and 1-D
                waveforms; or a ``(B, T)`` batch of waveforms (with ``lengths`` when padded).
                Files are decoded with :func:`voxvec.audio.io.load`; waveforms are float in
                [-1, 1].
            sample_rate: rate in Hz of the waveforms in ``x``; required when ``x`` holds any
                array (there is no guessing). Files carry their own rate. Everything is
                resampled to :attr:`sample_rate`.
            lengths: ``(B,)`` valid samples per row of a ``(B, T)`` batch.
            batch_size: inputs (or windows of long inputs) per forward pass; the batch's
                memory is the bound on peak memory.
            return_tensors: ``"np"`` for a numpy array, ``"pt"`` for a CPU torch tensor.

        Returns:
            ``(N, D)`` float32 L2-normalised embeddings, one row per input (N = 1 for a single
            path or 1-D waveform, B for a batch).

        Raises:
            FileNotFoundError: a file does not exist.
            voxvec.audio.io.AudioError: a file or waveform is unreadable, empty or non-finite.
            ValueError: an input has less than ``min_speech_s`` of speech or is shorter than
                the model's minimum; ``sample_rate`` is missing for arrays; ``lengths`` is
                invalid. Each message names the input (its path or ``input[i]``).
            TypeError: ``x`` is not one of the accepted kinds.
        """
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors must be 'np' or 'pt', got {return_tensors!r}")
        rows: list[np.ndarray] = []
        for result in self.iter_embed(x, sample_rate, lengths=lengths, batch_size=batch_size):
            if result.error is not None:
                raise result.error
            assert result.embedding is not None
            rows.append(result.embedding)
        out = np.stack(rows) if rows else np.zeros((0, self.embed_dim), dtype=np.float32)
        if return_tensors == "np":
            return out
        import torch

        return torch.from_numpy(out)

    def embed_speaker(
        self,
        x: EmbedInput,
        sample_rate: int | None = None,
        *,
        lengths: np.ndarray | Tensor | None = None,
        batch_size: int = 16,
    ) -> np.ndarray:
        """One embedding for a speaker from several recordings: the re-normalised mean.

        Args:
            x, sample_rate, lengths, batch_size: as in :meth:`embed`.

        Returns:
            ``(D,)`` float32 unit vector.

        Raises:
            ValueError: ``x`` holds no input; otherwise as :meth:`embed`.
        """
        emb = self.embed(x, sample_rate, lengths=lengths, batch_size=batch_size)
        if len(emb) == 0:
            raise ValueError("embed_speaker needs at least one recording")
        mean = emb.mean(0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)

    def verify(
        self,
        a: EmbedInput,
        b: EmbedInput,
        *,
        sample_rate: int | None = None,
        threshold: float | str | None = None,
    ) -> tuple[float, bool]:
        """Whether ``a`` and ``b`` are the same speaker.

        Each side may be several recordings of one speaker (see :meth:`embed_speaker`).

        Args:
            a, b: inputs as accepted by :meth:`embed`.
            sample_rate: rate in Hz of any waveforms given.
            threshold: decide "same" when the cosine score is >= this: a number, or an
                operating point of the model card (see :meth:`resolve_threshold`); None uses
                the card's ``"eer"`` point.

        Returns:
            ``(score, same)``: the cosine similarity in [-1, 1] and the decision.

        Raises:
            ValueError: no threshold was given and the model card has none; otherwise as
                :meth:`embed`.
        """
        value = self.resolve_threshold(threshold)
        score = similarity(self.embed_speaker(a, sample_rate), self.embed_speaker(b, sample_rate))
        return float(score), bool(score >= value)


def similarity(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> Any:
    """Cosine similarity of embeddings.

    Args:
        a: ``(D,)`` or ``(N, D)`` embeddings (numpy or torch; need not be unit length).
        b: ``(D,)`` or ``(M, D)`` embeddings.

    Returns:
        A float for two vectors; ``(N, M)`` float32 numpy scores for two matrices; ``(M,)`` or
        ``(N,)`` when one side is a vector.

    Raises:
        ValueError: shapes are not 1-D/2-D with the same D, or a vector has zero norm.
    """
    x = _to_numpy(a).astype(np.float64)
    y = _to_numpy(b).astype(np.float64)
    if x.ndim not in (1, 2) or y.ndim not in (1, 2) or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            "expected (D,) or (N, D) embeddings with the same D, "
            f"got shapes {x.shape} and {y.shape}"
        )
    nx = np.linalg.norm(x, axis=-1, keepdims=True)
    ny = np.linalg.norm(y, axis=-1, keepdims=True)
    if (nx == 0).any() or (ny == 0).any():
        raise ValueError("cannot compute the cosine similarity of a zero vector")
    scores = (x / nx) @ (y / ny).T
    if x.ndim == 1 and y.ndim == 1:
        return float(scores)
    return scores.astype(np.float32)
