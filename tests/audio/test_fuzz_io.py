"""Fuzz tests of voxvec.audio.io.load: hostile bytes in, a waveform or an AudioError out.

Every case decodes in a forked child with a time limit, so a crash of the decoder (a signal) or
a hang is reported as such, with the example that caused it, instead of killing the test run.
The only outcomes allowed are a finite float32 ``(T,)`` waveform in [-1, 1] of plausible length
or an :class:`~voxvec.audio.io.AudioError` naming the file; peak memory above what the process
held before decoding stays bounded. ``-m slow`` runs each property on many more examples.
"""

from __future__ import annotations

import io as stdlib_io
import multiprocessing
import os
import struct
import tracemalloc
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from voxvec.audio.io import MIN_SAMPLE_RATE, AudioError, load

SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
TARGET_RATES = st.sampled_from([8000, 16000, 22050, 48000])
CHILD_TIMEOUT_S = 60.0  # a busy 2-core machine: generous, a hang still fails
MEMORY_LIMIT_BYTES = 256 * 2**20  # above the RSS at the start of decoding, for files of <= 64 KB

DEFAULT = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MANY = settings(DEFAULT, max_examples=1000)


@dataclass(frozen=True)
class Outcome:
    """What decoding a file in a child process gave."""

    kind: str  # "ok", "error" (an exception), "crash" (a signal) or "hang"
    error_type: str = ""
    message: str = ""
    dtype: str = ""
    shape: tuple[int, ...] = ()
    finite: bool = False
    peak: float = 0.0
    traced_bytes: int = 0  # numpy/Python allocations at their peak (tracemalloc)
    rss_growth_bytes: int = 0  # the process's peak RSS over its RSS before decoding


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _child(conn: multiprocessing.connection.Connection, path: str, sample_rate: int) -> None:
    rss_kb = _status_kb("VmRSS")  # the peak (VmHWM) starts here in a forked child
    tracemalloc.start()
    try:
        wav = load(path, sample_rate)
    except Exception as e:  # noqa: BLE001 - the type is the point of the test
        outcome = Outcome("error", type(e).__name__, str(e))
    else:
        outcome = Outcome(
            "ok",
            dtype=str(wav.dtype),
            shape=tuple(wav.shape),
            finite=bool(np.isfinite(wav).all()),
            peak=float(np.abs(wav).max()) if wav.size else 0.0,
        )
    _, traced = tracemalloc.get_traced_memory()
    growth = (_status_kb("VmHWM") - rss_kb) * 1024
    conn.send(replace(outcome, traced_bytes=traced, rss_growth_bytes=growth))
    conn.close()
    os._exit(0)


def decode_in_child(path: Path, sample_rate: int) -> Outcome:
    """``load(path, sample_rate)`` in a forked process: a decoder crash or hang cannot take the
    test run with it."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, str(path), sample_rate))
    process.start()
    send.close()
    try:
        if not receive.poll(CHILD_TIMEOUT_S):
            process.kill()
            return Outcome("hang")
        return receive.recv()
    except EOFError:  # the child died without answering
        process.join()
        return Outcome("crash", message=f"exit code {process.exitcode}")
    finally:
        process.join(5)
        receive.close()


def check_outcome(outcome: Outcome, path: Path, sample_rate: int, max_seconds: float) -> None:
    """The contract: a valid waveform, or an AudioError naming the file; memory bounded."""
    assert outcome.kind in ("ok", "error"), f"{path.name}: decoder {outcome.kind} {outcome.message}"
    event(outcome.kind)  # --hypothesis-show-statistics: how many cases decoded
    if outcome.kind == "error":
        assert outcome.error_type == "AudioError", (outcome.error_type, outcome.message)
        assert str(path) in outcome.message, outcome.message
    else:
        assert outcome.dtype == "float32" and len(outcome.shape) == 1 and outcome.shape[0] > 0
        assert outcome.finite and outcome.peak <= 1.0, outcome
        assert outcome.shape[0] <= max_seconds * sample_rate + 64, outcome
    assert outcome.traced_bytes < MEMORY_LIMIT_BYTES, outcome
    assert outcome.rss_growth_bytes < MEMORY_LIMIT_BYTES, outcome


def _max_seconds(content: bytes) -> float:
    """A bound on the seconds ``content`` can honestly hold: no format packs 4096 frames into
    a byte (Ogg Opus's 1-byte silent packets come nearest), at the lowest rate accepted."""
    return (len(content) * 4096 + 4096) / MIN_SAMPLE_RATE


def encoded(fmt: str, subtype: str, sample_rate: int, channels: int) -> bytes:
    """A short tone with noise encoded by libsndfile (never digital silence: its Vorbis
    encoder crashes on that)."""
    rng = np.random.default_rng(0)
    t = np.arange(sample_rate // 2) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * 330 * t)[:, None] + 0.05 * rng.standard_normal(
        (len(t), channels)
    )
    buffer = stdlib_io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


ORIGINALS = {
    "pcm16.wav": encoded("WAV", "PCM_16", 16000, 1),
    "float-stereo.wav": encoded("WAV", "FLOAT", 44100, 2),
    "u8.wav": encoded("WAV", "PCM_U8", 8000, 1),
    "pcm24.flac": encoded("FLAC", "PCM_24", 48000, 2),
    "pcm16.flac": encoded("FLAC", "PCM_16", 16000, 1),
    "vorbis.ogg": encoded("OGG", "VORBIS", 22050, 1),
    "opus.opus": encoded("OGG", "OPUS", 48000, 2),
    "mp3.mp3": encoded("MP3", "MPEG_LAYER_III", 16000, 1),
}
"""Valid files in every format decoded, to be cut, corrupted and renamed."""

MAGICS = [
    b"",
    b"RIFF\x24\x00\x00\x00WAVEfmt ",
    b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00",
    b"RF64\xff\xff\xff\xffWAVEds64",
    b"fLaC\x00\x00\x00\x22",
    b"OggS\x00\x02" + bytes(20),
    b"ID3\x04\x00\x00\x00\x00\x00\x00",
    b"\xff\xfb\x90\x44",
    b"FORM\x00\x00\x10\x00AIFF",
]
"""Container signatures, so random bytes reach past the format detection."""

NAMES = st.text(alphabet=st.sampled_from("abcXYZ09 -_.éü音声"), min_size=1, max_size=10).filter(
    lambda s: s.strip(". ") == s and s not in (".", "..")
)


@DEFAULT
@example(magic=b"", body=b"", stem="empty", suffix=".wav", sample_rate=16000)
@given(
    magic=st.sampled_from(MAGICS),
    body=st.binary(max_size=4096),
    stem=NAMES,
    suffix=st.sampled_from(SUFFIXES),
    sample_rate=TARGET_RATES,
)
def test_arbitrary_bytes(
    tmp_path: Path, magic: bytes, body: bytes, stem: str, suffix: str, sample_rate: int
) -> None:
    path = tmp_path / f"{stem}{suffix}"
    content = magic + body
    path.write_bytes(content)
    check_outcome(decode_in_child(path, sample_rate), path, sample_rate, _max_seconds(content))


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid file, then cut, overwritten in places, spliced with bytes, or left alone."""
    name = draw(st.sampled_from(sorted(ORIGINALS)))
    data = bytearray(ORIGINALS[name])
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["truncate", "overwrite", "insert", "zero"]))
        if action == "truncate":
            del data[at:]
        elif action == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=64))
            data[at : at + len(chunk)] = chunk
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=256))
        else:
            end = at + draw(st.integers(1, 512))
            data[at:end] = bytes(len(data[at:end]))
    return name, bytes(data)


@DEFAULT
@given(
    case=mutated(),
    suffix=st.sampled_from(SUFFIXES),
    keep_suffix=st.booleans(),
    sample_rate=TARGET_RATES,
)
def test_cut_corrupted_and_renamed_real_files(
    tmp_path: Path, case: tuple[str, bytes], suffix: str, keep_suffix: bool, sample_rate: int
) -> None:
    name, content = case
    path = tmp_path / (name if keep_suffix else Path(name).stem + suffix)
    path.write_bytes(content)
    check_outcome(decode_in_child(path, sample_rate), path, sample_rate, _max_seconds(content))


def _some_fields_replaced(
    draw: st.DrawFn, honest: dict[str, int], bits: dict[str, int]
) -> dict[str, int]:
    """``honest`` with up to two of its fields set to any value of their width (in bits) or
    to the extremes."""
    fields = dict(honest)
    for name in draw(st.sets(st.sampled_from(sorted(honest)), max_size=2)):
        top = 2 ** bits[name] - 1
        fields[name] = draw(st.sampled_from([0, 1, top]) | st.integers(0, top))
    return fields


WAV_WIDTHS = {"tag": 16, "channels": 16, "rate": 32, "align": 16, "bits": 16, "data": 32}


@st.composite
def wav_headers(draw: st.DrawFn) -> bytes:
    """A RIFF/WAVE file of PCM or float samples whose fmt fields and data size may lie."""
    tag, bits = draw(st.sampled_from([(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64)]))
    channels = draw(st.integers(1, 8))
    payload = draw(st.binary(min_size=256, max_size=8192))
    honest = {
        "tag": tag,
        "channels": channels,
        "rate": draw(st.sampled_from([1000, 8000, 44100, 192000])),
        "align": channels * bits // 8,
        "bits": bits,
        "data": len(payload),
    }
    f = _some_fields_replaced(draw, honest, WAV_WIDTHS)
    byte_rate = (f["rate"] * f["align"]) & 0xFFFFFFFF
    fmt = struct.pack(
        "<HHIIHH", f["tag"], f["channels"], f["rate"], byte_rate, f["align"], f["bits"]
    )
    riff_size = draw(st.sampled_from([28 + len(fmt) + len(payload), 0, 2**32 - 1]))
    return b"".join(
        [b"RIFF", struct.pack("<I", riff_size), b"WAVEfmt ", struct.pack("<I", len(fmt)), fmt]
        + [b"data", struct.pack("<I", f["data"]), payload]
    )


@DEFAULT
@given(content=wav_headers(), sample_rate=TARGET_RATES)
def test_wav_headers_that_lie(tmp_path: Path, content: bytes, sample_rate: int) -> None:
    path = tmp_path / "header.wav"
    path.write_bytes(content)
    check_outcome(decode_in_child(path, sample_rate), path, sample_rate, _max_seconds(content))


FLAC_WIDTHS = {"rate": 20, "channels": 3, "bits": 5, "total": 36}


def _streaminfo(data: bytes) -> dict[str, int]:
    packed = int.from_bytes(data[18:26], "big")
    return {
        "rate": packed >> 44,
        "channels": (packed >> 41) & 0x7,  # stored minus one, as the depth
        "bits": (packed >> 36) & 0x1F,
        "total": packed & ((1 << 36) - 1),
    }


@DEFAULT
@given(name=st.sampled_from(["pcm16.flac", "pcm24.flac"]), data=st.data(), sample_rate=TARGET_RATES)
def test_flac_streaminfo_that_lies(
    tmp_path: Path, name: str, data: st.DataObject, sample_rate: int
) -> None:
    """Some of STREAMINFO's 20-bit rate, 3-bit channels, 5-bit depth and 36-bit length
    rewritten."""
    content = bytearray(ORIGINALS[name])
    f = data.draw(
        st.composite(lambda draw: _some_fields_replaced(draw, _streaminfo(content), FLAC_WIDTHS))()
    )
    packed = (f["rate"] << 44) | (f["channels"] << 41) | (f["bits"] << 36) | f["total"]
    content[18:26] = packed.to_bytes(8, "big")
    path = tmp_path / name
    path.write_bytes(bytes(content))
    check_outcome(decode_in_child(path, sample_rate), path, sample_rate, _max_seconds(content))


SUBTYPES = [
    ("WAV", "PCM_U8"),
    ("WAV", "PCM_16"),
    ("WAV", "PCM_24"),
    ("WAV", "PCM_32"),
    ("WAV", "FLOAT"),
    ("WAV", "DOUBLE"),
    ("FLAC", "PCM_16"),
    ("FLAC", "PCM_24"),
]


@DEFAULT
@given(
    kind=st.sampled_from(SUBTYPES),
    native_rate=st.sampled_from([MIN_SAMPLE_RATE, 4000, 11025, 44100, 96000, 192000])
    | st.integers(MIN_SAMPLE_RATE, 192000),
    channels=st.integers(1, 8),
    n_frames=st.integers(1, 3000),
    level=st.sampled_from([0.0, 1e-6, 0.5, 1.0]),
    sample_rate=TARGET_RATES,
)
def test_valid_files_of_odd_rates_and_channel_counts(
    tmp_path: Path,
    kind: tuple[str, str],
    native_rate: int,
    channels: int,
    n_frames: int,
    level: float,
    sample_rate: int,
) -> None:
    """Valid audio decodes, whatever its rate, layout and level: the mean of its channels,
    resampled to the length the rates give, within [-1, 1]."""
    fmt, subtype = kind
    if fmt == "FLAC" and native_rate > 65535:  # libFLAC encodes only multiples of 10 Hz there
        native_rate -= native_rate % 10
    rng = np.random.default_rng(n_frames)
    frames = (level * rng.uniform(-1, 1, (n_frames, channels))).astype(np.float32)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, frames, native_rate, format=fmt, subtype=subtype)
    if 2 * n_frames * sample_rate < native_rate:  # soxr rounds the length to no sample
        with pytest.raises(AudioError, match=r"x\.\w+' is too short: its \d+ samples"):
            load(path, sample_rate)
        return
    wav = load(path, sample_rate)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - n_frames * sample_rate / native_rate) <= 1
    assert np.isfinite(wav).all() and np.abs(wav).max() <= 1.0
    if native_rate == sample_rate:
        step = 2.0 / 255 if subtype == "PCM_U8" else 2.0**-14
        np.testing.assert_allclose(wav, frames.mean(axis=1), atol=step)


@DEFAULT
@given(
    n_frames=st.integers(1, 5000),
    channels=st.integers(1, 3),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    data=st.data(),
    subtype=st.sampled_from(["FLOAT", "DOUBLE"]),
)
def test_non_finite_samples_are_refused_where_they_are(
    tmp_path: Path, n_frames: int, channels: int, bad: float, data: st.DataObject, subtype: str
) -> None:
    frames = np.full((n_frames, channels), 0.1, np.float32)
    frame = data.draw(st.integers(0, n_frames - 1))
    frames[frame, data.draw(st.integers(0, channels - 1))] = bad
    path = tmp_path / "bad samples.wav"
    sf.write(path, frames, 16000, subtype=subtype)
    with pytest.raises(AudioError, match=rf"bad samples\.wav.*first at sample {frame}\)"):
        load(path, 16000)


@pytest.mark.slow
@MANY
@given(case=mutated(), suffix=st.sampled_from(SUFFIXES), sample_rate=TARGET_RATES)
def test_many_cut_and_corrupted_files(
    tmp_path: Path, case: tuple[str, bytes], suffix: str, sample_rate: int
) -> None:
    _, content = case
    path = tmp_path / f"many{suffix}"
    path.write_bytes(content)
    check_outcome(decode_in_child(path, sample_rate), path, sample_rate, _max_seconds(content))


@pytest.mark.slow
@MANY
@given(content=wav_headers(), sample_rate=TARGET_RATES)
def test_many_wav_headers(tmp_path: Path, content: bytes, sample_rate: int) -> None:
    path = tmp_path / "many.wav"
    path.write_bytes(content)
    check_outcome(decode_in_child(path, sample_rate), path, sample_rate, _max_seconds(content))
