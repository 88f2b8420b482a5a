"""Property-based tests of the Embedder (``voxvec.load()``): any array in, a unit embedding or a
clear error out.

Arrays of any length (shorter than the model's minimum included), level (silence, a whisper,
clipping) and sample rate from 8 to 48 kHz, alone or as padded batches with ``lengths``: each
input gives a finite unit-norm embedding, or a ValueError (AudioError for unusable samples)
that names it; never another exception type, a NaN or a confident embedding of something that
is not speech. Real speech (from ``../shared/data`` when present) always embeds, whatever its
rate and level. ``-m slow`` runs many more examples.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import soxr
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import voxvec
from voxvec.audio.io import AudioError, load
from voxvec.pipeline import BaseEmbedder

RATES = st.sampled_from([8000, 16000, 22050, 44100, 48000]) | st.integers(8000, 48000)
DEFAULT = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(DEFAULT, max_examples=400)


@functools.cache
def embedder(vad: str = "off") -> BaseEmbedder:
    """The default model, loaded once per VAD setting."""
    return voxvec.load(vad=vad)


@functools.cache
def speech_clips(shared_data: Path) -> tuple[np.ndarray, ...]:
    """Four real utterances (about 14 s each) at 16 kHz."""
    folder = shared_data / "librispeech-train-clean-100-sample" / "audio"
    return tuple(load(path, 16000) for path in sorted(folder.glob("*.flac"))[:4])


def check_embedding(vec: np.ndarray, dim: int) -> None:
    assert vec.dtype == np.float32 and vec.shape == (dim,)
    assert np.isfinite(vec).all()
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4


@st.composite
def any_audio(draw: st.DrawFn, rate: int) -> np.ndarray:
    """Any finite waveform at ``rate``: from no samples to 6 s, silence to clipped noise, bursts,
    clicks, tones, or float data far outside [-1, 1]."""
    n = draw(st.sampled_from([0, 1, 100, 511, 512, rate // 2, rate]) | st.integers(0, 6 * rate))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(
        st.sampled_from(["zeros", "noise", "clipped", "tone", "clicks", "huge"] + ["bursts"] * 4)
    )
    level = draw(st.sampled_from([1e-6, 0.01, 0.1, 1.0]))
    if kind == "zeros":
        wave = np.zeros(n)
    elif kind == "noise":
        wave = level * rng.standard_normal(n)
    elif kind == "bursts":  # noise switched on and off every 0.1-0.5 s: not steady
        gate = np.repeat(rng.integers(0, 2, n // 1600 + 1), 1600)[:n]
        wave = level * gate * rng.standard_normal(n)
    elif kind == "clipped":
        wave = np.clip(20 * rng.standard_normal(n), -1, 1)
    elif kind == "tone":
        wave = level * np.sin(2 * np.pi * draw(st.floats(50, 3900)) * np.arange(n) / rate)
    elif kind == "clicks":
        wave = np.zeros(n)
        wave[rng.integers(0, max(n, 1), size=min(n, 5))] = 1.0
    else:
        wave = rng.uniform(-1, 1, n) * draw(st.sampled_from([1e4, 1e18, 3e38]))
    return wave.astype(np.float32)


@DEFAULT
@given(data=st.data(), rate=RATES, vad=st.sampled_from(["off", "energy"]))
def test_any_array_embeds_or_is_a_clear_value_error(
    data: st.DataObject, rate: int, vad: str
) -> None:
    model = embedder(vad)
    wave = data.draw(any_audio(rate))
    result = next(model.iter_embed([wave], rate))
    if result.error is None:
        event("embedded")
        assert result.embedding is not None
        check_embedding(result.embedding, model.embed_dim)
        assert len(wave) >= model.min_samples * rate / model.sample_rate - 1
    else:
        event(type(result.error).__name__)
        assert type(result.error) in (ValueError, AudioError), repr(result.error)
        assert str(result.error).startswith("input[0]: "), result.error


@st.composite
def steady_non_speech(draw: st.DrawFn, rate: int) -> np.ndarray:
    """At least 1 s of something that is no speech at all: silence, a tone (above the model's
    band too), white noise (narrow-band when the rate is under the model's)."""
    n = draw(st.integers(rate, 5 * rate))
    level = draw(st.sampled_from([1e-4, 0.01, 0.3, 1.0]))
    kind = draw(st.sampled_from(["zeros", "tone", "white"]))
    if kind == "zeros":
        return np.zeros(n, np.float32)
    if kind == "tone":  # above the model's band too: resampled away but for the edges
        hz = draw(st.floats(50, 0.45 * rate))
        return (level * np.sin(2 * np.pi * hz * np.arange(n) / rate)).astype(np.float32)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return np.clip(level * rng.standard_normal(n), -1, 1).astype(np.float32)


@DEFAULT
@given(data=st.data(), rate=RATES)
def test_what_is_not_speech_is_never_embedded(data: st.DataObject, rate: int) -> None:
    wave = data.draw(steady_non_speech(rate))
    with pytest.raises(ValueError, match=r"^input: no speech: the audio is (silence|a steady)"):
        embedder().embed(wave, rate)


@pytest.mark.parametrize(
    ("case", "rate"),
    [
        pytest.param("dc", 16000, id="dc"),
        pytest.param("dc", 8000, id="dc-resampled"),  # rings at the edges
        pytest.param("tone", 44100, id="tone-above-the-band-resampled"),  # edges only
        pytest.param("white", 8000, id="white-noise-at-8k"),  # half the band
        pytest.param("clicks", 16000, id="clicks"),
    ],
)
def test_borderline_non_speech(case: str, rate: int) -> None:
    wave = np.full(2 * rate, 0.3, np.float32)
    if case == "clicks":
        wave = np.zeros(2 * rate, np.float32)
        wave[:: rate // 3] = 1.0
    elif case == "tone":
        wave = (0.3 * np.sin(2 * np.pi * 12000 * np.arange(2 * rate) / rate)).astype(np.float32)
    elif case == "white":
        wave = (0.01 * np.random.default_rng(7).standard_normal(2 * rate)).astype(np.float32)
    with pytest.raises(ValueError, match=r"^input: no speech: the audio is (silence|a steady)"):
        embedder().embed(wave, rate)


@DEFAULT
@given(data=st.data(), rate=RATES)
def test_batches_with_lengths_give_what_each_item_gives_alone(
    data: st.DataObject, rate: int
) -> None:
    model = embedder()
    waves = data.draw(st.lists(any_audio(rate), min_size=1, max_size=4))
    total = max(len(w) for w in waves) + data.draw(st.sampled_from([0, 1, rate]))
    if total == 0:
        return
    batch = np.full((len(waves), total), data.draw(st.sampled_from([0.0, 0.9])), np.float32)
    lengths = np.array([max(len(w), 1) for w in waves])
    for i, wave in enumerate(waves):
        batch[i, : len(wave)] = wave
    results = list(model.iter_embed(batch, rate, lengths=lengths))
    for i, result in enumerate(results):
        alone = next(model.iter_embed([batch[i, : lengths[i]]], rate))
        if result.error is not None:
            assert type(result.error) in (ValueError, AudioError), repr(result.error)
            assert str(result.error).startswith(f"input[{i}]: ")
            assert alone.error is not None
            continue
        assert result.embedding is not None and alone.embedding is not None
        check_embedding(result.embedding, model.embed_dim)
        # bfloat16 autocast where native: padding may move the vector by up to 1e-4 in cosine
        assert float(result.embedding @ alone.embedding) > 1 - 1e-4


@DEFAULT
@given(
    batch=st.integers(1, 3),
    shape=st.sampled_from(["ok", "ok", "ok", "scalar", "long", "short", "2-d"]),
    dtype=st.sampled_from([np.int64, np.int64, np.int32, np.uint16, np.float64, np.bool_]),
    values=st.lists(st.integers(1, 8000), min_size=4, max_size=4)
    | st.lists(
        st.sampled_from([0, 1, -1, 511, 512, 8000, 8001, 2**40]) | st.integers(-(2**40), 2**40),
        min_size=4,
        max_size=4,
    ),
)
def test_any_lengths_are_taken_or_refused_with_a_value_error(
    batch: int, shape: str, dtype: type, values: list[int]
) -> None:
    model = embedder()
    rng = np.random.default_rng(batch)
    x = np.clip(0.1 * rng.standard_normal((batch, 8000)), -1, 1).astype(np.float32)
    n = {"ok": batch, "scalar": 1, "long": batch + 1, "short": batch - 1, "2-d": batch}[shape]
    lengths = np.array(values[:n], dtype=np.int64).astype(dtype)
    if shape == "scalar":
        lengths = lengths.reshape(())
    elif shape == "2-d":
        lengths = lengths.reshape(1, -1)
    valid = (
        lengths.shape == (batch,)
        and np.issubdtype(lengths.dtype, np.integer)
        and bool(((lengths >= 1) & (lengths <= 8000)).all())
    )
    event("valid" if valid else "refused")
    if not valid:
        with pytest.raises(ValueError, match="lengths must"):
            list(model.iter_embed(x, 16000, lengths=lengths))
        return
    for result in model.iter_embed(x, 16000, lengths=lengths):
        assert result.embedding is not None or isinstance(result.error, ValueError)


@DEFAULT
@given(
    rate=st.one_of(
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([True, False, None, "16000", 16000.5, np.float32(8000), np.int16(8000)]),
    )
)
def test_any_sample_rate_is_taken_or_refused_with_a_value_error(rate: object) -> None:
    rng = np.random.default_rng(0)
    gate = np.repeat(rng.integers(0, 2, 20), 800)  # noise bursts: not a steady signal
    wave = np.clip(0.1 * gate * rng.standard_normal(16000), -1, 1).astype(np.float32)
    valid = (
        isinstance(rate, (int, float, np.number))
        and not isinstance(rate, (bool, np.bool_))
        and math.isfinite(float(rate))
        and float(rate).is_integer()
        and 1000 <= float(rate) <= 1_000_000
    )
    event("valid" if valid else "refused")
    if not valid:
        with pytest.raises(ValueError, match=r"^sample_rate (must be an integer number|is requ)"):
            embedder().embed(wave, rate)  # type: ignore[arg-type]
        return
    result = next(embedder().iter_embed([wave], rate))  # type: ignore[arg-type]
    if result.error is None:  # else the audio at that rate is too short or steady
        assert result.embedding is not None
        check_embedding(result.embedding, embedder().embed_dim)
    else:
        assert type(result.error) is ValueError and str(result.error).startswith("input[0]: ")


@DEFAULT
@given(
    clip=st.integers(0, 3),
    start_s=st.floats(0, 2),
    length_s=st.floats(4, 10),  # never all inside a reading pause (they last up to 2 s)
    gain=st.sampled_from([0.1, 0.3, 1.0, 4.0, 30.0]),  # 0.01 is refused: silence below -55 dBFS
    rate=RATES,
)
def test_real_speech_always_embeds_at_any_rate_and_level(
    shared_data: Path, clip: int, start_s: float, length_s: float, gain: float, rate: int
) -> None:
    segment = speech_clips(shared_data)[clip][int(start_s * 16000) :][: int(length_s * 16000)]
    wave = np.clip(gain * segment, -1, 1)  # gains above 1 clip
    wave = soxr.resample(wave, 16000, rate).astype(np.float32)
    model = embedder()
    vec = model.embed(wave, rate)[0]
    check_embedding(vec, model.embed_dim)
    if gain == 1.0 and rate >= 16000:  # the same audio, only resampled
        assert float(vec @ model.embed(segment, 16000)[0]) > 0.98


@pytest.mark.slow
@MANY
@given(data=st.data(), rate=RATES)
def test_many_arrays(data: st.DataObject, rate: int) -> None:
    wave = data.draw(any_audio(rate))
    result = next(embedder().iter_embed([wave], rate))
    if result.error is None:
        assert result.embedding is not None
        check_embedding(result.embedding, embedder().embed_dim)
    else:
        assert type(result.error) in (ValueError, AudioError), repr(result.error)
