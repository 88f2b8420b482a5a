"""One model shared by concurrent requests: a worker thread that batches their forward passes.

Every :class:`~voxvec.inference.Embedder` method ends in
:meth:`~voxvec.inference.Embedder.embed_waveforms` (decoded, checked speech windows in, unit
embeddings out). :class:`QueuedEmbedder` sends that step to a :class:`BatchWorker`; everything
before it (decoding, resampling, VAD, windowing) stays in the request's own thread. The worker
takes the first waiting job and every other job already waiting, up to ``max_batch`` waveforms,
and embeds them in one :func:`voxvec.runtime.embed_waveforms` call (length-sorted, padded,
masked: each waveform gets the embedding it gets alone). So under load the model runs full
batches instead of many small ones, and throughput grows with the number of clients.

The queue is bounded: a job that finds ``max_pending`` jobs waiting is refused at once
(:class:`Overloaded`), and a job still waiting at its request's deadline (:func:`deadline`) is
dropped (:class:`TimedOut`); neither leaves work behind for the model.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from voxvec.inference import Embedder
from voxvec.models.base import SpeakerEncoder
from voxvec.runtime import embed_waveforms

logger = logging.getLogger(__name__)

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "voxvec_serve_deadline", default=None
)


class Overloaded(RuntimeError):
    """The worker's queue is full: the request is refused (HTTP 503; retry later)."""


class TimedOut(TimeoutError):
    """The request's deadline passed while it waited for the model (HTTP 503)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within this block, jobs of this thread give up ``seconds`` from now (:class:`TimedOut`)."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@dataclass
class _Job:
    waves: list[np.ndarray]
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None
    cancelled: bool = False


@dataclass
class WorkerStats:
    """What the worker has done so far (for ``/health`` and the load benchmark).

    Attributes:
        jobs: jobs embedded (one per Embedder call of a request).
        waveforms: waveforms (or windows) embedded.
        batches: grouped calls of the model (``jobs / batches`` jobs share a call on average).
        refused: jobs refused because the queue was full.
        timed_out: jobs dropped at their deadline.
    """

    jobs: int = 0
    waveforms: int = 0
    batches: int = 0
    refused: int = 0
    timed_out: int = 0


class BatchWorker:
    """A thread that owns the model's forward passes and groups waiting jobs into batches.

    Args:
        model: the encoder (in eval mode, on its device).
        precision: the resolved precision of the Embedder (``"float32"`` or ``"bfloat16"``).
        max_batch: waveforms per forward pass, and the most a group of jobs takes (a single
            larger job still runs whole, in several passes).
        max_pending: jobs that may wait; one more is refused with :class:`Overloaded`.

    Raises:
        ValueError: ``max_batch`` or ``max_pending`` below 1.
    """

    def __init__(
        self, model: SpeakerEncoder, precision: str, *, max_batch: int = 32, max_pending: int = 64
    ) -> None:
        if max_batch < 1 or max_pending < 1:
            raise ValueError(f"need max_batch, max_pending >= 1, got {max_batch}, {max_pending}")
        self.model = model
        self.precision = precision
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.stats = WorkerStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._loop, name="voxvec-model", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs waiting now."""
        return self._queue.qsize()

    def embed(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Embed ``waves`` in the worker's next batch and wait for the result.

        Args:
            waves: 1-D float32 waveforms at the model's rate (as the Embedder hands them over).

        Returns:
            ``(len(waves), D)`` float32 unit embeddings, in order.

        Raises:
            Overloaded: ``max_pending`` jobs are already waiting.
            TimedOut: the deadline of the calling context passed before the result came.
            RuntimeError: the worker was closed.
            Whatever the model raised for these waveforms.
        """
        if not self._thread.is_alive():
            raise RuntimeError("the model worker is closed")
        end = _DEADLINE.get()
        if end is not None and time.monotonic() >= end:
            self.stats.timed_out += 1
            raise TimedOut("the request ran out of time before reaching the model")
        job = _Job(list(waves))
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.stats.refused += 1
            raise Overloaded(
                f"the server is busy: {self.max_pending} requests are already waiting for the "
                "model; retry later"
            ) from None
        if not job.done.wait(None if end is None else max(0.0, end - time.monotonic())):
            job.cancelled = True  # the worker skips it if it has not started
            self.stats.timed_out += 1
            raise TimedOut("the request ran out of time waiting for the model")
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def close(self) -> None:
        """Finish the jobs already queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, n_waves, stop = [first], len(first.waves), False
            while n_waves < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
                n_waves += len(job.waves)
            self._run([job for job in jobs if not job.cancelled])
            if stop:
                return

    def _run(self, jobs: list[_Job]) -> None:
        """Embed the jobs' waveforms in one call; if that fails, each job alone (so one bad
        input fails only its own request)."""
        if not jobs:
            return
        try:
            together = self._forward([w for job in jobs for w in job.waves])
        except Exception as err:
            if len(jobs) > 1:
                for job in jobs:
                    self._run([job])
                return
            jobs[0].error = err
            jobs[0].done.set()
            return
        self.stats.batches += 1
        start = 0
        for job in jobs:
            job.result = together[start : start + len(job.waves)]
            start += len(job.waves)
            self.stats.jobs += 1
            self.stats.waveforms += len(job.waves)
            job.done.set()

    def _forward(self, waves: list[np.ndarray]) -> np.ndarray:
        return embed_waveforms(
            self.model, waves, batch_size=self.max_batch, precision=self.precision
        ).numpy()


class QueuedEmbedder(Embedder):
    """An :class:`~voxvec.inference.Embedder` whose forward passes run on a :class:`BatchWorker`.

    It has the model, card and options of the Embedder it is made from; every method
    (``embed``, ``embed_windows``, ``verify``...) works as there, in the caller's thread, except
    the forward passes, which join the worker's shared batches.

    Args:
        embedder: the Embedder to copy (same model as the worker's).
        worker: the worker.

    Raises:
        ValueError: the worker runs another model or precision.
    """

    def __init__(self, embedder: Embedder, worker: BatchWorker) -> None:
        if embedder.model is not worker.model or embedder.precision != worker.precision:
            raise ValueError("the worker runs another model or precision than this Embedder")
        vars(self).update(vars(embedder))  # the same model, card and options
        self.worker = worker

    def embed_waveforms(self, waves: Sequence[np.ndarray], *, batch_size: int = 16) -> np.ndarray:
        """Embeddings of decoded waveforms, computed in the worker's next shared batch
        (``batch_size`` is the worker's ``max_batch``)."""
        return self.worker.embed(waves)
