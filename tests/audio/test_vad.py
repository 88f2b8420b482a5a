"""Tests for voxvec.audio.vad: speech kept, inserted silence and noise dropped (both methods)."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from voxvec.audio import vad
from voxvec.audio.io import AudioError, load, resample
from voxvec.audio.vad import speech_segments, trim_silence


def needs(method: str) -> None:
    if method == "silero":
        pytest.importorskip("silero_vad")


METHODS = ["energy", "silero"]


def noise_at(n_samples: int, level_dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n_samples) * 10 ** (level_dbfs / 20)).astype(np.float32)


def scale_to(wav: np.ndarray, level_dbfs: float) -> np.ndarray:
    return (wav / np.sqrt(np.mean(wav.astype(np.float64) ** 2)) * 10 ** (level_dbfs / 20)).astype(
        np.float32
    )


def kept_mask(n_samples: int, segments: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(n_samples, dtype=bool)
    for start, end in segments:
        mask[start:end] = True
    return mask


def check_segments(segments: list[tuple[int, int]], n_samples: int) -> None:
    for start, end in segments:
        assert isinstance(start, int) and isinstance(end, int)
        assert 0 <= start < end <= n_samples
    for (_, end), (start, _) in itertools.pairwise(segments):
        assert end < start  # sorted, disjoint, not touching


def speech_files(root: Path, corpus: str, n: int) -> list[Path]:
    with open(root / corpus / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [root / corpus / row["path"] for row in rows[:n]]


def with_inserted_silence(
    shared_data: Path, corpus: str, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Three real utterances separated by 10 s of digital silence, 10 s of white noise at
    -60 dBFS and 10 s of real background noise (boiler) at -50 dBFS; silence at both ends.

    Returns the signal and a mask of where the utterances are.
    """
    speech = [load(p, sample_rate) for p in speech_files(shared_data, corpus, 3)]
    gap = 10 * sample_rate
    boiler = scale_to(load(shared_data / "noise" / "boiler.flac", sample_rate)[:gap], -50.0)
    parts = [
        (np.zeros(gap, np.float32), False),
        (speech[0], True),
        (np.zeros(gap, np.float32), False),
        (speech[1], True),
        (noise_at(gap, -60.0), False),
        (speech[2], True),
        (boiler, False),
    ]
    wav = np.concatenate([p for p, _ in parts])
    is_speech = np.concatenate([np.full(len(p), s) for p, s in parts])
    return wav, is_speech


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("corpus", "sample_rate"),
    [("speechocean762", 16000), ("speechocean762", 22050), ("free-spoken-digits", 8000)],
)
def test_real_speech_with_inserted_silence(
    shared_data: Path, method: str, corpus: str, sample_rate: int
) -> None:
    needs(method)
    wav, is_speech = with_inserted_silence(shared_data, corpus, sample_rate)
    segments = speech_segments(wav, sample_rate, method)
    check_segments(segments, len(wav))
    kept = kept_mask(len(wav), segments)
    energy = wav.astype(np.float64) ** 2
    # Nearly all speech kept (the utterances include their own short leading/trailing pauses).
    assert energy[is_speech & kept].sum() / energy[is_speech].sum() > 0.99
    # Nearly all of the 30 s inserted dropped (what remains is context padding at the edges).
    assert kept[~is_speech].mean() < 0.04

    trimmed = trim_silence(wav, sample_rate, method)
    assert trimmed.dtype == np.float32
    np.testing.assert_array_equal(trimmed, wav[kept])


@pytest.mark.parametrize("method", METHODS)
def test_silence_and_low_noise_give_no_segments(method: str) -> None:
    needs(method)
    for sample_rate in (8000, 16000, 44100):
        n = 5 * sample_rate
        assert speech_segments(np.zeros(n, np.float32), sample_rate, method) == []
        assert speech_segments(noise_at(n, -65.0), sample_rate, method) == []
        assert trim_silence(np.zeros(n, np.float32), sample_rate, method).shape == (0,)
    assert speech_segments(np.zeros(0, np.float32), 16000, method) == []


@pytest.mark.parametrize("method", METHODS)
def test_real_speech_alone_is_mostly_kept(shared_data: Path, method: str) -> None:
    needs(method)
    for path in speech_files(shared_data, "free-spoken-digits", 2) + speech_files(
        shared_data, "speechocean762", 2
    ):
        wav = load(path, 16000)
        kept = kept_mask(len(wav), speech_segments(wav, 16000, method))
        energy = wav.astype(np.float64) ** 2
        assert energy[kept].sum() / energy.sum() > 0.99, path.name


def test_energy_bursts_padding_bridging_and_clicks() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    burst = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)  # 1 s tone
    wav = np.zeros(8 * sr, np.float32)
    wav[sr : 2 * sr] = burst  # 1 s burst
    wav[2 * sr + 1600 : 3 * sr] = burst[: sr - 1600]  # after a 100 ms pause: bridged
    wav[5 * sr : 5 * sr + 160] = 0.5  # a 10 ms click: dropped
    wav[6 * sr : 7 * sr] = burst  # second burst after 3 s of silence
    wav += noise_at(len(wav), -70.0)
    segments = speech_segments(wav, sr, "energy")
    assert len(segments) == 2
    (s1, e1), (s2, e2) = segments
    pad = sr // 10  # 100 ms of context on each side; frames add at most 25 ms
    assert sr - pad - 400 <= s1 <= sr - pad + 10
    assert 3 * sr + pad - 10 <= e1 <= 3 * sr + pad + 400
    assert 6 * sr - pad - 400 <= s2 <= 6 * sr - pad + 10
    assert 7 * sr + pad - 10 <= e2 <= 7 * sr + pad + 400


def test_energy_keeps_quiet_but_clean_recording() -> None:
    sr = 8000
    t = np.arange(2 * sr) / sr
    quiet = (10 ** (-40 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    wav = np.concatenate([np.zeros(sr, np.float32), quiet, np.zeros(sr, np.float32)])
    segments = speech_segments(wav, sr, "energy")
    assert len(segments) == 1
    start, end = segments[0]
    assert start <= sr and end >= 3 * sr


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="unknown VAD method 'webrtc'"):
        speech_segments(np.zeros(100, np.float32), 16000, "webrtc")
    with pytest.raises(ValueError, match="shape"):
        speech_segments(np.zeros((2, 100), np.float32), 16000, "energy")
    with pytest.raises(ValueError, match="sample_rate"):
        speech_segments(np.zeros(100, np.float32), 0, "energy")
    bad = np.zeros(1000, np.float32)
    bad[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        trim_silence(bad, 16000, "energy")


def test_auto_falls_back_to_energy(monkeypatch: pytest.MonkeyPatch) -> None:
    sr = 16000
    wav = np.concatenate([np.zeros(sr), 0.3 * np.sin(np.arange(sr) / 5.0), np.zeros(sr)])
    wav = wav.astype(np.float32)
    expected = speech_segments(wav, sr, "energy")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "silero_vad" else real_find_spec(name, *a),
    )
    assert speech_segments(wav, sr, "auto") == expected


def test_silero_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    vad._silero.cache_clear()
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # makes the import fail
    try:
        with pytest.raises(ImportError, match=r"pip install 'voxvec\[vad\]'"):
            speech_segments(np.zeros(16000, np.float32), 16000, "silero")
    finally:
        vad._silero.cache_clear()


def test_silero_import_keeps_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("silero_vad")
    for name in [m for m in sys.modules if m == "silero_vad" or m.startswith("silero_vad.")]:
        monkeypatch.delitem(sys.modules, name)  # import it afresh
    vad._silero.cache_clear()
    before = torch.get_num_threads()
    try:
        speech_segments(noise_at(16000, -30.0), 16000, "silero")
        assert torch.get_num_threads() == before
    finally:
        vad._silero.cache_clear()
        torch.set_num_threads(before)


def test_off_keeps_everything() -> None:
    wav = np.zeros(1600, np.float32)
    assert speech_segments(wav, 16000, "off") == [(0, 1600)]
    assert trim_silence(wav, 16000, "off").shape == (1600,)
    assert speech_segments(np.zeros(0, np.float32), 16000, "off") == []


def test_resolve_method_says_what_runs_and_checks_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert vad.resolve_method("off") == "off" and vad.resolve_method("energy") == "energy"
    installed = importlib.util.find_spec("silero_vad") is not None
    assert vad.resolve_method("auto") == ("silero" if installed else "energy")
    with pytest.raises(ValueError, match="unknown VAD method 'webrtc'"):
        vad.resolve_method("webrtc")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "silero_vad" else real_find_spec(name, *a),
    )
    assert vad.resolve_method("auto") == "energy"
    with pytest.raises(ImportError, match=r"pip install 'voxvec\[vad\]'"):
        vad.resolve_method("silero")


@pytest.fixture(scope="module")
def an_hour_of_varying_noise() -> np.ndarray:
    """An hour at 16 kHz of noise whose level changes every 0.25 s: it may be speech."""
    rng = np.random.default_rng(0)
    n = 16000 * 3600
    gain = np.repeat(rng.uniform(0.05, 1.0, n // 4000), 4000).astype(np.float32)
    return 0.1 * rng.standard_normal(n, dtype=np.float32) * gain


def peak_traced_bytes(run: Callable[[], object]) -> tuple[object, int]:
    """What ``run()`` returns and the peak of the memory it allocated (tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def test_the_speech_check_needs_little_memory_beyond_the_waveform(
    an_hour_of_varying_noise: np.ndarray,
) -> None:
    """An hour of audio is checked in blocks of frames: no float64 copy of the whole input."""
    wav = an_hour_of_varying_noise
    reason, peak = peak_traced_bytes(lambda: vad.non_speech_reason(wav, 16000))
    assert reason is None
    assert peak < 0.1 * wav.nbytes, f"{peak / 2**20:.0f} MiB for {wav.nbytes / 2**20:.0f} MiB"


def test_the_energy_detector_needs_little_memory_beyond_the_waveform(
    an_hour_of_varying_noise: np.ndarray,
) -> None:
    """The energy detector's running sums go a chunk of frames at a time (they took 1.8x the
    waveform's bytes for an hour, 8x for 10 minutes)."""
    wav = an_hour_of_varying_noise
    segments, peak = peak_traced_bytes(lambda: speech_segments(wav, 16000, "energy"))
    assert segments
    assert peak < 0.1 * wav.nbytes, f"{peak / 2**20:.0f} MiB for {wav.nbytes / 2**20:.0f} MiB"


def levels_one_running_sum_per_block(
    wav: np.ndarray, frame: int, hop: int, block_frames: int
) -> np.ndarray:
    """The energy detector's frame levels as it computed them before it went in chunks: one
    running sum over each whole block of frames."""
    n_frames = (wav.size - frame) // hop + 1
    levels = []
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        x = wav[first * hop : (first + count - 1) * hop + frame].astype(np.float64)
        s1 = np.concatenate([[0.0], np.cumsum(x)])
        s2 = np.concatenate([[0.0], np.cumsum(x * x)])
        starts = np.arange(count) * hop
        mean = (s1[starts + frame] - s1[starts]) / frame
        power = (s2[starts + frame] - s2[starts]) / frame - mean * mean
        levels.append(10.0 * np.log10(np.maximum(power, 1e-10)))
    return np.concatenate(levels)


@pytest.mark.parametrize(
    ("block_frames", "chunk_frames"), [(1 << 16, 1 << 10), (1 << 12, 1 << 8), (1 << 10, 1 << 10)]
)
@pytest.mark.parametrize("rate", [16000, 22050])
def test_energy_levels_in_chunks_are_those_of_whole_blocks_bit_for_bit(
    shared_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    block_frames: int,
    chunk_frames: int,
    rate: int,
) -> None:
    """Real speech (70 s: several blocks and chunks) gets exactly the levels, so the segments,
    of one running sum per block."""
    files = speech_files(shared_data, "librispeech-train-clean-100-sample", 5)
    wav = np.concatenate([load(path, rate) for path in files])
    monkeypatch.setattr(vad, "_LEVEL_BLOCK_FRAMES", block_frames)
    monkeypatch.setattr(vad, "_LEVEL_CHUNK_FRAMES", chunk_frames)
    frame, hop = vad._ms(25.0, rate), vad._ms(10.0, rate)
    expected = levels_one_running_sum_per_block(wav, frame, hop, block_frames)
    assert expected.size > 6 * chunk_frames  # 6,250 frames at 16 kHz: chunks and blocks
    assert np.array_equal(vad._frame_levels_db(wav, frame, hop), expected)


@pytest.mark.parametrize("rate", [1000, 8000, 22050, 44100, 48000])
@pytest.mark.parametrize("amplitude", [1.0, 0.3, 0.05])
def test_the_speech_check_calls_resampling_ringing_silence(rate: int, amplitude: float) -> None:
    """A DC offset, or a tone above 8 kHz, resampled to 16 kHz is silence but for ringing at
    the ends (up to 44 ms from a 1 kHz source): the check leaves the ends out."""
    t = np.arange(2 * rate) / rate
    sources = [np.full(t.size, amplitude)]
    if rate > 2 * 8500:
        sources.append(amplitude * np.sin(2 * np.pi * 0.45 * rate * t))
    for source in sources:
        wav = resample(source.astype(np.float32), rate, 16000)
        assert (np.abs(wav[:800] - wav[16000]) > 1e-3).any()  # it rings at the start
        assert vad.non_speech_reason(wav, 16000) == "silence (nothing above -55 dBFS)"


@pytest.mark.parametrize("seed", range(4))
def test_the_speech_check_calls_clicks_in_silence_silence(seed: int) -> None:
    rng = np.random.default_rng(seed)
    wav = np.zeros(3 * 16000, np.float32)
    wav[rng.integers(0, wav.size, 12)] = rng.uniform(-1, 1, 12)
    reason = vad.non_speech_reason(wav, 16000)
    assert reason == "silence (nothing above -55 dBFS, but for clicks)"


@pytest.mark.parametrize("rate", [8000, 11025, 12000])
@pytest.mark.parametrize("seed", range(5))
def test_the_speech_check_judges_narrow_band_noise_over_its_band(rate: int, seed: int) -> None:
    """White noise at 8-12 kHz resampled to 16 kHz fills part of the band: its 25 ms frame
    levels spread by 0.4-0.5 dB, near the whole band's limit of 0.5 dB; its own limit is
    higher."""
    noise = resample(noise_at(2 * rate, -40.0, seed), rate, 16000)
    reason = vad.non_speech_reason(noise, 16000)
    assert reason is not None and reason.startswith("a steady signal"), reason
    limit = float(reason.split(" dB limit")[0].split()[-1])
    assert 0.5 < limit < 0.75


def test_the_speech_check_passes_narrow_band_and_clicky_real_speech(shared_data: Path) -> None:
    """The 8 kHz digits of the speaker whose levels vary least pass the check (the closest to
    its limit of all 18,240 files of ../shared/data: bench/speech_check.py), and so does an
    utterance with clicks added in its pauses."""
    folder = shared_data / "free-spoken-digits" / "audio" / "theo"
    files = sorted(folder.glob("*.flac"))
    if len(files) < 500:
        pytest.skip(f"free-spoken-digits speaker 'theo' not found in {folder}")
    refused = {f.name: r for f in files if (r := vad.non_speech_reason(load(f, 16000), 16000))}
    assert refused == {}
    speech = load(speech_files(shared_data, "speechocean762", 1)[0], 16000)
    speech[:: len(speech) // 7] = 1.0
    assert vad.non_speech_reason(speech, 16000) is None


def test_the_speech_check_skips_the_spectrum_when_any_band_would_pass(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steady limit is at most 1 dB (the narrowest band counted, a quarter): a level spread
    above it passes whatever the band, so real speech is judged without the spectrum, and a
    steady signal still gets it."""
    calls: list[int] = []
    band = vad._occupied_band
    monkeypatch.setattr(vad, "_occupied_band", lambda *a: calls.append(1) or band(*a))
    for path in speech_files(shared_data, "speechocean762", 3):
        assert vad.non_speech_reason(load(path, 16000), 16000) is None
    assert calls == []
    reason = vad.non_speech_reason(noise_at(2 * 16000, -40.0, 0), 16000)
    assert reason is not None and reason.startswith("a steady signal")
    assert calls == [1]
