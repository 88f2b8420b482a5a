"""Voice activity detection: find speech in a waveform and trim the silence around it.

Two detectors, chosen by ``method``:

- ``"silero"``: the Silero VAD neural model from the ``silero-vad`` package (extra ``vad``:
  ``pip install 'voxvec[vad]'``; the model ships in the wheel, runs offline on torch alone).
  It runs at 8 or 16 kHz; other rates are resampled to 16 kHz for detection.
- ``"energy"``: a dependency-free detector on frame energies (25 ms frames, 10 ms hop; frame
  level = mean-removed RMS in dB relative to full scale, dBFS). A frame is speech when its
  level reaches the highest of three thresholds: an absolute floor of -55 dBFS; 30 dB below
  the loud-frame level (the 10th loudest frame; fewer in clips under 2 s); and 10 dB above
  the noise floor (10th percentile of the frames above the absolute floor), this last one
  capped at 15 dB below the loud-frame level so that a recording with no pause keeps its
  quieter speech. Digital silence and noise below -55 dBFS are never speech.
- ``"auto"`` (default): ``"silero"`` when the package is installed, else ``"energy"``.
- ``"off"``: no detection: the whole waveform is speech.

Both keep speech segments of at least 100 ms, bridge pauses shorter than 300 ms and keep 100 ms
of context on each side of every segment. Segments are ``(start, end)`` sample indices, end
exclusive, at the input's sample rate.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
import warnings
from functools import lru_cache
from typing import Any

import numpy as np

from voxvec.audio.io import check_rate, check_waveform, resample

logger = logging.getLogger(__name__)

METHODS = ("off", "auto", "silero", "energy")
"""What ``method`` (and the Embedder's ``vad``, the CLI's ``--vad``) accepts."""

_MIN_SPEECH_MS = 100.0
_MIN_SILENCE_MS = 300.0
_PAD_MS = 100.0

_FRAME_MS = 25.0
_HOP_MS = 10.0
_FLOOR_DBFS = -55.0
_RANGE_DB = 30.0
_NOISE_MARGIN_DB = 10.0
_NOISE_THRESHOLD_MAX_DB = -15.0  # the noise-based threshold stays this far below the loud frames
_N_LOUD_FRAMES = 10
_NOISE_PERCENTILE = 10.0
_POWER_EPS = 1e-10  # -100 dBFS: the level reported for digital silence

_SILERO_RATES = (8000, 16000)
_SILERO_MISSING = "VAD method 'silero' needs the silero-vad package: pip install 'voxvec[vad]'"
_SILERO_THRESHOLD = 0.5


def resolve_method(method: str) -> str:
    """The detector ``method`` runs: ``"off"``, ``"silero"`` or ``"energy"`` (``"auto"`` resolved).

    Cheap (nothing is imported), so callers can check an option before any work.

    Raises:
        ValueError: unknown ``method``.
        ImportError: ``method="silero"`` without the ``vad`` extra.
    """
    if method not in METHODS:
        raise ValueError(f"unknown VAD method {method!r}; valid: {', '.join(METHODS)}")
    installed = importlib.util.find_spec("silero_vad") is not None
    if method == "auto":
        return "silero" if installed else "energy"
    if method == "silero" and not installed:
        raise ImportError(_SILERO_MISSING)
    return method


def speech_segments(
    wav: np.ndarray, sample_rate: int, method: str = "auto"
) -> list[tuple[int, int]]:
    """Find the speech in a waveform.

    Args:
        wav: mono waveform ``(T,)`` in [-1, 1] (float; a CPU tensor also works).
        sample_rate: its sample rate in Hz.
        method: one of :data:`METHODS` (see the module docstring).

    Returns:
        Sorted, non-overlapping ``(start, end)`` sample indices (end exclusive) of speech,
        padded by 100 ms of context; empty when there is no speech (or ``wav`` is empty);
        ``[(0, T)]`` with ``method="off"``.

    Raises:
        ValueError: unknown ``method``, bad ``sample_rate`` or ``wav`` not 1-D.
        AudioError: ``wav`` holds NaN or infinite samples.
        ImportError: ``method="silero"`` without the ``vad`` extra.
    """
    sample_rate = check_rate(sample_rate, "sample_rate")
    resolved = resolve_method(method)
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (T,), got shape {wav.shape}")
    if wav.size == 0:
        return []
    wav = check_waveform(wav, "waveform")
    if resolved == "off":
        return [(0, int(wav.size))]
    logger.debug("VAD %s on %d samples at %d Hz", resolved, wav.size, sample_rate)
    if resolved == "silero":
        return _silero_segments(wav, sample_rate)
    return _energy_segments(wav, sample_rate)


def trim_silence(wav: np.ndarray, sample_rate: int, method: str = "auto") -> np.ndarray:
    """Keep only the speech of a waveform (the segments of :func:`speech_segments`, joined).

    Args:
        wav: mono waveform ``(T,)`` in [-1, 1].
        sample_rate: its sample rate in Hz.
        method: one of :data:`METHODS`.

    Returns:
        float32 ``(T',)`` with ``T' <= T``; empty when no speech was found (callers decide
        whether that is an error).

    Raises:
        As :func:`speech_segments`.
    """
    segments = speech_segments(wav, sample_rate, method)
    wav = np.asarray(wav, dtype=np.float32)
    if not segments:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([wav[start:end] for start, end in segments])


_STEADY_DB = 0.5  # the steady limit (std of frame levels, dB) for noise over the whole band
_MIN_FRAMES_FOR_STEADY = 10
_CLICK_SHARE = 0.5  # a frame with more than this share of its energy in one sample is a click
_EDGE_MS = 50.0  # resampling from any accepted rate (1 kHz and up) rings for less than this...
_EDGE_MIN_MS = 500.0  # ...left out of inputs this long (the Embedder's default min_speech_s)
_BAND_TAIL = 1e-3  # the occupied band leaves out this share of the power at each end...
_MIN_BAND = 0.25  # ...and is at least this fraction of the spectrum: a limit of at most 1 dB
_N_SPECTRUM_FRAMES = 256  # frames, evenly spread over the sounding ones, for the band


def non_speech_reason(wav: np.ndarray, sample_rate: int) -> str | None:
    """Why ``wav`` cannot hold speech, or None when it may: a cheap check for inputs that would
    otherwise get a confident embedding of nothing.

    The check looks at the level of side-by-side 25 ms frames (mean-removed RMS, dBFS), leaving
    out the first and last 50 ms of inputs of 0.5 s or more (resampling a DC offset, or a tone
    above the new band, leaves nothing else but ringing there). A frame *sounds* when it reaches
    -55 dBFS and is not a click (over half its energy in one sample). Two kinds of input are
    refused:

    - silence: no frame sounds;
    - steady signals (tones, hum, stationary noise): the level of the sounding frames varies by
      less than ``0.5 / sqrt(band)`` dB (standard deviation over at least 10 frames), where
      ``band`` is the fraction of the spectrum up to Nyquist that holds all but 0.1% of the
      power at each end, at least 1/4 (so the limit is 0.5-1 dB). White noise over the whole
      band spreads by about 0.3 dB in 25 ms frames, noise in a fraction ``band`` of it by
      ``1 / sqrt(band)`` times more (fewer independent values per frame): 8 kHz white noise
      resampled to 16 kHz spreads by about 0.45 dB, against a limit of about 0.72 dB.

    Speech varies by 1.25 dB or more, and by at least 1.5 times its limit, in the 17,721 of the
    18,240 files of ../shared/data (at 16 kHz) with 10 sounding frames or more (the narrow-band
    8 kHz digits come closest); by 0.57 dB or more under white noise 5 dB louder than it (300
    of those files, 60 per corpus; the band is then whole: a limit of 0.5 dB). Of the 18,240
    files only one is refused, a Common Voice clip whose peak is -62 dBFS
    (``bench/speech_check.py`` measures this). Non-stationary noise (dishes, traffic) passes
    this check, and so do clicks resampled from another rate (spread over several samples);
    trim noise with ``vad="silero"``.

    Args:
        wav: mono waveform ``(T,)`` in [-1, 1].
        sample_rate: its rate in Hz.

    Returns:
        A short reason (for an error message), or None.
    """
    sample_rate = check_rate(sample_rate, "sample_rate")
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size == 0:
        return "no samples"
    if wav.size >= _ms(_EDGE_MIN_MS, sample_rate):
        edge = _ms(_EDGE_MS, sample_rate)
        wav = wav[edge : wav.size - edge]  # a view
    frame = _ms(_FRAME_MS, sample_rate)
    n_frames = max(1, wav.size // frame)
    # Side-by-side frames in float32: a tenth of the cost of the detector's 10 ms hop, and the
    # same spread of levels (it is a statistic over the whole input, not a boundary).
    if wav.size < frame:
        wav = np.pad(wav, (0, frame - wav.size))
    frames = wav[: n_frames * frame].reshape(n_frames, frame)  # a view: no copy of hours of audio
    power = np.empty(n_frames)
    click = np.empty(n_frames, dtype=bool)
    for first in range(0, n_frames, _VAR_BLOCK_FRAMES):  # float64 over a block at a time
        block = frames[first : first + _VAR_BLOCK_FRAMES]
        part = slice(first, first + len(block))
        mean = block.mean(axis=1, dtype=np.float64)
        power[part] = block.var(axis=1, dtype=np.float64)
        peak = np.maximum(block.max(axis=1) - mean, mean - block.min(axis=1))
        click[part] = peak * peak > _CLICK_SHARE * frame * power[part]
    levels_db = 10.0 * np.log10(np.maximum(power, _POWER_EPS))
    loud = levels_db >= _FLOOR_DBFS
    sounds = loud & ~click
    if not sounds.any():
        clicks = ", but for clicks" if loud.any() else ""
        return f"silence (nothing above {_FLOOR_DBFS:g} dBFS{clicks})"
    sounding = levels_db[sounds]
    if sounding.size < _MIN_FRAMES_FOR_STEADY:
        return None
    spread = float(sounding.std())
    if spread >= _STEADY_DB / math.sqrt(_MIN_BAND):  # above the limit of any band: no spectrum
        return None
    limit = _STEADY_DB / math.sqrt(_occupied_band(frames, np.flatnonzero(sounds)))
    if spread < limit:
        return (
            f"a steady signal (its level varies by {spread:.2f} dB over time, under the "
            f"{limit:.2f} dB limit for its bandwidth: a tone, hum or stationary noise)"
        )
    return None


def active_level_db(wav: np.ndarray, sample_rate: int) -> float:
    """The active level of ``wav`` in dBFS: the mean (mean-removed) power of the louder half of
    its side-by-side 25 ms frames, so pauses count little without a detector (-100 for silence).

    Args:
        wav: mono waveform ``(T,)``.
        sample_rate: its rate in Hz.

    Returns:
        ``10 log10`` of that power (the frame levels of :func:`_frame_levels_db`: bounded
        memory; an input shorter than one frame is that frame).
    """
    wav = np.asarray(wav, dtype=np.float32)
    frame = _ms(_FRAME_MS, sample_rate)
    if wav.size < frame:
        power = np.array([np.var(wav, dtype=np.float64) if wav.size else 0.0])
    else:
        power = 10.0 ** (_frame_levels_db(wav, frame, frame) / 10.0)
    louder = np.sort(power)[power.size // 2 :]
    return 10.0 * math.log10(max(float(louder.mean()), _POWER_EPS))


def _occupied_band(frames: np.ndarray, sounding: np.ndarray) -> float:
    """The fraction of the spectrum (up to Nyquist) that holds all but ``_BAND_TAIL`` of the
    power at each end, over up to ``_N_SPECTRUM_FRAMES`` of the ``sounding`` frames; at least
    ``_MIN_BAND``."""
    n_chosen = min(_N_SPECTRUM_FRAMES, sounding.size)
    chosen = sounding[np.linspace(0, sounding.size - 1, n_chosen).astype(np.int64)]
    x = frames[chosen].astype(np.float64)  # a copy of the chosen frames only
    x -= x.mean(axis=1, keepdims=True)
    spectrum = (np.abs(np.fft.rfft(x * np.hanning(frames.shape[1]), axis=1)) ** 2).mean(axis=0)
    share = np.cumsum(spectrum) / max(float(spectrum.sum()), np.finfo(float).tiny)
    low, high = np.searchsorted(share, [_BAND_TAIL, 1.0 - _BAND_TAIL])
    return max(_MIN_BAND, (int(high) - int(low) + 1) / spectrum.size)


def _ms(ms: float, sample_rate: int) -> int:
    return int(round(ms * sample_rate / 1000.0))


_LEVEL_BLOCK_FRAMES = 1 << 16  # the running sums restart every this many frames (precision)
_LEVEL_CHUNK_FRAMES = 1 << 10  # frames per chunk of them (~6 MB of float64 at 16 kHz)
_VAR_BLOCK_FRAMES = 1 << 12  # whole frames per block of variances (~13 MB of float64 at 16 kHz)


def _frame_levels_db(wav: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Mean-removed RMS level in dBFS of frames ``[i * hop, i * hop + frame)`` -> ``(F,)``."""
    if wav.size < frame:
        wav = np.pad(wav, (0, frame - wav.size))
    n_frames = (wav.size - frame) // hop + 1
    levels = np.empty(n_frames)
    # Running sums in float64, restarted every block of frames (so that hours of squares do not
    # swamp a quiet frame) and taken a chunk of frames at a time (so that memory is bounded):
    # each chunk's sums start from the last one's, so a block's sums are what one pass over
    # the whole block would give, bit for bit.
    sum1 = sum2 = 0.0  # the running sums at the chunk's first frame
    starts = np.arange(_LEVEL_CHUNK_FRAMES) * hop
    for first in range(0, n_frames, _LEVEL_CHUNK_FRAMES):
        if first % _LEVEL_BLOCK_FRAMES == 0:
            sum1 = sum2 = 0.0
        count = min(_LEVEL_CHUNK_FRAMES, n_frames - first)
        x = wav[first * hop : (first + count - 1) * hop + frame].astype(np.float64)
        s1 = np.cumsum(np.concatenate([[sum1], x]))
        s2 = np.cumsum(np.concatenate([[sum2], x * x]))
        at = starts[:count]
        mean = (s1[at + frame] - s1[at]) / frame
        power = (s2[at + frame] - s2[at]) / frame - mean * mean
        levels[first : first + count] = 10.0 * np.log10(np.maximum(power, _POWER_EPS))
        if first + count < n_frames:  # the next chunk's first frame starts inside this one
            sum1, sum2 = float(s1[count * hop]), float(s2[count * hop])
    return levels


def _energy_threshold_db(levels_db: np.ndarray) -> float | None:
    """The speech threshold in dBFS for these frame levels; None when nothing can be speech."""
    k = max(1, min(_N_LOUD_FRAMES, math.ceil(0.05 * levels_db.size)))
    loud_db = float(np.partition(levels_db, levels_db.size - k)[levels_db.size - k])
    if loud_db < _FLOOR_DBFS:
        return None
    noise_db = float(np.percentile(levels_db[levels_db >= _FLOOR_DBFS], _NOISE_PERCENTILE))
    noise_threshold = min(noise_db + _NOISE_MARGIN_DB, loud_db + _NOISE_THRESHOLD_MAX_DB)
    return max(_FLOOR_DBFS, loud_db - _RANGE_DB, noise_threshold)


def _energy_segments(wav: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
    frame = max(1, _ms(_FRAME_MS, sample_rate))
    hop = max(1, _ms(_HOP_MS, sample_rate))
    levels_db = _frame_levels_db(wav, frame, hop)
    threshold = _energy_threshold_db(levels_db)
    if threshold is None:
        return []
    is_speech = np.concatenate([[False], levels_db >= threshold, [False]])
    edges = np.flatnonzero(np.diff(is_speech.astype(np.int8)))
    # Frame runs [a, b) become sample spans [a * hop, (b - 1) * hop + frame).
    spans = [
        (int(a) * hop, (int(b) - 1) * hop + frame)
        for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]
    return _clean(spans, wav.size, sample_rate)


def _clean(spans: list[tuple[int, int]], n_samples: int, sample_rate: int) -> list[tuple[int, int]]:
    """Bridge short pauses, drop short bursts, pad, clip to the signal and merge overlaps."""
    min_silence = _ms(_MIN_SILENCE_MS, sample_rate)
    min_speech = _ms(_MIN_SPEECH_MS, sample_rate)
    pad = _ms(_PAD_MS, sample_rate)
    bridged: list[tuple[int, int]] = []
    for start, end in spans:
        if bridged and start - bridged[-1][1] < min_silence:
            bridged[-1] = (bridged[-1][0], max(end, bridged[-1][1]))
        else:
            bridged.append((start, end))
    out: list[tuple[int, int]] = []
    for start, end in bridged:
        if end - start < min_speech:
            continue
        start, end = max(0, start - pad), min(n_samples, end + pad)
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


@lru_cache(maxsize=1)
def _silero() -> tuple[Any, Any, threading.Lock]:
    """The Silero model, its timestamp function and a lock (the model carries state)."""
    import torch  # here, not at module level: `voxvec COMMAND --help` reads METHODS without it

    n_threads = torch.get_num_threads()
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError as e:
        raise ImportError(_SILERO_MISSING) from e
    finally:
        # silero_vad calls torch.set_num_threads(1) when imported; undo that for the caller.
        torch.set_num_threads(n_threads)
    with warnings.catch_warnings():
        # Its loader uses importlib.resources.path and torch.jit.load, both deprecated upstream.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = load_silero_vad(onnx=False)
    return model, get_speech_timestamps, threading.Lock()


def _silero_segments(wav: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
    model, get_speech_timestamps, lock = _silero()
    vad_rate = sample_rate if sample_rate in _SILERO_RATES else 16000
    import torch

    audio = torch.from_numpy(resample(wav, sample_rate, vad_rate))
    with lock:
        found = get_speech_timestamps(
            audio,
            model,
            threshold=_SILERO_THRESHOLD,
            sampling_rate=vad_rate,
            min_speech_duration_ms=int(_MIN_SPEECH_MS),
            min_silence_duration_ms=int(_MIN_SILENCE_MS),
            speech_pad_ms=int(_PAD_MS),
        )
    scale = sample_rate / vad_rate
    spans = [
        (max(0, math.floor(s["start"] * scale)), min(wav.size, math.ceil(s["end"] * scale)))
        for s in found
    ]
    return [(start, end) for start, end in spans if end > start]
