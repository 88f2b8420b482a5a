"""Tests for voxvec.streaming: chunks of real speech in, each window embedded once, the result
equal to the offline windows and mean; resampled chunks; short streams; silence skipped;
speaker changes with and without a speaker store; errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import voxvec
from voxvec.apps.identity import ModelIdentity
from voxvec.apps.store import SpeakerStore
from voxvec.audio import io
from voxvec.inference import Embedder
from voxvec.streaming import SpeakerChange, StreamingEmbedder

TOLERANCE = 1e-5
"""Largest difference allowed between streamed and offline embeddings, per value (float32)."""

RATE = 16000


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """The default model in float32 with short windows, as for live use."""
    return voxvec.load(device="cpu", window_s=2.0, hop_s=1.0, precision="float32")


@pytest.fixture(scope="module")
def speakers(shared_data: Path) -> dict[str, list[Path]]:
    """Two speechocean762 speakers, six recordings each."""
    root = shared_data / "speechocean762" / "audio"
    return {name: sorted((root / name).glob("*.ogg"))[:6] for name in ("0001", "0005")}


@pytest.fixture(scope="module")
def conversation(speakers: dict[str, list[Path]]) -> tuple[np.ndarray, int]:
    """Four recordings of 0001 then four of 0005 at 16 kHz, and where 0005 starts."""
    first, second = (
        np.concatenate([io.load(f, RATE) for f in files[2:]]) for files in speakers.values()
    )
    return np.concatenate([first, second]), len(first)


def stream(streamer: StreamingEmbedder, wav: np.ndarray, seed: int = 0) -> None:
    """Push ``wav`` in chunks of 100-500 ms (at the streamer's rate)."""
    rng = np.random.default_rng(seed)
    rate = streamer.sample_rate
    start = 0
    while start < len(wav):
        n = int(rng.integers(rate // 10, rate // 2))
        streamer.push(wav[start : start + n])
        start += n


class CountingEmbedder(Embedder):
    """The Embedder, counting the waveforms it embeds."""

    def __init__(self, embedder: Embedder) -> None:
        vars(self).update(vars(embedder))
        self.embedded = 0

    def embed_waveforms(self, waves, *, batch_size=16):  # type: ignore[no-untyped-def]
        self.embedded += len(waves)
        return super().embed_waveforms(waves, batch_size=batch_size)


def test_streamed_windows_equal_the_offline_ones_each_embedded_once(
    embedder: Embedder, conversation: tuple[np.ndarray, int]
) -> None:
    wav, _ = conversation
    counting = CountingEmbedder(embedder)
    streamer = StreamingEmbedder(counting)
    rng = np.random.default_rng(1)
    start, running, largest_buffer = 0, [], 0
    while start < len(wav):
        n = int(rng.integers(RATE // 10, RATE // 2))
        new = streamer.push(wav[start : start + n])
        start += n
        assert new.ends_s.size == 0 or new.ends_s.max() <= start / RATE  # no look-ahead
        running.append(streamer.embedding)
        largest_buffer = max(largest_buffer, streamer._buffer.size)
    result = streamer.finish()
    offline = embedder.embed_windows(wav, RATE)[0]
    assert len(result.embeddings) == len(offline.embeddings) > 20
    assert counting.embedded == len(offline.embeddings)  # nothing embedded twice
    np.testing.assert_array_equal(result.starts_s, offline.starts_s)
    np.testing.assert_array_equal(result.ends_s, offline.ends_s)
    np.testing.assert_allclose(result.embeddings, offline.embeddings, atol=TOLERANCE)
    np.testing.assert_allclose(result.mean(), embedder.embed(wav, RATE)[0], atol=TOLERANCE)
    np.testing.assert_allclose(streamer.embedding, result.mean(), atol=TOLERANCE)
    assert result.duration_s == offline.duration_s
    assert running[0] is None and running[-1] is not None  # a running embedding once a window is
    assert largest_buffer <= embedder.window + RATE // 2  # only the last window is kept


def test_chunks_at_another_rate_are_resampled_as_they_arrive(
    embedder: Embedder, conversation: tuple[np.ndarray, int]
) -> None:
    wav = io.resample(conversation[0][: RATE * 9], RATE, 44100)
    streamer = StreamingEmbedder(embedder, 44100)
    stream(streamer, wav)
    result = streamer.finish()
    offline = embedder.embed_windows(wav, 44100)[0]
    np.testing.assert_array_equal(result.starts_s, offline.starts_s)
    np.testing.assert_allclose(result.embeddings, offline.embeddings, atol=TOLERANCE)


def test_a_stream_shorter_than_a_window_is_one_window(
    embedder: Embedder, speakers: dict[str, list[Path]]
) -> None:
    wav = io.load(speakers["0001"][0], RATE)[: int(1.5 * RATE)]
    streamer = StreamingEmbedder(embedder)
    stream(streamer, wav)
    assert streamer.embedding is None  # no window complete yet
    result = streamer.finish()
    assert len(result.embeddings) == 1 and result.ends_s[0] == 1.5
    np.testing.assert_allclose(result.embeddings[0], embedder.embed(wav, RATE)[0], atol=TOLERANCE)
    with pytest.raises(ValueError, match="finished"):
        streamer.push(wav)


def test_silent_windows_are_skipped(embedder: Embedder, speakers: dict[str, list[Path]]) -> None:
    speech = io.load(speakers["0001"][0], RATE)[: 3 * RATE]
    wav = np.concatenate([speech, np.zeros(4 * RATE, np.float32), speech])
    changes: list[SpeakerChange] = []
    streamer = StreamingEmbedder(embedder, on_change=changes.append)
    stream(streamer, wav)
    result = streamer.finish()
    offline = embedder.embed_windows(wav, RATE)[0]
    quiet_from, quiet_to = len(speech) / RATE, len(speech) / RATE + 4
    silent = (offline.starts_s >= quiet_from) & (offline.ends_s <= quiet_to)
    assert silent.sum() >= 2
    kept = ~silent
    np.testing.assert_array_equal(result.starts_s, offline.starts_s[kept])
    np.testing.assert_allclose(result.embeddings, offline.embeddings[kept], atol=TOLERANCE)
    assert all(not (quiet_from <= c.start_s and c.end_s <= quiet_to) for c in changes)

    with pytest.raises(ValueError, match="no window"):
        silence = StreamingEmbedder(embedder)
        stream(silence, np.zeros(5 * RATE, np.float32))
        silence.finish()


def test_a_change_of_speaker_starts_a_new_turn(
    embedder: Embedder, conversation: tuple[np.ndarray, int]
) -> None:
    wav, boundary = conversation
    changes: list[SpeakerChange] = []
    streamer = StreamingEmbedder(embedder, on_change=changes.append)
    stream(streamer, wav)
    streamer.finish()
    assert changes == streamer.changes and streamer.current == changes[-1]
    assert changes[0].turn == 0 and changes[0].window == 0 and changes[0].score is None
    assert [c.turn for c in changes] == list(range(len(changes)))
    at = boundary / RATE
    near = [c for c in changes if at - 2.0 <= c.start_s <= at + 1.0]  # a window over the change
    assert near and all(c.score is not None and c.score < embedder.threshold for c in near)
    assert all(c.speaker is None and c.match is None for c in changes)


def test_changes_name_the_speaker_from_a_store(
    embedder: Embedder,
    speakers: dict[str, list[Path]],
    conversation: tuple[np.ndarray, int],
    tmp_path: Path,
) -> None:
    identity = ModelIdentity.of(embedder)
    store = SpeakerStore.create(tmp_path / "store", identity)
    for name, files in speakers.items():  # enrolled with recordings that are not streamed
        store.enroll(name, embedder.embed(files[:2]), model=identity)
    wav, boundary = conversation
    changes: list[SpeakerChange] = []
    streamer = StreamingEmbedder(embedder, store=store, on_change=changes.append)
    stream(streamer, wav)
    streamer.finish()
    at = boundary / RATE
    assert changes[0].speaker == "0001" and changes[0].match is not None
    assert changes[-1].speaker == "0005" and at - 2.0 <= changes[-1].start_s <= at + 1.0
    assert all(c.speaker != "0005" for c in changes if c.end_s <= at)
    assert all(c.speaker != "0001" for c in changes if c.start_s >= at)
    assert all(a.speaker != b.speaker for a, b in zip(changes[:-1], changes[1:], strict=True))


def test_options_are_checked(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="window_s"):
        StreamingEmbedder(voxvec.load(window_s=None))
    with pytest.raises(ValueError, match="vad='off'"):
        StreamingEmbedder(voxvec.load(window_s=2.0, vad="energy"))
    with pytest.raises(ValueError, match="no decision threshold 'far5'"):
        StreamingEmbedder(embedder, on_change=print, threshold="far5")
    with pytest.raises(io.AudioError, match="chunk 0"):
        StreamingEmbedder(embedder).push(np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match="below min_speech_s"):
        short = StreamingEmbedder(embedder)
        short.push(np.full(RATE // 10, 0.1, np.float32))
        short.finish()
