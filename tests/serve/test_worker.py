"""The model worker: grouping of waiting jobs, a bounded queue, deadlines, failures kept apart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from voxvec.inference import Embedder
from voxvec.models import create_model
from voxvec.runtime import embed_waveforms
from voxvec.serve.worker import BatchWorker, Overloaded, QueuedEmbedder, TimedOut, deadline


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    model = create_model("ecapa", channels=16, mfa_channels=32, attention_channels=8)
    return Embedder(model, "cpu", precision="float32", min_speech_s=0.0)


def _waves(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [0.1 * rng.standard_normal(4000 + 800 * k).astype(np.float32) for k in range(n)]


class Gate:
    """Holds the worker inside its first forward pass until opened."""

    def __init__(self, worker: BatchWorker) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.calls: list[int] = []
        forward = worker._forward

        def gated(waves: list[np.ndarray]) -> np.ndarray:
            self.calls.append(len(waves))
            self.entered.set()
            self.opened.wait(30)
            return forward(waves)

        worker._forward = gated  # type: ignore[method-assign]


@pytest.fixture
def worker(embedder: Embedder) -> Iterator[BatchWorker]:
    worker = BatchWorker(embedder.model, "float32", max_batch=8, max_pending=3)
    yield worker
    worker.close()


def _submit(worker: BatchWorker, waves: list[np.ndarray], out: dict, key: int) -> threading.Thread:
    def run() -> None:
        try:
            out[key] = worker.embed(waves)
        except Exception as err:
            out[key] = err

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_pending(worker: BatchWorker, n: int) -> None:
    end = time.monotonic() + 30
    while worker.pending < n:
        assert time.monotonic() < end, "jobs did not queue"
        time.sleep(0.01)


def test_waiting_jobs_share_one_forward_pass_and_keep_their_results(worker, embedder) -> None:
    gate = Gate(worker)
    jobs = [_waves(1, 0), _waves(2, 1), _waves(1, 2), _waves(3, 3)]
    out: dict = {}
    threads = [_submit(worker, jobs[0], out, 0)]
    assert gate.entered.wait(30)
    threads += [_submit(worker, jobs[k], out, k) for k in (1, 2, 3)]
    _wait_pending(worker, 3)
    gate.opened.set()
    for t in threads:
        t.join(30)
    assert gate.calls == [1, 6]  # the first alone, the three waiting ones together
    assert worker.stats.batches == 2 and worker.stats.jobs == 4 and worker.stats.waveforms == 7
    for k, waves in enumerate(jobs):
        alone = embed_waveforms(embedder.model, waves).numpy()
        np.testing.assert_allclose(out[k], alone, atol=1e-5)


def test_a_full_queue_is_refused_at_once(worker) -> None:
    gate = Gate(worker)
    out: dict = {}
    threads = [_submit(worker, _waves(1, 0), out, 0)]
    assert gate.entered.wait(30)
    threads += [_submit(worker, _waves(1, k), out, k) for k in (1, 2, 3)]
    _wait_pending(worker, 3)
    with pytest.raises(Overloaded, match="3 requests are already waiting"):
        worker.embed(_waves(1, 9))
    assert worker.stats.refused == 1
    gate.opened.set()
    for t in threads:
        t.join(30)
    assert all(isinstance(out[k], np.ndarray) for k in range(4))


def test_a_job_past_its_deadline_is_dropped(worker) -> None:
    gate = Gate(worker)
    out: dict = {}
    first = _submit(worker, _waves(1, 0), out, 0)
    assert gate.entered.wait(30)
    with deadline(0.2), pytest.raises(TimedOut, match="waiting for the model"):
        worker.embed(_waves(2, 1))
    with deadline(0.0), pytest.raises(TimedOut, match="before reaching the model"):
        worker.embed(_waves(2, 1))
    gate.opened.set()
    first.join(30)
    worker.close()  # the queue is drained: the dropped job never ran
    assert gate.calls == [1] and worker.stats.jobs == 1 and worker.stats.timed_out == 2


def test_a_failing_input_fails_only_its_own_job(worker, embedder) -> None:
    gate = Gate(worker)
    out: dict = {}
    threads = [_submit(worker, _waves(1, 0), out, 0)]
    assert gate.entered.wait(30)
    too_short = [np.zeros(10, np.float32)]  # below the model's minimum input
    threads += [_submit(worker, too_short, out, 1), _submit(worker, _waves(2, 5), out, 2)]
    _wait_pending(worker, 2)
    gate.opened.set()
    for t in threads:
        t.join(30)
    assert isinstance(out[1], ValueError)
    np.testing.assert_allclose(
        out[2], embed_waveforms(embedder.model, _waves(2, 5)).numpy(), atol=1e-5
    )


def test_queued_embedder_equals_the_embedder(worker, embedder) -> None:
    queued = QueuedEmbedder(embedder, worker)
    rng = np.random.default_rng(7)
    long = 0.1 * rng.standard_normal(16000 * 45).astype(np.float32)  # three 20 s windows
    inputs = [long, *_waves(3, 8)]
    np.testing.assert_allclose(
        queued.embed(inputs, 16000), embedder.embed(inputs, 16000), atol=1e-5
    )
    windows = queued.embed_windows([long], 16000)[0]
    assert len(windows.embeddings) == 3 and worker.stats.waveforms == 6 + 3
    assert queued.card == embedder.card and queued.window == embedder.window


def test_queued_embedder_refuses_another_models_worker(embedder) -> None:
    other = create_model("ecapa", channels=16, mfa_channels=32, attention_channels=8)
    worker = BatchWorker(other, "float32")
    try:
        with pytest.raises(ValueError, match="another model"):
            QueuedEmbedder(embedder, worker)
    finally:
        worker.close()
    with pytest.raises(ValueError, match="max_batch"):
        BatchWorker(other, "float32", max_batch=0)
