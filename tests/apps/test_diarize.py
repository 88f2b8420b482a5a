"""Tests of voxvec.apps.diarize: outputs, speaker counts, clustering, resegmentation, streaming,
errors, and real two-speaker conversations."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxvec.apps.diarize import (
    DIARIZATION_CARD_KEY,
    Activity,
    AgglomerativeClusterer,
    Diarization,
    DiarizeConfig,
    Diarizer,
    FrameResegmenter,
    Segment,
    SpeakerCount,
    SpectralClusterer,
    VadActivity,
    Windows,
    _average_linkage,
    _blocks,
    _centroid_linkage,
    _normalise,
    write_outputs,
)
from voxvec.audio import io
from voxvec.audio.vad import speech_segments

REPO = Path(__file__).resolve().parents[2]
SR = 16000


def _clusters(n_per: list[int], dim: int = 64, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit rows around ``len(n_per)`` random directions, ``n_per[i]`` rows each."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(n_per), dim))
    rows = [
        c + spread * rng.standard_normal((n, dim)) * np.linalg.norm(c) / np.sqrt(dim)
        for c, n in zip(centres, n_per, strict=True)
    ]
    x = np.concatenate(rows)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _n_labels(labels: np.ndarray) -> int:
    return len(np.unique(labels))


# ----------------------------------------------------------------------------- results


def _result() -> Diarization:
    segs = (Segment(0.5, 2.0, "SPEAKER_00"), Segment(1.5, 3.25, "SPEAKER_01"))
    excl = (Segment(0.5, 1.75, "SPEAKER_00"), Segment(1.75, 3.25, "SPEAKER_01"))
    return Diarization("/data/meeting one.wav", 4.0, segs, excl)


def test_rttm_is_standard_with_the_stem_as_recording_id() -> None:
    lines = _result().to_rttm().splitlines()
    assert lines == [  # white space in the id would split an RTTM field
        "SPEAKER meeting_one 1 0.500 1.500 <NA> <NA> SPEAKER_00 <NA> <NA>",
        "SPEAKER meeting_one 1 1.500 1.750 <NA> <NA> SPEAKER_01 <NA> <NA>",
    ]
    assert _result().to_rttm("rec").split()[1] == "rec"


def test_exclusive_json_and_timeline() -> None:
    result = _result()
    assert result.speakers == ["SPEAKER_00", "SPEAKER_01"]
    excl = result.exclusive()
    assert excl.segments == result.exclusive_segments
    for a, b in zip(excl.segments[:-1], excl.segments[1:], strict=True):
        assert a.end_s <= b.start_s
    d = result.to_dict()
    assert d["segments"][1] == {"start_s": 1.5, "end_s": 3.25, "speaker": "SPEAKER_01"}
    assert len(d["exclusive_segments"]) == 2
    timeline = result.timeline().splitlines()
    assert timeline[0].startswith("/data/meeting one.wav: 2 speakers")
    assert timeline[2] == "  00:00:01.5 - 00:00:03.2  SPEAKER_01"


def test_write_outputs_names_files_after_the_stem(tmp_path: Path) -> None:
    rttm, js = write_outputs(_result(), tmp_path / "out")
    assert rttm.name == "meeting one.rttm" and js.name == "meeting one.json"
    assert rttm.read_text() == _result().to_rttm()
    assert json.loads(js.read_text())["speakers"] == ["SPEAKER_00", "SPEAKER_01"]


# ----------------------------------------------------------------------------- counts


def test_speaker_count_validation() -> None:
    assert SpeakerCount.of(3) == SpeakerCount(3, 3, 3)
    assert SpeakerCount.of(None, 2, None) == SpeakerCount(None, 2, 10)
    assert SpeakerCount.of(None, 12, None).max == 12
    with pytest.raises(ValueError, match="num_speakers must be >= 1"):
        SpeakerCount.of(0)
    with pytest.raises(ValueError, match="min_speakers <= max_speakers"):
        SpeakerCount.of(None, 4, 2)
    with pytest.raises(ValueError, match="outside"):
        SpeakerCount.of(5, None, 3)


@pytest.mark.parametrize(
    "clusterer", [SpectralClusterer(), AgglomerativeClusterer()], ids=["spectral", "ahc"]
)
def test_clusterers_estimate_and_respect_counts(clusterer: object) -> None:
    x = _clusters([40, 25, 60])
    labels = clusterer(x, SpeakerCount())  # type: ignore[operator]
    assert _n_labels(labels) == 3
    truth = np.repeat([0, 1, 2], [40, 25, 60])
    for k in range(3):  # every true cluster maps to one label
        assert _n_labels(labels[truth == k]) == 1
    assert _n_labels(clusterer(x, SpeakerCount.of(5))) == 5  # type: ignore[operator]
    assert _n_labels(clusterer(x, SpeakerCount.of(2))) == 2  # type: ignore[operator]
    assert _n_labels(clusterer(x, SpeakerCount.of(None, 4, 6))) >= 4  # type: ignore[operator]
    one = _clusters([80], seed=3)
    assert _n_labels(clusterer(one, SpeakerCount())) == 1  # type: ignore[operator]
    assert clusterer(x[:0], SpeakerCount()).shape == (0,)  # type: ignore[operator]


def test_centroid_merge_joins_the_small_clusters_of_one_voice() -> None:
    # 8 clusters of 3 noisy windows of one voice (an over-split short recording), then 8 of a
    # second voice: merged clusters are compared by their centroids, which grow cleaner.
    rng = np.random.default_rng(0)
    voices = _normalise(rng.standard_normal((2, 64)))
    windows = _normalise(np.repeat(voices, 24, 0) + 0.15 * rng.standard_normal((48, 64)))
    sums = windows.reshape(16, 3, 64).sum(1)
    np.testing.assert_array_equal(_centroid_linkage(sums[:8], threshold=0.7, n_min=1), 0)
    # the mean of the small clusters' pairwise cosines stays low: average linkage keeps 6
    kept = _average_linkage(
        _normalise(sums[:8]), np.full(8, 3.0), threshold=0.7, n_min=1, n_max=None
    )
    assert _n_labels(kept) == 6
    np.testing.assert_array_equal(
        _centroid_linkage(sums, threshold=0.7, n_min=1), np.repeat([0, 1], 8)
    )
    assert _n_labels(_centroid_linkage(sums, threshold=0.7, n_min=3)) == 3


def test_clustering_settings_come_from_the_model_card(caplog: pytest.LogCaptureFixture) -> None:
    card = {"name": "m", DIARIZATION_CARD_KEY: {"spectral": {"prune": 0.3, "merge_threshold": 0.4}}}
    assert SpectralClusterer.from_card(card) == SpectralClusterer(prune=0.3, merge_threshold=0.4)
    with caplog.at_level(logging.WARNING, logger="voxvec.apps.diarize"):
        assert SpectralClusterer.from_card({"name": "m"}) == SpectralClusterer()
    assert "m: the model card has no diarization settings" in caplog.text
    with pytest.raises(ValueError, match=r"unknown keys \['merge'\]"):
        SpectralClusterer.from_card({DIARIZATION_CARD_KEY: {"spectral": {"merge": 0.5}}})


def test_many_windows_are_reduced_not_squared() -> None:
    x = _clusters([700, 500, 900], dim=32, seed=1)
    labels = SpectralClusterer(max_points=200)(x, SpeakerCount())
    assert labels.shape == (2100,)
    assert _n_labels(labels) == 3
    truth = np.repeat([0, 1, 2], [700, 500, 900])
    agree = max(
        np.mean(labels[truth == k] == np.bincount(labels[truth == k]).argmax()) for k in range(3)
    )
    assert agree > 0.98


# ----------------------------------------------------------------------------- resegmentation


def _two_speaker_windows(boundary_s: float, overlap: tuple[float, float] | None = None) -> Windows:
    """Ideal windows (1.5 s every 0.75 s) over 0-10 s: A before ``boundary_s``, B after; a
    window that straddles it gets the duration-weighted mix."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(32), rng.standard_normal(32)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    starts = np.arange(0, 8.51, 0.75)
    ends = starts + 1.5
    frac_a = np.clip((boundary_s - starts) / 1.5, 0, 1)
    emb = frac_a[:, None] * a + (1 - frac_a[:, None]) * b
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return Windows(
        embeddings=emb.astype(np.float32),
        starts_s=starts,
        ends_s=ends,
        region=np.zeros(len(starts), dtype=np.int64),
        speech_s=np.array([[0.0, 10.0]]),
        overlap_s=np.array([overlap]) if overlap else np.zeros((0, 2)),
        duration_s=10.0,
    )


def test_resegmentation_places_the_change_finer_than_the_window_step() -> None:
    for boundary in (4.1, 4.6, 5.3):
        win = _two_speaker_windows(boundary)
        labels = (win.starts_s + 0.75 >= boundary).astype(np.int64)
        segments, exclusive = FrameResegmenter()(win, labels)
        assert segments == exclusive
        assert [s[2] for s in exclusive] == [0, 1]
        assert abs(exclusive[0][1] - boundary) < 0.2  # the hop is 0.75 s
        assert exclusive[0][0] == 0.0 and exclusive[-1][1] == 10.0


def test_overlap_spans_get_a_second_speaker() -> None:
    win = _two_speaker_windows(5.0, overlap=(4.5, 5.5))
    labels = (win.starts_s + 0.75 >= 5.0).astype(np.int64)
    segments, exclusive = FrameResegmenter()(win, labels)
    by_speaker = {k: [(a, b) for a, b, c in segments if c == k] for k in (0, 1)}
    assert len(by_speaker[0]) == 1 and len(by_speaker[1]) == 1
    (a0, b0), (a1, b1) = by_speaker[0][0], by_speaker[1][0]
    assert (a0, b0) == (0.0, pytest.approx(5.5, abs=0.02))
    assert (a1, b1) == (pytest.approx(4.5, abs=0.02), 10.0)
    assert sum(b - a for a, b, _ in exclusive) == pytest.approx(10.0)


def test_short_runs_join_a_neighbour() -> None:
    labels = np.array([0] * 100 + [1] * 10 + [0] * 100)
    smoothed = FrameResegmenter(min_segment_s=0.3)._smooth(labels)
    assert (smoothed == 0).all()


# ----------------------------------------------------------------------------- audio


def test_blocks_stream_the_file_as_load_reads_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(8000 * 25)).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, wav, 8000, subtype="FLOAT")
    blocks = list(_blocks(path, None, SR, block_s=10.0))
    assert len(blocks) == 3
    joined = np.concatenate(blocks)
    whole = io.load(path, SR)
    assert abs(len(joined) - len(whole)) <= 2
    n = min(len(joined), len(whole))
    assert np.abs(joined[100 : n - 100] - whole[100 : n - 100]).max() < 1e-3
    same = tmp_path / "y.wav"
    sf.write(same, wav, SR, subtype="FLOAT")
    np.testing.assert_array_equal(np.concatenate(list(_blocks(same, None, SR, 10.0))), wav)


CAMPPLUS = REPO.parent / "shared" / "models" / "campplus-zh-en-common" / "campplus_cn_en_common.pt"


@pytest.fixture(scope="module")
def default_diarizer() -> Diarizer:
    """The bundled default model (for what does not depend on the speaker model's quality)."""
    import voxvec

    return Diarizer(voxvec.load(None, "cpu", precision="float32"), activity=VadActivity("energy"))


@pytest.fixture(scope="module")
def campplus_diarizer() -> Diarizer:
    """CAM++ with the default stages (its card's clustering settings: the file has the named
    model's sha256)."""
    if not CAMPPLUS.is_file():
        pytest.skip(f"CAM++ checkpoint not found at {CAMPPLUS}")
    import voxvec

    return Diarizer(voxvec.load(CAMPPLUS, "cpu"))


def test_silence_gives_no_segments_and_no_error(default_diarizer: Diarizer, tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SR * 5, dtype=np.float32), SR)
    result = default_diarizer(path)
    assert result.segments == () and result.speakers == []
    assert result.duration_s == pytest.approx(5.0)
    assert result.to_rttm() == ""


def test_bad_files_raise_errors_naming_them(default_diarizer: Diarizer, tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(io.AudioError, match="broken.wav"):
        default_diarizer(bad)
    with pytest.raises(FileNotFoundError, match="missing.flac"):
        default_diarizer(tmp_path / "missing.flac")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(io.AudioError, match="empty.wav"):
        default_diarizer(empty)


def test_array_input_needs_its_rate(default_diarizer: Diarizer) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        default_diarizer(np.zeros(SR, dtype=np.float32))


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="hop_s"):
        DiarizeConfig(window_s=1.0, hop_s=2.0)
    with pytest.raises(ValueError, match="method"):
        VadActivity("off")


def test_stages_are_replaceable(default_diarizer: Diarizer) -> None:
    calls: list[int] = []

    def activity(wav: np.ndarray, sample_rate: int) -> Activity:
        calls.append(len(wav))
        return Activity([(SR, 3 * SR)], [])

    def clusterer(embeddings: np.ndarray, count: SpeakerCount) -> np.ndarray:
        return np.zeros(len(embeddings), dtype=np.int64)

    diarizer = Diarizer(
        default_diarizer.embedder,
        activity=activity,
        clusterer=clusterer,
        namer=lambda c: ["alice"] * len(c),
    )
    rng = np.random.default_rng(0)
    result = diarizer((0.1 * rng.standard_normal(4 * SR)).astype(np.float32), SR)
    assert calls == [4 * SR]
    assert result.segments == (Segment(1.0, 3.0, "alice"),)


# ----------------------------------------------------------------------------- real speech


def _split_speakers(prefix: str, n: int) -> dict[str, list[Path]]:
    table = REPO / "configs" / "splits" / "default" / "test.csv"
    pool: dict[str, list[Path]] = {}
    with table.open() as f:
        for row in csv.DictReader(f):
            if row["speaker"].startswith(prefix):
                pool.setdefault(row["speaker"], []).append((table.parent / row["path"]).resolve())
    return dict(sorted(pool.items())[:n])


def _conversation(
    turns: list[tuple[str, np.ndarray]], pause_s: float = 0.6
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Turns joined with pauses, and the reference: each turn from its first to its last
    speech (energy detector), the pauses within a turn part of it, as annotators mark turns."""
    parts, ref, t = [np.zeros(int(0.5 * SR), np.float32)], [], int(0.5 * SR)
    for spk, wav in turns:
        spans = speech_segments(wav, SR, "energy")
        ref.append(((t + spans[0][0]) / SR, (t + spans[-1][1]) / SR, spk))
        parts += [wav, np.zeros(int(pause_s * SR), np.float32)]
        t += len(wav) + int(pause_s * SR)
    return np.concatenate(parts), ref


def _der(ref: list[tuple[float, float, str]], hyp: Diarization, collar_s: float = 0.0) -> float:
    """DER with overlap scored; ``collar_s`` is removed on each side of reference boundaries."""
    metrics = pytest.importorskip("pyannote.metrics.diarization")
    core = pytest.importorskip("pyannote.core")

    def ann(turns: list[tuple[float, float, str]]) -> object:
        a = core.Annotation()
        for i, (s, e, spk) in enumerate(turns):
            a[core.Segment(s, e), i] = spk
        return a

    hyp_turns = [(s.start_s, s.end_s, s.speaker) for s in hyp.segments]
    metric = metrics.DiarizationErrorRate(collar=2 * collar_s)  # pyannote's is the total width
    return float(metric(ann(ref), ann(hyp_turns)))


@pytest.fixture(scope="module")
def two_speakers(shared_data: Path) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """A clear 2-speaker conversation: two held-out LibriSpeech speakers, 6 turns of 4-5 s."""
    (sa, fa), (sb, fb) = _split_speakers("ls-", 2).items()
    a, b = io.load(fa[0], SR), io.load(fb[0], SR)
    cuts = [(0, 4.5), (4.5, 9.0), (9.0, 13.0)]
    turns = []
    for lo, hi in cuts:
        turns.append((sa, a[int(lo * SR) : int(hi * SR)]))
        turns.append((sb, b[int(lo * SR) : int(hi * SR)]))
    return _conversation(turns)


def test_two_speaker_conversation_der_under_5_percent(
    campplus_diarizer: Diarizer, two_speakers: tuple[np.ndarray, list]
) -> None:
    wav, ref = two_speakers
    result = campplus_diarizer(wav, SR)
    assert result.speakers == ["SPEAKER_00", "SPEAKER_01"]
    # The reference turn edges come from an energy detector (+-0.1 s): the target is scored
    # with the usual +-0.25 s collar; without one, what remains is edge offsets (no confusion).
    assert _der(ref, result, collar_s=0.25) < 0.05
    assert _der(ref, result) < 0.08


def test_a_given_speaker_count_is_respected(
    campplus_diarizer: Diarizer, two_speakers: tuple[np.ndarray, list]
) -> None:
    wav, _ = two_speakers
    assert len(campplus_diarizer(wav, SR, num_speakers=3).speakers) == 3
    assert len(campplus_diarizer(wav, SR, num_speakers=1).speakers) == 1
    assert len(campplus_diarizer(wav, SR, min_speakers=3, max_speakers=4).speakers) >= 3


@pytest.mark.parametrize(
    "prefix",
    [
        "so-",
        "cvtw-",
        pytest.param(
            "cvfa-",
            marks=pytest.mark.xfail(
                strict=True,
                reason="known limit: 10 windows of Common Voice clips recorded apart; their "
                "centroids' cosine (0.57) is below CAM++'s merge threshold 0.60, which the two "
                "voices of a real same-room conversation (the pyannote sample: 0.56-0.61) need",
            ),
        ),
    ],
)
def test_one_speaker_gives_one_speaker(
    campplus_diarizer: Diarizer, shared_data: Path, prefix: str
) -> None:
    # Up to eight utterances of one held-out speaker (speechocean762, Common Voice Twi and
    # Persian): few windows, so the eigen-gap over-splits them; the centroid merge joins them.
    ((spk, files),) = _split_speakers(prefix, 1).items()
    wav, _ = _conversation([(spk, io.load(f, SR)) for f in files[:8]], pause_s=0.4)
    assert len(wav) > 15 * SR
    result = campplus_diarizer(wav, SR)
    assert result.speakers == ["SPEAKER_00"]


def test_the_default_model_has_its_own_settings(default_diarizer: Diarizer) -> None:
    card = default_diarizer.embedder.card
    assert "spectral" in card.get(DIARIZATION_CARD_KEY, {}), (
        "the bundled default model has no diarization settings: "
        "python bench/diarize_tune.py --model voxvec-default"
    )
    assert default_diarizer.clusterer == SpectralClusterer.from_card(card)
