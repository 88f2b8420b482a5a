"""Tests for voxvec.audio.io: decoding, PCM scaling, downmixing, resampling and errors."""

from __future__ import annotations

import csv
import logging
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxvec.audio.io import (
    AUDIO_EXTENSIONS,
    AudioError,
    check_rate,
    check_waveform,
    find_audio_files,
    load,
    read,
    resample,
)


def tone(freq_hz: float, sample_rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def peak_hz(wav: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sample_rate)[np.argmax(spectrum)])


def rms(wav: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))


def write_pcm_wav(path: Path, frames: np.ndarray, sample_width: int, sample_rate: int) -> None:
    """Write integer PCM with the stdlib ``wave`` module (independent of soundfile)."""
    frames = np.atleast_2d(frames.T).T  # (T, C)
    if sample_width == 3:
        little = frames.astype("<i4").reshape(-1, 1).view(np.uint8)[:, :3]
        raw = little.tobytes()
    else:
        dtype = {1: np.uint8, 2: "<i2", 4: "<i4"}[sample_width]
        raw = frames.astype(dtype).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(sample_width)
        w.setframerate(sample_rate)
        w.writeframes(raw)


# --------------------------------------------------------------------------- formats


LOSSLESS = [
    ("wav", "WAV", "PCM_16"),
    ("wav", "WAV", "PCM_24"),
    ("wav", "WAV", "PCM_32"),
    ("wav", "WAV", "FLOAT"),
    ("flac", "FLAC", "PCM_16"),
    ("flac", "FLAC", "PCM_24"),
]


@pytest.mark.parametrize(("ext", "fmt", "subtype"), LOSSLESS)
def test_lossless_formats_roundtrip(tmp_path: Path, ext: str, fmt: str, subtype: str) -> None:
    wav = tone(440, 16000)
    path = tmp_path / f"x.{ext}"
    sf.write(path, wav, 16000, format=fmt, subtype=subtype)
    out, sr = read(path)
    assert sr == 16000
    assert out.dtype == np.float32 and out.shape == wav.shape
    np.testing.assert_allclose(out, wav, atol=1 / 2**15)


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype", "sample_rate"),
    [
        ("ogg", "OGG", "VORBIS", 44100),
        ("opus", "OGG", "OPUS", 48000),
        ("ogg", "OGG", "OPUS", 16000),
        ("mp3", "MP3", "MPEG_LAYER_III", 22050),
    ],
)
def test_lossy_formats_decode(
    tmp_path: Path, ext: str, fmt: str, subtype: str, sample_rate: int
) -> None:
    wav = tone(440, sample_rate, seconds=1.0, amp=0.3)
    path = tmp_path / f"x.{ext}"
    sf.write(path, wav, sample_rate, format=fmt, subtype=subtype)
    out = load(path, 16000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 16000) < 0.1 * 16000  # codec delay/padding only
    assert abs(peak_hz(out, 16000) - 440) < 5
    assert abs(20 * np.log10(rms(out) / rms(wav))) < 1.0


# --------------------------------------------------------------------------- PCM scaling


@pytest.mark.parametrize(
    ("width", "lo", "hi"), [(2, -(2**15), 2**15), (3, -(2**23), 2**23), (4, -(2**31), 2**31)]
)
def test_signed_pcm_scaled_by_bit_depth(tmp_path: Path, width: int, lo: int, hi: int) -> None:
    rng = np.random.default_rng(width)
    ints = np.concatenate([[lo, hi - 1, 0, -1, 1], rng.integers(lo, hi, 1000)]).astype(np.int64)
    path = tmp_path / f"pcm{8 * width}.wav"
    write_pcm_wav(path, ints, width, 16000)
    out, sr = read(path)
    assert sr == 16000
    expected = ints / float(hi)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)
    assert out[0] == -1.0 and out.max() <= 1.0  # (2**31 - 1) / 2**31 rounds to 1 in float32


def test_unsigned_8bit_pcm(tmp_path: Path) -> None:
    ints = np.array([0, 128, 255, 64], dtype=np.int64)
    path = tmp_path / "u8.wav"
    write_pcm_wav(path, ints, 1, 8000)
    out, _ = read(path)
    np.testing.assert_allclose(out, (ints - 128) / 128.0, atol=1e-7)


def test_check_waveform_scales_int_pcm_arrays() -> None:
    np.testing.assert_allclose(
        check_waveform(np.array([-32768, 0, 16384], np.int16), "x"), [-1.0, 0.0, 0.5]
    )
    np.testing.assert_allclose(
        check_waveform(np.array([-(2**31), 2**30], np.int32), "x"), [-1.0, 0.5]
    )
    with pytest.raises(AudioError, match="int64"):
        check_waveform(np.array([1, 2, 3]), "input[0]")


# --------------------------------------------------------------------------- channels and rates


def test_multichannel_is_averaged(tmp_path: Path) -> None:
    left, right = tone(440, 16000, amp=0.4), tone(1000, 16000, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    out, _ = read(path)
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-7)

    six = np.stack([tone(100 * (c + 1), 8000, amp=0.1) for c in range(6)], axis=1)
    path6 = tmp_path / "six.flac"
    sf.write(path6, six, 8000, subtype="PCM_24")
    out6, sr6 = read(path6)
    assert sr6 == 8000
    np.testing.assert_allclose(out6, six.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize(
    ("orig", "target"),
    [(8000, 16000), (48000, 16000), (44100, 22050), (16000, 22050), (22050, 16000)],
)
def test_load_resamples(tmp_path: Path, orig: int, target: int) -> None:
    wav = tone(440, orig, seconds=2.0)
    path = tmp_path / "x.wav"
    sf.write(path, wav, orig, subtype="PCM_16")
    out = load(path, target)
    assert out.dtype == np.float32
    assert abs(len(out) - round(len(wav) * target / orig)) <= 1
    assert abs(peak_hz(out, target) - 440) < 2
    reference = tone(440, target, seconds=2.0)[: len(out)]
    middle = slice(target // 10, len(out) - target // 10)  # away from the filter's edge effects
    np.testing.assert_allclose(out[middle], reference[middle], atol=2e-3)


def test_resample_identity_and_antialiasing() -> None:
    wav = tone(440, 16000)
    assert resample(wav, 16000, 16000) is wav
    # 10 kHz is above the 8 kHz Nyquist of 16 kHz: a good resampler removes it.
    high = tone(10000, 48000, amp=0.5)
    down = resample(high, 48000, 16000)
    assert 20 * np.log10(rms(down[1000:-1000]) / rms(high)) < -80
    assert resample(np.zeros(0, np.float32), 8000, 16000).shape == (0,)
    with pytest.raises(ValueError, match="target_sr"):
        resample(wav, 16000, 0)
    with pytest.raises(ValueError, match="mono"):
        resample(np.zeros((10, 2), np.float32), 16000, 8000)


def test_load_output_in_range(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "full_scale.wav"
    sf.write(path, np.sign(tone(300, 8000, amp=1.0)), 8000, subtype="PCM_16")  # square wave
    out = load(path, 16000)  # resampling a square wave overshoots (Gibbs)
    assert np.abs(out).max() <= 1.0

    hot = tmp_path / "hot_float.wav"
    sf.write(hot, 4.0 * tone(300, 16000), 16000, subtype="FLOAT")  # peak 2.0
    with caplog.at_level(logging.WARNING, logger="voxvec.audio.io"):
        out = load(hot, 16000)
    assert "hot_float.wav" in caplog.text
    np.testing.assert_allclose(np.abs(out).max(), 1.0, atol=1e-6)
    np.testing.assert_allclose(out, tone(300, 16000) / 0.5, atol=1e-6)


def test_reexported_from_package() -> None:
    from voxvec.audio import AudioError as ReExportedError
    from voxvec.audio import load as reexported

    assert reexported is load and ReExportedError is AudioError
    assert issubclass(AudioError, ValueError)


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load(path, 16000)


def test_directory_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not a regular file"):
        read(tmp_path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("garbage.wav", b"RIFF\x00\x00\x00\x00WAVEjunk" * 20),
        ("random.flac", np.random.default_rng(0).bytes(4096)),
        ("random.mp3", np.random.default_rng(1).bytes(4096)),
        ("empty.wav", b""),
    ],
)
def test_corrupt_or_empty_file(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError, match=name) as info:
        read(path)
    assert "cannot decode" in str(info.value)


def test_truncated_flac(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="cut.flac"):
        read(path)


def test_unsupported_container_suggests_conversion(tmp_path: Path) -> None:
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    with pytest.raises(AudioError, match="voice.m4a") as info:
        load(path, 16000)
    message = str(info.value)
    assert ".m4a files are not supported" in message and "ffmpeg" in message


def test_zero_length_audio(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"zero\.wav.*zero-length"):
        read(path)


def test_audio_too_short_to_resample_is_refused(tmp_path: Path) -> None:
    """3 samples at 192 kHz are none at 8 kHz: an error, never an empty waveform (found by
    tests/audio/test_fuzz_io.py)."""
    path = tmp_path / "blip.wav"
    sf.write(path, np.full(3, 0.5, np.float32), 192000)
    with pytest.raises(AudioError, match=r"blip\.wav' is too short: its 3 samples at 192000 Hz"):
        load(path, 8000)
    assert len(load(path, 192000)) == 3


def test_samples_near_the_float32_maximum_never_give_nan(tmp_path: Path) -> None:
    """Their channel mean stays finite, and resampling them (which overflowed to NaN that
    load returned) is refused (found by tests/audio/test_fuzz_io.py)."""
    frames = np.full((1000, 2), 3e38, np.float32)
    frames[::2] *= -1
    path = tmp_path / "huge.wav"
    sf.write(path, frames, 16000, subtype="FLOAT")
    wav = load(path, 16000)
    assert np.isfinite(wav).all() and np.abs(wav).max() == 1.0
    with pytest.raises(
        AudioError, match=r"huge\.wav': samples reach 3e\+38, too large to resample"
    ):
        load(path, 8000)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    wav = tone(440, 16000)
    wav[1234] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, wav, 16000, subtype="FLOAT")
    with pytest.raises(
        AudioError, match=r"bad\.wav.*NaN or infinite samples \(first at sample 1234\)"
    ):
        load(path, 16000)


def test_check_waveform_errors() -> None:
    assert check_waveform(np.zeros(3, np.float64), "x").dtype == np.float32
    with pytest.raises(AudioError, match="input 7.*shape"):
        check_waveform(np.zeros((2, 3), np.float32), "input 7")
    with pytest.raises(AudioError, match="input 7.*empty"):
        check_waveform(np.zeros(0, np.float32), "input 7")
    with pytest.raises(AudioError, match="input 7.*first at sample 2"):
        check_waveform(np.array([0.0, 0.1, np.nan], np.float32), "input 7")


# --------------------------------------------------------------------------- real files


def first_path(corpus: Path) -> Path:
    with open(corpus / "manifest.csv", newline="") as f:
        return corpus / next(csv.DictReader(f))["path"]


@pytest.mark.parametrize(
    ("corpus", "native_rate"),
    [
        ("speechocean762", 16000),
        ("librispeech-train-clean-100-sample", 16000),
        ("free-spoken-digits", 8000),
    ],
)
def test_real_files(shared_data: Path, corpus: str, native_rate: int) -> None:
    path = first_path(shared_data / corpus)
    wav, sr = read(path)
    assert sr == native_rate
    assert wav.dtype == np.float32 and wav.ndim == 1 and len(wav) > sr // 4
    assert np.abs(wav).max() <= 1.0 and rms(wav) > 1e-3
    out = load(path, 22050)
    assert abs(len(out) - round(len(wav) * 22050 / sr)) <= 1
    assert abs(20 * np.log10(rms(out) / rms(wav))) < 0.5


def test_real_pcm16_flac_scaling(shared_data: Path) -> None:
    path = first_path(shared_data / "free-spoken-digits")
    assert sf.info(str(path)).subtype == "PCM_16"
    wav, _ = read(path)
    scaled = wav.astype(np.float64) * 2**15
    np.testing.assert_array_equal(scaled, np.round(scaled))


def test_find_audio_files_recursive_sorted_visible_only(tmp_path: Path) -> None:
    for name in ("b/x.FLAC", "a.wav", "b/c/y.mp3", "b/c/d/z.opus", "notes.txt", "a.wav.bak",
                 ".hidden.wav", ".cache/w.wav", "b/.git/v.ogg", "m.m4a"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in find_audio_files(tmp_path)]
    assert found == ["a.wav", "b/c/d/z.opus", "b/c/y.mp3", "b/x.FLAC"]
    assert find_audio_files(tmp_path, recursive=False) == [tmp_path / "a.wav"]
    assert find_audio_files(tmp_path / "b", (".FLAC", ".m4a")) == [tmp_path / "b" / "x.FLAC"]
    assert find_audio_files(tmp_path / "missing") == []
    assert set(AUDIO_EXTENSIONS) == {".wav", ".flac", ".ogg", ".opus", ".mp3"}


def test_implausible_header_rates_are_refused_before_decoding(tmp_path: Path) -> None:
    """A 10 KB WAV whose header says 1 Hz would be upsampled 16,000 times: refuse it."""
    path = tmp_path / "one_hz.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(1)
        w.writeframes(np.zeros(5000, np.int16).tobytes())
    with pytest.raises(AudioError, match=r"one_hz\.wav.*header is implausible.*got 1\b"):
        load(path, 16000)


@pytest.mark.parametrize(
    "rate", [0, -16000, 1, 999, 2_000_000, 16000.5, float("nan"), float("inf"), "16000", True]
)
def test_check_rate_refuses_what_is_not_a_sample_rate(rate: object) -> None:
    with pytest.raises(
        ValueError, match=r"sample_rate must be an integer number of Hz in \[1000, "
    ):
        check_rate(rate)


def test_check_rate_accepts_integer_valued_numbers() -> None:
    assert check_rate(16000) == check_rate(16000.0) == check_rate(np.int64(16000)) == 16000
    assert isinstance(check_rate(np.float32(8000)), int)


def test_decoding_memory_is_the_result_plus_one_block(tmp_path: Path) -> None:
    """A long 48 kHz stereo file is downmixed and resampled block by block: peak memory is about
    the 16 kHz mono result, not the decoded file (6x larger)."""
    import tracemalloc

    sr, seconds = 48000, 60
    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((sr * seconds, 2))).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, stereo, sr, subtype="FLOAT")
    decoded_bytes = stereo.nbytes
    expected = load(path, 16000)
    result_bytes = expected.nbytes
    del stereo
    tracemalloc.start()
    try:
        wav = load(path, 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(wav, expected)
    assert len(wav) == 16000 * seconds
    assert peak < result_bytes + decoded_bytes / 4, (peak, result_bytes, decoded_bytes)


def with_flac_length(path: Path, n_frames: int) -> None:
    """Rewrite the 36-bit total-frame count in a FLAC's STREAMINFO (0 means "unknown", as in a
    streamed recording)."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO is the first block
    field = int.from_bytes(data[21:26], "big") & ~((1 << 36) - 1)
    data[21:26] = (field | n_frames).to_bytes(5, "big")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("channels", "target"), [(1, 16000), (2, 8000)])
def test_a_flac_whose_header_gives_no_length_decodes_whole(
    tmp_path: Path, channels: int, target: int
) -> None:
    """libsndfile reports such a file as 2**63 - 1 frames long; it used to fail with numpy's
    'Maximum allowed dimension exceeded', naming no file."""
    rng = np.random.default_rng(0)
    frames = (0.1 * rng.standard_normal((300_001, channels))).astype(np.float32)
    path = tmp_path / "streamed.flac"
    sf.write(path, frames, 16000)
    expected = load(path, target)
    with_flac_length(path, 0)
    with sf.SoundFile(path) as f:
        assert f.frames >= 2**62
    np.testing.assert_array_equal(load(path, target), expected)
    np.testing.assert_array_equal(read(path)[0], read(path)[0])
    assert len(read(path)[0]) == 300_001


@pytest.mark.parametrize("claimed", [500_000, (1 << 36) - 1])
def test_a_flac_shorter_than_its_header_is_refused_without_allocating_the_claim(
    tmp_path: Path, claimed: int
) -> None:
    """A 36-bit count can claim 2**36 frames (256 GiB of float32): the output is sized by the
    file, and the file is reported truncated instead of padded or a MemoryError."""
    import tracemalloc

    path = tmp_path / "liar.flac"
    sf.write(path, np.zeros(20_000, np.float32), 16000)
    with_flac_length(path, claimed)
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=rf"liar\.flac' is truncated.*gives {claimed} frames"):
            load(path, 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak


def test_a_truncated_mp3_gives_what_decodes_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MP3 lengths may be estimates, so a short decode is used (with a warning), never padded
    with stale samples up to the header's count."""
    path = tmp_path / "cut.mp3"
    sf.write(path, tone(440, 16000, seconds=3.0), 16000, format="MP3")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="voxvec.audio.io"):
        wav, _ = read(path)
    assert "cut.mp3': its header gives 48000 frames" in caplog.text
    assert 16000 < len(wav) < 32000
    assert peak_hz(wav[2000:-2000], 16000) == pytest.approx(440, abs=5)
