"""Audio file reading, downmixing and resampling with clear errors.

Files are decoded with ``soundfile`` (libsndfile): WAV (integer PCM of 8-32 bits or float),
FLAC, Ogg Vorbis, Ogg Opus, MP3 and the other formats libsndfile reads. Integer PCM is scaled
to [-1, 1) by its bit depth; multi-channel audio is averaged to mono; resampling uses ``soxr``
at high quality. Files are decoded, downmixed and resampled in blocks, so memory holds the mono
result at the wanted rate and one block, whatever the file's length, rate or channel count; a
header whose sample rate is outside :data:`MIN_SAMPLE_RATE` - :data:`MAX_SAMPLE_RATE` is refused
before anything is decoded (a lying header would otherwise be upsampled thousands of times).
Containers libsndfile cannot read (``.m4a``, ``.aac``, ``.webm`` ...) must be converted first,
e.g. ``ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav``.
"""

from __future__ import annotations

import errno
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

logger = logging.getLogger(__name__)

# Containers seen in the wild that libsndfile cannot decode; named in the error message.
_UNSUPPORTED_SUFFIXES = frozenset(
    {".m4a", ".mp4", ".aac", ".alac", ".wma", ".webm", ".mka", ".mkv", ".amr", ".3gp", ".ac3"}
)
_SUPPORTED = "WAV, FLAC, Ogg Vorbis, Ogg Opus, MP3"

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".opus", ".mp3")
"""Extensions that folder searches collect: the formats :func:`read` decodes."""
_PCM_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}

MIN_SAMPLE_RATE = 1_000
"""Lowest sample rate in Hz voxvec accepts (files and arrays): below it no speech is left."""
MAX_SAMPLE_RATE = 1_000_000
"""Highest sample rate in Hz voxvec accepts (studio audio goes up to 768 kHz)."""

_BLOCK_SAMPLES = 1 << 18  # samples decoded at a time (all channels): 2.7 s of 48 kHz stereo
# A header's frame count sizes the output only up to this many output samples per byte of file:
# a header may lie, or give no length at all (libsndfile then reports the largest count,
# 2**63 - 1). Speech at 6 kb/s Opus gives 21 a byte at 16 kHz; rarer files (FLAC of digital
# silence, about 350) make the output grow as they decode.
_MAX_SAMPLES_PER_BYTE = 64
_UNKNOWN_FRAMES = 2**62  # libsndfile reports a length the header does not give as 2**63 - 1


class AudioError(ValueError):
    """Audio that cannot be used: the message names the file (or source) and the problem."""


def check_waveform(wav: np.ndarray, source: str) -> np.ndarray:
    """Validate a waveform and return it as a float32 1-D array.

    Integer PCM arrays (int16, int32, as e.g. ``scipy.io.wavfile`` returns them) are scaled to
    [-1, 1) by their bit depth; other integer types are ambiguous and rejected.

    Args:
        wav: mono waveform ``(T,)``: float, int16 or int32 (a CPU tensor also works).
        source: what the waveform is (a file path or e.g. ``"input 3"``), used in error messages.

    Returns:
        The waveform ``(T,)`` as float32 (a copy only when the dtype changes).

    Raises:
        AudioError: ``wav`` is not 1-D, is empty, has another dtype, or holds NaN or infinite
            samples.
    """
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise AudioError(f"{source}: expected a mono waveform of shape (T,), got shape {wav.shape}")
    if wav.size == 0:
        raise AudioError(f"{source}: audio is empty (zero samples)")
    if wav.dtype in _PCM_SCALE:
        return (wav / _PCM_SCALE[wav.dtype]).astype(np.float32)
    if not np.issubdtype(wav.dtype, np.floating):
        raise AudioError(
            f"{source}: samples of dtype {wav.dtype} are not audio; give float samples in "
            "[-1, 1] (or int16 / int32 PCM)"
        )
    wav = wav.astype(np.float32, copy=False)
    if not (np.isfinite(wav.min()) and np.isfinite(wav.max())):  # NaN propagates: no copy
        finite = np.isfinite(wav)
        first = int(np.argmin(finite))
        raise AudioError(
            f"{source}: {int(wav.size - finite.sum())} of {wav.size} samples are NaN or infinite "
            f"(first at sample {first})"
        )
    return wav


def check_rate(sample_rate: object, name: str = "sample_rate") -> int:
    """Validate a sample rate: an integer number of Hz in the supported range.

    Args:
        sample_rate: the value to check (an int, or a float or numpy number with an integer
            value; ``bool`` and strings are refused).
        name: what it is, for the error message.

    Returns:
        The rate as an ``int``.

    Raises:
        ValueError: not an integer number, or outside ``[MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]``.
    """
    valid = f"an integer number of Hz in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]"
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(
        sample_rate, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"{name} must be {valid}, got {sample_rate!r}")
    value = float(sample_rate)
    if not np.isfinite(value) or not value.is_integer():
        raise ValueError(f"{name} must be {valid}, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise ValueError(f"{name} must be {valid}, got {sample_rate!r}")
    return int(value)


def read(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Decode an audio file to mono float32 at its native sample rate.

    Args:
        path: the audio file.

    Returns:
        ``(wav, sample_rate)``: ``wav`` float32 ``(T,)`` (channels averaged; integer PCM scaled
        to [-1, 1)), ``sample_rate`` in Hz.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AudioError: ``path`` is not a regular file, cannot be decoded (corrupt or unsupported
            format, or a FLAC that ends before its header's length), has an implausible sample
            rate, holds zero samples, or holds NaN or infinite samples.
    """
    wav, sample_rate, _ = _decode(Path(path), None)
    return wav, sample_rate


def _decode_error(path: Path, error: Exception) -> AudioError:
    """The error for a file libsndfile cannot decode (naming the file and what to do)."""
    detail = getattr(error, "error_string", None) or str(error)
    if "possibly a pipe" in detail:  # what libsndfile says of a regular file it cannot parse
        detail = "no audio stream it can parse"
    suffix = path.suffix.lower()
    if suffix in _UNSUPPORTED_SUFFIXES:
        return AudioError(
            f"cannot decode '{path}': {suffix} files are not supported by libsndfile "
            f"(supported: {_SUPPORTED}); convert it first, e.g. "
            f"`ffmpeg -i '{path}' -ac 1 -ar 16000 '{path.with_suffix('.wav')}'`"
        )
    return AudioError(
        f"cannot decode '{path}': the file is corrupt or not in a format libsndfile reads "
        f"(supported: {_SUPPORTED}) [libsndfile: {detail.strip()}]"
    )


def _decode(path: Path, sample_rate: int | None) -> tuple[np.ndarray, int, float]:
    """Decode, downmix and resample ``path`` block by block.

    Returns:
        ``(wav, native_rate, peak)``: mono float32 at ``sample_rate`` (None: the native rate),
        the native rate, and the largest absolute sample before resampling.
    """
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "audio file not found", str(path))
    if not path.is_file():
        raise AudioError(f"'{path}' is not a regular file")
    try:
        with sf.SoundFile(path) as f:
            native = int(f.samplerate)
            try:
                check_rate(native, "its sample rate")
            except ValueError as e:
                raise AudioError(f"'{path}': the header is implausible: {e}") from None
            target = native if sample_rate is None else sample_rate
            stream = (
                None
                if target == native
                else soxr.ResampleStream(native, target, 1, dtype="float32", quality="HQ")
            )
            claimed = header_frames(f)
            n_out = math.ceil((claimed or 0) * target / native)
            out = np.empty(min(n_out, path.stat().st_size * _MAX_SAMPLES_PER_BYTE) + 64, np.float32)
            filled, peak, position = 0, 0.0, 0
            block_frames = max(1, _BLOCK_SAMPLES // f.channels)
            while (block := _read_block(f, block_frames)).size:
                mono = block[:, 0] if block.shape[1] == 1 else _downmix(block)
                finite = np.isfinite(mono)
                if not finite.all():
                    raise AudioError(
                        f"'{path}': holds NaN or infinite samples (first at sample "
                        f"{position + int(np.argmin(finite))})"
                    )
                peak = max(peak, float(np.abs(mono).max()))
                position += mono.size
                chunk = mono if stream is None else stream.resample_chunk(mono, last=False)
                out, filled = _append(out, filled, chunk)
            if stream is not None:
                tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
                out, filled = _append(out, filled, tail)
            if claimed is not None and 0 < position < claimed:
                _short_decode(path, f.format, claimed, position)
    except (sf.SoundFileError, RuntimeError) as e:
        raise _decode_error(path, e) from e
    if position == 0:
        raise AudioError(f"'{path}' holds no audio (zero-length)")
    if filled == 0:
        raise AudioError(
            f"'{path}' is too short: its {position} samples at {native} Hz give none at {target} Hz"
        )
    if target != native and not np.isfinite(out[:filled]).all():  # float32 overflowed
        raise AudioError(f"'{path}': samples reach {peak:.3g}, too large to resample (not audio?)")
    return out[:filled], native, peak


def _downmix(block: np.ndarray) -> np.ndarray:
    """The mean of a ``(frames, channels)`` float32 block's channels, summed in float64 (so
    samples near float32's largest do not overflow to infinity)."""
    return block.mean(axis=1, dtype=np.float64).astype(np.float32)


def header_frames(f: sf.SoundFile) -> int | None:
    """The frame count an open file's header gives; None when it gives none (a FLAC written as
    a stream, to a pipe or by a recorder that never went back to fill in the length)."""
    return int(f.frames) if f.frames < _UNKNOWN_FRAMES else None


def count_frames(f: sf.SoundFile, limit: int) -> int:
    """Decode an open file from where it stands, dropping the samples, and count its frames,
    stopping at ``limit``: exact whatever the header says (or leaves out), one block of memory.

    Raises:
        soundfile.SoundFileError: the file does not decode (libsndfile's error).
    """
    counted = 0
    block_frames = max(1, _BLOCK_SAMPLES // f.channels)
    while counted < limit and (block := _read_block(f, min(block_frames, limit - counted))).size:
        counted += len(block)
    return counted


def _read_block(f: sf.SoundFile, n_frames: int) -> np.ndarray:
    """The next (up to) ``n_frames`` frames of ``f``, float32 ``(frames, channels)``; empty at
    the end of the stream.

    libsndfile is called directly: ``SoundFile.read`` seeks to its own count after every read,
    and that seek fails at the end of a FLAC whose header gives no length (a streamed
    recording) or too long a one, losing the last block (``SoundFile.blocks`` also pads a short
    last block with stale samples up to the header's count).
    """
    block = np.empty((n_frames, f.channels), np.float32)
    read = sf._snd.sf_readf_float(f._file, sf._ffi.cast("float *", block.ctypes.data), n_frames)
    sf._error_check(f._errorcode)
    return block[: max(read, 0)]


def _short_decode(path: Path, container: str, header_frames: int, decoded_frames: int) -> None:
    """A file decoded to fewer frames than its header gives: an error for FLAC (whose header
    count is exact, so the file is truncated or corrupt), a warning for the formats whose count
    may be an estimate (MP3)."""
    detail = f"its header gives {header_frames} frames, only {decoded_frames} decode"
    if container == "FLAC":
        raise AudioError(f"'{path}' is truncated or corrupt: {detail}")
    logger.warning("'%s': %s (truncated?); using those", path, detail)


def _append(out: np.ndarray, filled: int, chunk: np.ndarray) -> tuple[np.ndarray, int]:
    """Write ``chunk`` at ``out[filled:]``, growing ``out`` when it is too small."""
    end = filled + chunk.size
    if end > out.size:
        grown = np.empty(max(end, out.size + out.size // 2), np.float32)
        grown[:filled] = out[:filled]
        out = grown
    out[filled:end] = chunk
    return out, end


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono waveform with soxr (high quality).

    Args:
        wav: waveform ``(T,)``.
        orig_sr: its sample rate in Hz.
        target_sr: the wanted sample rate in Hz.

    Returns:
        float32 ``(T * target_sr / orig_sr,)`` (rounded); ``wav`` itself as float32 when the
        rates are equal.

    Raises:
        ValueError: a rate is not an integer in the supported range (:func:`check_rate`) or
            ``wav`` is not 1-D.
    """
    orig_sr = check_rate(orig_sr, "orig_sr")
    target_sr = check_rate(target_sr, "target_sr")
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"resample expects a mono waveform (T,), got shape {wav.shape}")
    if orig_sr == target_sr or wav.size == 0:
        return wav
    return np.asarray(soxr.resample(wav, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


def load(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """Read an audio file as mono float32 in [-1, 1] at ``sample_rate``.

    Decoding, downmixing and resampling run block by block: peak memory is the result plus one
    block. Float files whose peak exceeds 1 are scaled down to peak 1 (with a warning); the tiny
    overshoot resampling can add is clipped.

    Args:
        path: the audio file (any format :func:`read` decodes, any sample rate).
        sample_rate: the wanted sample rate in Hz.

    Returns:
        float32 waveform ``(T,)`` at ``sample_rate``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AudioError: as :func:`read`; or the file is too short to give one sample at
            ``sample_rate``.
        ValueError: ``sample_rate`` is not a supported rate (:func:`check_rate`).
    """
    sample_rate = check_rate(sample_rate, "sample_rate")
    wav, _, peak = _decode(Path(path), sample_rate)
    wav = _scale_to_peak_1(wav, peak, f"'{path}'")
    return np.clip(wav, -1.0, 1.0, out=wav)


def fit_peak(wav: np.ndarray, source: str) -> np.ndarray:
    """``wav`` itself when its samples lie in [-1, 1], else scaled to peak 1 (with a warning).

    Files get this in :func:`load`; the Embedder applies it to arrays too, so that loud input
    (floats on an int16 scale, a peak of 1e18) embeds like the same audio at a normal level
    instead of overflowing to NaN.

    Args:
        wav: a finite float32 waveform (as :func:`check_waveform` returns it).
        source: what it is, for the warning.
    """
    return _scale_to_peak_1(wav, float(np.abs(wav).max()) if wav.size else 0.0, source)


def _scale_to_peak_1(wav: np.ndarray, peak: float, source: str) -> np.ndarray:
    if peak <= 1.0:
        return wav
    logger.warning("%s: samples reach %.3g (outside [-1, 1]); scaling to peak 1", source, peak)
    return (wav.astype(np.float64) / peak).astype(np.float32)


def find_audio_files(
    folder: str | os.PathLike[str],
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    *,
    recursive: bool = True,
) -> list[Path]:
    """The audio files in a folder (and below it when ``recursive``), sorted by path.

    Hidden files and folders (names starting with ``.``) are skipped; extensions are matched
    case-insensitively (``.WAV`` counts as ``.wav``). A folder that does not exist holds nothing.

    Args:
        folder: the folder to search.
        extensions: file extensions to collect, with the dot.
        recursive: also search the sub-folders, at any depth.

    Returns:
        The files found, sorted.
    """
    suffixes = tuple(ext.lower() for ext in extensions)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
        found.extend(
            Path(dirpath, name)
            for name in filenames
            if not name.startswith(".") and name.lower().endswith(suffixes)
        )
    return sorted(found)
