"""Streaming embeddings: audio chunks in as they arrive, window embeddings out as they complete.

:class:`StreamingEmbedder` wraps an embedder (the PyTorch :class:`~voxvec.inference.Embedder` or
the torch-free :class:`~voxvec.onnx_embedder.OnnxEmbedder`) and takes chunks of any length (a
microphone's 100-500 ms blocks, say). It lays the embedder's windows (``window_s`` every
``hop_s``) over the stream and embeds each window once, when its last sample has arrived: no
past audio is embedded again, and it keeps only the last window of audio. The running speaker
embedding (:attr:`StreamingEmbedder.embedding`) is the re-normalised mean of the windows so far.

:meth:`StreamingEmbedder.finish` embeds what the offline path adds at the end (the last window
ending at the end of the audio, or the whole audio when it is shorter than one window) and
returns the :class:`~voxvec.pipeline.WindowEmbeddings` of the whole stream: the same windows,
times and embeddings as ``embedder.embed_windows`` of the same audio (within 1e-5 per value in
float32: the same samples go through the same forward pass, only batched differently; chunks
at another sample rate are resampled by the same soxr resampler, streamed, which gives the same
samples), and its ``mean()`` is ``embedder.embed``'s.

Live use. A window that cannot hold speech (silence, a steady hum:
:func:`voxvec.audio.vad.non_speech_reason`) is not embedded when the embedder's
``min_speech_s`` is above 0 (its embedding would be no one's); audio whose windows all hold
speech is unaffected. The embedder's VAD must be off: trimming silence is decided over a whole
recording, which a stream does not have. Who is talking is followed window by window: with a
:class:`~voxvec.apps.store.SpeakerStore`, each window is identified (open set) and a change of
the name starts a new turn; without one, a window whose cosine similarity to the window before
is below the threshold starts a new turn. Each new turn is a :class:`SpeakerChange`, passed to
``on_change`` and kept in :attr:`StreamingEmbedder.changes`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from voxvec.audio import io
from voxvec.audio.vad import non_speech_reason
from voxvec.pipeline import BaseEmbedder, WindowEmbeddings

if TYPE_CHECKING:
    from voxvec.apps.identity import ModelIdentity
    from voxvec.apps.store import Match, SpeakerStore

logger = logging.getLogger(__name__)

SOURCE = "stream"
"""The ``source`` of the :class:`~voxvec.pipeline.WindowEmbeddings` a stream returns."""


@dataclass(frozen=True)
class SpeakerChange:
    """A new speaker turn, found on one window of the stream.

    Attributes:
        turn: the turn's number (0 for the first window embedded, then 1, 2 ...).
        window: the index of the window that starts it.
        start_s: where that window starts, in seconds of the stream.
        end_s: where it ends.
        speaker: with a store, the identified speaker (None: unknown); without one, None.
        score: with a store, the best candidate's cosine score; without one, the cosine
            similarity to the window before (None for the first window).
        match: the store's full :class:`~voxvec.apps.store.Match` (candidates, decision), or
            None without a store.
    """

    turn: int
    window: int
    start_s: float
    end_s: float
    speaker: str | None
    score: float | None
    match: Match | None


class StreamingEmbedder:
    """A running speaker embedding and per-window embeddings of audio that arrives in chunks.

    Args:
        embedder: what embeds the windows; its ``window_s``/``hop_s`` lay them out (choose
            short ones for live use, e.g. ``voxvec.load(window_s=2.0, hop_s=0.5)``), its
            ``min_speech_s`` decides whether silent windows are skipped (above 0) or embedded.
        sample_rate: the rate in Hz of the chunks; None for the embedder's rate. Chunks at
            another rate are resampled as they arrive.
        on_change: called with each :class:`SpeakerChange`, in the caller's thread, from
            :meth:`push` or :meth:`finish`.
        store: identify each window against these enrolled speakers (needs a PyTorch
            :class:`~voxvec.inference.Embedder` of the store's model: the store records its
            weights' fingerprint).
        threshold: with a store, the identification threshold; without one, the least cosine
            similarity of consecutive windows of one speaker. A number or an operating point of
            the embedder's card (None: its ``"eer"`` point). Read only when ``on_change`` or
            ``store`` is given.
        margin: with a store, the least lead of the best speaker over the runner-up.
        batch_size: windows per forward pass when a chunk completes several.

    Attributes:
        embedder: the embedder.
        sample_rate: the rate of the chunks.
        changes: every :class:`SpeakerChange` so far, in order (turns are followed when
            ``on_change`` or ``store`` is given; else this stays empty).

    Raises:
        ValueError: the embedder has no windows (``window_s=None``) or its VAD is on; a bad
            threshold, margin or batch size.
        TypeError: a store with an embedder that is not a PyTorch Embedder.
    """

    def __init__(
        self,
        embedder: BaseEmbedder,
        sample_rate: int | None = None,
        *,
        on_change: Callable[[SpeakerChange], None] | None = None,
        store: SpeakerStore | None = None,
        threshold: float | str | None = None,
        margin: float = 0.05,
        batch_size: int = 16,
    ) -> None:
        if embedder.window is None or embedder.hop is None:
            raise ValueError(
                "streaming embeds windows as they complete: load the embedder with window_s "
                "(and hop_s), e.g. voxvec.load(window_s=2.0, hop_s=0.5)"
            )
        if embedder.vad != "off":
            raise ValueError(
                f"streaming needs vad='off' (got {embedder.vad!r}): VAD trims silence over a "
                "whole recording; a stream skips silent windows instead (min_speech_s > 0)"
            )
        if batch_size < 1 or margin < 0:
            raise ValueError(f"need batch_size >= 1 and margin >= 0, got {batch_size}, {margin}")
        self.embedder = embedder
        rate = embedder.sample_rate if sample_rate is None else sample_rate
        self.sample_rate = io.check_rate(rate, "sample_rate")
        self._window, self._hop = embedder.window, embedder.hop
        self._resampler = None
        if self.sample_rate != embedder.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(
                self.sample_rate, embedder.sample_rate, 1, dtype="float32", quality="HQ"
            )
        self._on_change = on_change
        self._store = store
        self._identity: ModelIdentity | None = None
        self._margin = margin
        self._batch_size = batch_size
        self._threshold: float | None = None
        if on_change is not None or store is not None:
            self._threshold = embedder.resolve_threshold(threshold)
        if store is not None:
            self._identity = _identity(embedder)
            store.model.check(self._identity, f"speaker store {store.path}")
        self._buffer = np.zeros(0, dtype=np.float32)  # samples [_buffer_start, _n)
        self._buffer_start = 0
        self._n = 0  # samples received, at the embedder's rate
        self._n_chunks = 0
        self._next = 0  # start of the next grid window
        self._last_grid: int | None = None  # start of the last grid window reached
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._rows: list[np.ndarray] = []
        self._sum = np.zeros(embedder.embed_dim, dtype=np.float64)
        self._previous: np.ndarray | None = None  # the last window embedded
        self._speaker: str | None = None
        self._finished = False
        self.changes: list[SpeakerChange] = []

    # ------------------------------------------------------------------ state

    @property
    def embedding(self) -> np.ndarray | None:
        """``(D,)`` float32: the re-normalised mean of the windows embedded so far (None before
        the first one)."""
        if not self._rows:
            return None
        return (self._sum / np.linalg.norm(self._sum)).astype(np.float32)

    @property
    def duration_s(self) -> float:
        """Seconds of audio received (at the embedder's rate)."""
        return self._n / self.embedder.sample_rate

    @property
    def current(self) -> SpeakerChange | None:
        """The turn in progress (who is talking now), or None before the first window."""
        return self.changes[-1] if self.changes else None

    def windows(self) -> WindowEmbeddings:
        """The windows embedded so far, with their times in seconds of the stream."""
        return self._windows_from(0)

    # ------------------------------------------------------------------ input

    def push(self, chunk: np.ndarray) -> WindowEmbeddings:
        """Add a chunk of audio; embed the windows it completes.

        Args:
            chunk: ``(T,)`` mono samples at :attr:`sample_rate`: float in [-1, 1] (louder
                chunks are scaled to peak 1, with a warning) or int16/int32 PCM.

        Returns:
            The windows this chunk completed (often none), as
            :class:`~voxvec.pipeline.WindowEmbeddings` with times in the stream.

        Raises:
            voxvec.audio.io.AudioError: the chunk is not 1-D, empty, or not finite.
            ValueError: the stream is finished.
        """
        if self._finished:
            raise ValueError("this stream is finished: start a new StreamingEmbedder")
        source = f"chunk {self._n_chunks}"
        self._n_chunks += 1
        wav = io.fit_peak(io.check_waveform(chunk, source), source)
        if self._resampler is not None:
            wav = np.asarray(self._resampler.resample_chunk(wav), dtype=np.float32)
        self._append(wav)
        spans = []
        while self._next + self._window <= self._n:
            spans.append((self._next, self._next + self._window))
            self._last_grid = self._next
            self._next += self._hop
        return self._embed(spans)

    def finish(self) -> WindowEmbeddings:
        """End the stream: embed what the offline path adds at the end, and return every window.

        The last window ends at the end of the audio (when the hops did not end there); audio
        shorter than one window is one window, the whole of it.

        Returns:
            The :class:`~voxvec.pipeline.WindowEmbeddings` of the whole stream: the windows of
            ``embedder.embed_windows`` of the same audio (less any skipped as non-speech).

        Raises:
            ValueError: nothing could be embedded (the stream is shorter than ``min_speech_s``
                or the model's minimum, or holds no speech), or it is already finished.
        """
        if self._finished:
            raise ValueError("this stream is finished: start a new StreamingEmbedder")
        self._finished = True
        if self._resampler is not None:
            self._append(
                np.asarray(
                    self._resampler.resample_chunk(np.zeros(0, np.float32), last=True),
                    dtype=np.float32,
                )
            )
        if self._n <= self._window:
            self._check_short()
            self._embed([(0, self._n)])
        elif self._last_grid != self._n - self._window:
            self._embed([(self._n - self._window, self._n)])
        if not self._rows:
            raise ValueError(
                f"{SOURCE}: no window of its {self.duration_s:.2f} s holds speech; an embedding "
                "of it would be meaningless (min_speech_s=0 embeds it anyway)"
            )
        return self.windows()

    # ------------------------------------------------------------------ internals

    def _append(self, wav: np.ndarray) -> None:
        """Add samples at the embedder's rate, keeping only the last window's worth before."""
        keep_from = max(self._buffer_start, min(self._next, self._n + wav.size - self._window))
        buffer = np.concatenate([self._buffer[keep_from - self._buffer_start :], wav])
        self._buffer, self._buffer_start = buffer, keep_from
        self._n += wav.size

    def _check_short(self) -> None:
        """The offline checks of an input no longer than one window."""
        embedder, rate = self.embedder, self.embedder.sample_rate
        if self._n / rate < embedder.min_speech_s or self._n < embedder.min_samples:
            raise ValueError(
                f"{SOURCE}: {self._n / rate:.2f} s of audio is below min_speech_s="
                f"{embedder.min_speech_s:g} or the model's minimum input of "
                f"{embedder.min_samples} samples; an embedding of it would be meaningless"
            )

    def _embed(self, spans: list[tuple[int, int]]) -> WindowEmbeddings:
        """Embed the windows ``spans`` (sample ranges of the stream) that may hold speech."""
        first = len(self._rows)
        rate = self.embedder.sample_rate
        waves = [self._buffer[a - self._buffer_start : b - self._buffer_start] for a, b in spans]
        keep = [
            k
            for k, wav in enumerate(waves)
            if self.embedder.min_speech_s == 0 or non_speech_reason(wav, rate) is None
        ]
        if keep:
            rows = self.embedder.embed_waveforms(
                [waves[k] for k in keep], batch_size=self._batch_size
            )
            for k, row in zip(keep, rows, strict=True):
                self._record(spans[k], row)
        return self._windows_from(first)

    def _windows_from(self, first: int) -> WindowEmbeddings:
        """The windows embedded from the ``first``-th on."""
        rate = float(self.embedder.sample_rate)
        rows = self._rows[first:]
        return WindowEmbeddings(
            source=SOURCE,
            embeddings=(
                np.stack(rows) if rows else np.zeros((0, self.embedder.embed_dim), dtype=np.float32)
            ),
            starts_s=np.array(self._starts[first:], dtype=np.int64) / rate,
            ends_s=np.array(self._ends[first:], dtype=np.int64) / rate,
            duration_s=self._n / rate,
            speech_s=self._n / rate,
        )

    def _record(self, span: tuple[int, int], row: np.ndarray) -> None:
        """Keep one window's embedding and follow who is talking."""
        index = len(self._rows)
        self._starts.append(span[0])
        self._ends.append(span[1])
        self._rows.append(row)
        self._sum += row
        previous, self._previous = self._previous, row
        if self._threshold is None:
            return
        match = None
        score: float | None
        if self._store is not None:
            assert self._identity is not None
            match = self._store.identify(
                row, model=self._identity, threshold=self._threshold, margin=self._margin
            )[0]
            speaker, score = match.speaker, match.score
            changed = previous is None or speaker != self._speaker
        else:
            speaker = None
            score = None if previous is None else float(np.dot(row, previous))
            changed = score is None or score < self._threshold
        self._speaker = speaker
        if not changed:
            return
        rate = self.embedder.sample_rate
        change = SpeakerChange(
            turn=len(self.changes),
            window=index,
            start_s=span[0] / rate,
            end_s=span[1] / rate,
            speaker=speaker,
            score=score,
            match=match,
        )
        self.changes.append(change)
        logger.debug("turn %d at %.2f s: %s", change.turn, change.start_s, speaker)
        if self._on_change is not None:
            self._on_change(change)


def _identity(embedder: BaseEmbedder) -> ModelIdentity:
    """The store identity of ``embedder``'s model (a PyTorch Embedder's weights)."""
    from voxvec.apps.identity import ModelIdentity
    from voxvec.inference import Embedder

    if not isinstance(embedder, Embedder):
        raise TypeError(
            "identifying against a speaker store needs a PyTorch Embedder (voxvec.load of the "
            f"store's model): the store checks its weights' fingerprint, got {type(embedder)}"
        )
    return ModelIdentity.of(embedder)
