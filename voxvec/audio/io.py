"""Audio file reading, downmixing and resampling with clear errors.

Files are decoded with ``soundfile`` (libsndfile): WAV (integer PCM of 8-32 bits or float),
FLAC, Ogg Vorbis, Ogg Opus, MP3 and the other formats libsndfile reads. Integer PCM is scaled
to [-1, 1) by its bit depth; multi-channel audio is averaged to mono; resampling uses ``soxr``
at high quality. Containers libsndfile cannot read (``.m4a``, ``.aac``, ``.webm`` ...) must be
converted first, e.g. ``ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav``.
"""

from __future__ import annotations

import errno
import logging
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
    finite = np.isfinite(wav)
    if not finite.all():
        first = int(np.argmin(finite))
        raise AudioError(
            f"{source}: {int(wav.size - finite.sum())} of {wav.size} samples are NaN or infinite "
            f"(first at sample {first})"
        )
    return wav


def _check_rate(sample_rate: int, name: str) -> int:
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"{name} must be a positive integer in Hz, got {sample_rate!r}")
    return int(sample_rate)


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
            format), holds zero samples, or holds NaN or infinite samples.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "audio file not found", str(path))
    if not path.is_file():
        raise AudioError(f"'{path}' is not a regular file")
    try:
        with sf.SoundFile(path) as f:
            sample_rate = int(f.samplerate)
            data = f.read(dtype="float32", always_2d=True)  # (T, C)
    except (sf.SoundFileError, RuntimeError) as e:
        detail = getattr(e, "error_string", None) or str(e)
        suffix = path.suffix.lower()
        if suffix in _UNSUPPORTED_SUFFIXES:
            raise AudioError(
                f"cannot decode '{path}': {suffix} files are not supported by libsndfile "
                f"(supported: {_SUPPORTED}); convert it first, e.g. "
                f"`ffmpeg -i '{path}' -ac 1 -ar 16000 '{path.with_suffix('.wav')}'`"
            ) from e
        raise AudioError(
            f"cannot decode '{path}': the file is corrupt or not in a format libsndfile reads "
            f"(supported: {_SUPPORTED}) [libsndfile: {detail.strip()}]"
        ) from e
    if data.shape[0] == 0:
        raise AudioError(f"'{path}' holds no audio (zero-length)")
    wav = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return check_waveform(wav, f"'{path}'"), sample_rate


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
        ValueError: a rate is not a positive integer or ``wav`` is not 1-D.
    """
    orig_sr = _check_rate(orig_sr, "orig_sr")
    target_sr = _check_rate(target_sr, "target_sr")
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"resample expects a mono waveform (T,), got shape {wav.shape}")
    if orig_sr == target_sr or wav.size == 0:
        return wav
    return np.asarray(soxr.resample(wav, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


def load(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """Read an audio file as mono float32 in [-1, 1] at ``sample_rate``.

    Float files whose peak exceeds 1 are scaled down to peak 1 (with a warning); the tiny
    overshoot resampling can add is clipped.

    Args:
        path: the audio file (any format :func:`read` decodes, any sample rate).
        sample_rate: the wanted sample rate in Hz.

    Returns:
        float32 waveform ``(T,)`` at ``sample_rate``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AudioError: as :func:`read`.
        ValueError: ``sample_rate`` is not a positive integer.
    """
    sample_rate = _check_rate(sample_rate, "sample_rate")
    wav, orig_sr = read(path)
    peak = float(np.abs(wav).max())
    if peak > 1.0:
        logger.warning("'%s': samples reach %.3g (outside [-1, 1]); scaling to peak 1", path, peak)
        wav = wav / np.float32(peak)
    wav = resample(wav, orig_sr, sample_rate)
    return np.clip(wav, -1.0, 1.0, out=wav)


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
