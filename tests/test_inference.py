"""Tests of voxvec.inference: inputs, batching, windows, VAD, errors, speaker means, similarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voxvec.audio import io
from voxvec.audio.vad import active_level_db, trim_silence
from voxvec.inference import Embedder, similarity
from voxvec.models import create_model, list_models
from voxvec.registry import get_model_class
from voxvec.runtime import native_bfloat16
from voxvec.weights import load_model

SO_FILES = ("audio/0001/000010011.ogg", "audio/0001/000010035.ogg", "audio/0001/000010053.ogg")


def _synthetic(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """Noisy harmonic tone with a slow amplitude envelope, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 100 + 50 * seed
    wav = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    wav = wav * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(t.size)
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    """One untrained model per registered architecture (seeded)."""
    out = {}
    for name in list_models():
        torch.manual_seed(0)
        out[name] = create_model(name).eval()
    return out


@pytest.fixture(scope="module")
def small(models: dict[str, torch.nn.Module]) -> Embedder:
    """An Embedder around the registered model with the fewest parameters (fast tests)."""
    name = min(models, key=lambda n: sum(p.numel() for p in models[n].parameters()))
    return Embedder(models[name], precision="float32")


@pytest.fixture(scope="module")
def real_files(shared_data: Path) -> list[Path]:
    """Real speech of different lengths, formats and sample rates (16 kHz Opus/FLAC, 8 kHz FLAC)."""
    files = [shared_data / "speechocean762" / f for f in SO_FILES[:2]]
    files.append(shared_data / "free-spoken-digits" / "audio/george/0_10.flac")  # 0.74 s, 8 kHz
    return files


@pytest.mark.parametrize("name", list_models())
def test_batched_equals_one_by_one_every_model(models: dict, name: str) -> None:
    embedder = Embedder(models[name], precision="float32")
    sr = embedder.sample_rate
    waves = [_synthetic(0.6 + 0.4 * i, sr, seed=i) for i in range(3)]
    alone = np.stack([embedder.embed(w, sr)[0] for w in waves])
    assert alone.shape == (3, embedder.embed_dim) and alone.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(alone, axis=1), 1.0, atol=1e-5)
    batched = embedder.embed(waves, sr, batch_size=2)
    np.testing.assert_allclose(batched, alone, atol=1e-4)
    # A padded (B, T) batch with lengths gives the same rows.
    padded = np.zeros((3, max(map(len, waves))), dtype=np.float32)
    for i, w in enumerate(waves):
        padded[i, : len(w)] = w
    lengths = np.array([len(w) for w in waves])
    np.testing.assert_allclose(embedder.embed(padded, sr, lengths=lengths), alone, atol=1e-4)
    # Different items give different embeddings (the model is not constant).
    assert similarity(alone[0], alone[2]) < 0.9999


def test_real_files_batched_equals_one_by_one(small: Embedder, real_files: list[Path]) -> None:
    mixed: list = list(real_files)
    wav, sr = io.read(real_files[2])  # the 8 kHz file again, as an array at its native rate
    mixed.append(wav)
    batched = small.embed(mixed, sample_rate=sr, batch_size=2)
    assert batched.shape == (len(mixed), small.embed_dim)
    for i, path in enumerate(real_files):
        np.testing.assert_allclose(batched[i], small.embed(path)[0], atol=1e-4)
    # The array, resampled by embed, gives what the file gives.
    np.testing.assert_allclose(batched[-1], batched[2], atol=1e-4)
    # Tensor input and return_tensors="pt" agree with numpy.
    emb_t = small.embed(torch.from_numpy(wav), sr, return_tensors="pt")
    assert isinstance(emb_t, torch.Tensor) and emb_t.shape == (1, small.embed_dim)
    np.testing.assert_allclose(emb_t.numpy()[0], batched[2], atol=1e-4)


def test_long_audio_windows_bound_memory(small: Embedder, shared_data: Path) -> None:
    sr = small.sample_rate
    parts = [io.load(shared_data / "speechocean762" / f, sr) for f in SO_FILES]
    speech = np.concatenate(parts * 8)[: 60 * sr]  # 60 s of real speech
    assert len(speech) == 60 * sr
    embedder = Embedder(small.model, window_s=20.0, hop_s=10.0)

    seen: list[tuple[int, ...]] = []
    hook = small.model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    try:
        emb = embedder.embed(speech, sr, batch_size=2)
    finally:
        hook.remove()
    # 5 windows of 20 s every 10 s, at most 2 per forward pass, none longer than a window.
    assert sum(s[0] for s in seen) == 5
    assert max(s[0] for s in seen) <= 2
    assert all(s[1] <= 20 * sr for s in seen)  # waveform samples: the model's input
    # The result is the re-normalised mean of the windows embedded on their own.
    windows = [speech[s : s + 20 * sr] for s in range(0, 40 * sr + 1, 10 * sr)]
    per_window = Embedder(small.model, window_s=None).embed(windows, sr)
    mean = per_window.mean(0)
    np.testing.assert_allclose(emb[0], mean / np.linalg.norm(mean), atol=1e-4)


def test_default_windows_are_20_s_side_by_side(small: Embedder, shared_data: Path) -> None:
    sr = small.sample_rate
    parts = [io.load(shared_data / "speechocean762" / f, sr) for f in SO_FILES]
    speech = np.concatenate(parts * 8)[: 45 * sr]  # 45 s of real speech
    embedder = Embedder(small.model, precision="float32")
    assert (embedder.window, embedder.hop) == (20 * sr, 20 * sr)
    # 45 s: windows at 0 and 20 s, and one more ending at the end (25-45 s).
    windows = [speech[s * sr : (s + 20) * sr] for s in (0, 20, 25)]
    per_window = embedder.embed(windows, sr)
    mean = per_window.mean(0)
    np.testing.assert_allclose(
        embedder.embed(speech, sr)[0], mean / np.linalg.norm(mean), atol=1e-4
    )
    # Up to 20 s an input is one piece.
    whole = Embedder(small.model, window_s=None, precision="float32").embed(speech[: 20 * sr], sr)
    np.testing.assert_allclose(embedder.embed(speech[: 20 * sr], sr), whole, atol=1e-5)


def test_windows_mixed_with_short_items_match_alone(small: Embedder) -> None:
    sr = small.sample_rate
    embedder = Embedder(small.model, window_s=2.0, hop_s=1.5)
    waves = [_synthetic(5.3, sr, 1), _synthetic(1.2, sr, 2), _synthetic(3.0, sr, 3)]
    together = embedder.embed(waves, sr, batch_size=3)
    for i, w in enumerate(waves):
        np.testing.assert_allclose(together[i], embedder.embed(w, sr)[0], atol=1e-4)


def test_vad_trims_silence_before_embedding(small: Embedder, real_files: list[Path]) -> None:
    sr = small.sample_rate
    speech = io.load(real_files[0], sr)
    silence = np.zeros(3 * sr, dtype=np.float32)
    padded = np.concatenate([silence, speech, silence])
    embedder = Embedder(small.model, vad="energy", precision="float32")
    expected = small.embed(trim_silence(padded, sr, method="energy"), sr)
    np.testing.assert_allclose(embedder.embed(padded, sr), expected, atol=1e-4)
    assert len(trim_silence(padded, sr, method="energy")) < len(padded) - 2 * sr
    with pytest.raises(ValueError, match=r"input.*speech found by VAD.*min_speech_s"):
        embedder.embed(np.zeros(5 * sr, dtype=np.float32), sr)


def test_bfloat16_is_close_to_float32_on_real_speech(
    models: dict, real_files: list[Path], shared_data: Path
) -> None:
    # The default model on 13-16 s audiobook files (long sums over time) and shorter clips.
    libri = sorted((shared_data / "librispeech-train-clean-100-sample" / "audio").glob("*.flac"))
    files = [*libri[:6], *real_files]
    model, card = load_model()
    full = Embedder(model, card=card, precision="float32")
    half = Embedder(model, card=card, precision="bfloat16")
    assert (full.precision, half.precision) == ("float32", "bfloat16")
    a, b = full.embed(files), half.embed(files)
    assert b.dtype == np.float32 and not np.array_equal(a, b)  # b really is bfloat16's
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(1).min() > 0.9995
    # Batching (other padded lengths) changes a bfloat16 embedding less than that: every sum
    # over time accumulates in float32 (a bfloat16 one drifted to 0.996 on these files).
    alone = np.stack([half.embed(f)[0] for f in files])
    assert (alone * b).sum(1).min() > 0.9999
    # "auto" picks bfloat16 exactly where the hardware has it; anything else is refused.
    auto = Embedder(models["ecapa"], precision="auto").precision
    assert auto == ("bfloat16" if native_bfloat16(torch.device("cpu")) else "float32")
    assert not native_bfloat16(torch.device("meta"))
    with pytest.raises(ValueError, match="precision must be one of"):
        Embedder(models["ecapa"], precision="float16")


def test_short_input_is_a_clear_error(small: Embedder) -> None:
    sr = small.sample_rate
    with pytest.raises(ValueError, match=r"input\[1\].*0\.20 s of audio.*min_speech_s=0\.5"):
        small.embed([_synthetic(1.0, sr, 0), _synthetic(0.2, sr, 1)], sr)
    tiny = Embedder(small.model, min_speech_s=0)
    with pytest.raises(ValueError, match=r"input.*shorter than the model's minimum"):
        tiny.embed(np.full(small.model.min_samples - 1, 0.1, dtype=np.float32), sr)


def test_file_errors_name_the_file(small: Embedder, real_files: list[Path], tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        small.embed([real_files[0], missing])
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"not audio at all" * 100)
    with pytest.raises(io.AudioError, match="corrupt.flac"):
        small.embed([real_files[0], corrupt])


def test_iter_embed_reports_bad_inputs_and_carries_on(
    small: Embedder, real_files: list[Path], tmp_path: Path
) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, _synthetic(0.1, 16000, 0), 16000)
    inputs = [real_files[0], tmp_path / "missing.wav", short, real_files[1]]
    results = list(small.iter_embed(inputs, chunk_size=2, batch_size=2))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert [r.source for r in results] == [str(p) for p in inputs]
    assert isinstance(results[1].error, FileNotFoundError) and results[1].embedding is None
    assert isinstance(results[2].error, ValueError) and "short.wav" in str(results[2].error)
    good = small.embed([real_files[0], real_files[1]])
    np.testing.assert_allclose(results[0].embedding, good[0], atol=1e-4)
    np.testing.assert_allclose(results[3].embedding, good[1], atol=1e-4)


def test_input_validation(small: Embedder, sine_wave: np.ndarray) -> None:
    with pytest.raises(ValueError, match="sample_rate is required"):
        small.embed(sine_wave)
    with pytest.raises(ValueError, match="sample_rate is required"):
        small.embed([sine_wave])
    with pytest.raises(ValueError, match="lengths must be integers"):
        small.embed(np.stack([sine_wave, sine_wave]), 16000, lengths=np.array([16000, 20000]))
    with pytest.raises(ValueError, match="lengths must have shape"):
        small.embed(np.stack([sine_wave, sine_wave]), 16000, lengths=np.array([16000]))
    with pytest.raises(ValueError, match="only valid with a"):
        small.embed(sine_wave, 16000, lengths=np.array([100]))
    with pytest.raises(ValueError, match="1-D waveforms"):
        small.embed([np.stack([sine_wave, sine_wave])], 16000)
    with pytest.raises(TypeError, match="input\\[0\\]"):
        small.embed([3.5])
    with pytest.raises(io.AudioError, match="input.*NaN"):
        small.embed(np.full(16000, np.nan, dtype=np.float32), 16000)
    assert small.embed([], 16000).shape == (0, small.embed_dim)


def test_options_are_validated(small: Embedder) -> None:
    with pytest.raises(ValueError, match="hop_s"):
        Embedder(small.model, window_s=2.0, hop_s=3.0)
    with pytest.raises(ValueError, match="vad must be"):
        Embedder(small.model, vad="webrtc")
    with pytest.raises(ValueError, match="min_speech_s"):
        Embedder(small.model, min_speech_s=-1)
    with pytest.raises(ValueError, match="window_s"):
        Embedder(small.model, window_s=1e-4)


def test_level_db_makes_the_default_model_level_invariant(shared_data: Path) -> None:
    # The same utterances 20 dB quieter: voxvec-default's log-mel floor moves the embedding
    # (measured cosine 0.76-0.86 on these files), unless every input is scaled to one level.
    libri = sorted((shared_data / "librispeech-train-clean-100-sample" / "audio").glob("*.flac"))
    waves = [io.load(f, 16000) for f in libri[:3]]
    model, card = load_model()
    own = Embedder(model, card=card, precision="float32")
    levelled = Embedder(model, card=card, precision="float32", level_db=-20)
    for embedder, bound in ((own, lambda c: c < 0.95), (levelled, lambda c: c > 0.9999)):
        loud = embedder.embed(waves, 16000)
        quiet = embedder.embed([w * 0.1 for w in waves], 16000)
        cosines = (loud * quiet).sum(1)
        assert all(bound(c) for c in cosines), (embedder.level_db, cosines)
    for bad in (5.0, -100.0, float("nan"), "loud"):
        with pytest.raises(ValueError, match="level_db must be"):
            Embedder(model, level_db=bad)  # type: ignore[arg-type]


def test_active_level_leaves_out_pauses() -> None:
    sr = 16000
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    assert active_level_db(tone, sr) == pytest.approx(10 * np.log10(0.1**2 / 2), abs=0.01)
    with_pause = np.concatenate([tone, np.zeros(sr // 2, np.float32)])
    assert active_level_db(with_pause, sr) == pytest.approx(active_level_db(tone, sr), abs=0.01)
    assert active_level_db(np.zeros(sr, np.float32), sr) == -100.0
    assert active_level_db(tone[:100], sr) == pytest.approx(active_level_db(tone, sr), abs=0.5)


def test_embed_speaker_and_verify(small: Embedder, real_files: list[Path]) -> None:
    rows = small.embed(real_files[:2])
    spk = small.embed_speaker(real_files[:2])
    assert spk.shape == (small.embed_dim,)
    np.testing.assert_allclose(spk, rows.mean(0) / np.linalg.norm(rows.mean(0)), atol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        small.embed_speaker([])

    with pytest.raises(ValueError, match="threshold"):
        small.verify(real_files[0], real_files[1])
    score = similarity(rows[0], rows[1])
    assert small.verify(real_files[0], real_files[1], threshold=score - 1e-3) == pytest.approx(
        (score, True), abs=1e-4
    )
    carded = Embedder(small.model, card={"thresholds": {"eer": score + 1e-3, "far1": score - 1e-3}})
    got_score, same = carded.verify(real_files[0], real_files[1])
    assert got_score == pytest.approx(score, abs=1e-4) and same is False
    assert carded.verify(real_files[0], real_files[1], threshold="far1")[1] is True
    with pytest.raises(ValueError, match="'far5'.*'eer', 'far1'"):
        carded.verify(real_files[0], real_files[1], threshold="far5")


def test_similarity_shapes_and_values() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 8)), rng.standard_normal((5, 8))
    expected = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (
        b / np.linalg.norm(b, axis=1, keepdims=True)
    ).T
    scores = similarity(a, b)
    assert scores.shape == (3, 5)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert isinstance(similarity(a[0], b[1]), float)
    assert similarity(a[0], 2 * a[0]) == pytest.approx(1.0)
    assert similarity(torch.from_numpy(a[1]), b).shape == (5,)
    with pytest.raises(ValueError, match="same D"):
        similarity(a, b[:, :4])
    with pytest.raises(ValueError, match="zero vector"):
        similarity(np.zeros(8), b[0])


def test_device_and_repr(models: dict) -> None:
    name = next(iter(models))
    torch.manual_seed(0)
    model = create_model(name).train()  # the Embedder puts it in eval mode
    embedder = Embedder(model, device="cpu", card={"name": "demo"})
    assert embedder.device == torch.device("cpu")
    assert "demo" in repr(embedder) and str(embedder.sample_rate) in repr(embedder)
    assert embedder.model.training is False
    assert get_model_class(name).config_class().frontend.sample_rate == embedder.sample_rate


@pytest.mark.gpu
def test_cuda_matches_cpu(models: dict) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    name = next(iter(models))
    cpu = Embedder(create_model(name).eval())
    cpu.model.load_state_dict(models[name].state_dict())
    sr = cpu.sample_rate
    waves = [_synthetic(0.8 + 0.5 * i, sr, seed=i) for i in range(3)]
    expected = cpu.embed(waves, sr)
    gpu = Embedder(cpu.model, device="cuda")
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.embed(waves, sr, batch_size=2), expected, atol=1e-3)


# --- window embeddings with times --------------------------------------------------------------


def test_embed_windows_times_and_mean(small: Embedder) -> None:
    sr = small.sample_rate
    embedder = Embedder(small.model, window_s=2.0, hop_s=1.5, precision="float32")
    wave = _synthetic(5.3, sr, 1)
    (windows,) = embedder.embed_windows(wave, sr)
    # 2 s windows every 1.5 s over 5.3 s: starts 0, 1.5, 3.0 and a last one ending at the end.
    np.testing.assert_allclose(windows.starts_s, [0.0, 1.5, 3.0, 3.3])
    np.testing.assert_allclose(windows.ends_s, [2.0, 3.5, 5.0, 5.3])
    assert windows.embeddings.shape == (4, small.embed_dim)
    assert windows.duration_s == windows.speech_s == pytest.approx(5.3)
    # Each window is what that stretch of audio gives alone; embed() is their re-normalised mean.
    for k, (start, end) in enumerate(zip(windows.starts_s, windows.ends_s, strict=True)):
        alone = embedder.embed(wave[round(start * sr) : round(end * sr)], sr)[0]
        np.testing.assert_allclose(windows.embeddings[k], alone, atol=1e-4)
    np.testing.assert_allclose(embedder.embed(wave, sr)[0], windows.mean(), atol=1e-6)
    short = embedder.embed_windows([_synthetic(1.2, sr, 2)], sr)[0]
    assert short.embeddings.shape == (1, small.embed_dim)
    np.testing.assert_allclose([short.starts_s[0], short.ends_s[0]], [0.0, 1.2])


def test_embed_windows_times_are_in_the_original_audio_with_vad(
    small: Embedder, real_files: list[Path]
) -> None:
    """With VAD, windows cover speech only, and their times still point into the input."""
    sr = small.sample_rate
    speech = io.load(real_files[0], sr)
    silence = np.zeros(4 * sr, dtype=np.float32)
    padded = np.concatenate([silence, speech, silence, speech])
    embedder = Embedder(small.model, vad="energy", window_s=1.0, precision="float32")
    (windows,) = embedder.embed_windows(padded, sr)
    assert windows.duration_s == pytest.approx(len(padded) / sr)
    assert windows.speech_s < windows.duration_s - 6
    assert windows.starts_s[0] >= 3.5  # the leading 4 s of silence were trimmed
    assert (np.diff(windows.starts_s) > 0).all() and (windows.ends_s > windows.starts_s).all()
    # Windows lying inside one speech stretch span exactly 1 s; the one over the cut bridges it.
    spans = windows.ends_s - windows.starts_s
    assert np.isclose(spans, 1.0).sum() >= len(spans) - 2 and spans.max() > 4.0
    # Cutting the original audio at a window's times gives that window's embedding.
    k = int(np.argmin(np.abs(windows.starts_s - (4 + len(speech) / sr + 4.5))))
    assert np.isclose(spans[k], 1.0)
    alone = Embedder(small.model, precision="float32").embed(
        padded[round(windows.starts_s[k] * sr) : round(windows.ends_s[k] * sr)], sr
    )[0]
    np.testing.assert_allclose(windows.embeddings[k], alone, atol=1e-4)
    np.testing.assert_allclose(embedder.embed(padded, sr)[0], windows.mean(), atol=1e-6)


def test_embed_windows_errors_name_the_input(small: Embedder) -> None:
    with pytest.raises(ValueError, match=r"input\[1\].*min_speech_s"):
        small.embed_windows([_synthetic(1.0, 16000, 0), _synthetic(0.1, 16000, 1)], 16000)


def test_threshold_source_says_where_the_threshold_comes_from(small: Embedder) -> None:
    card = {"name": "m", "thresholds": {"eer": 0.4}, "thresholds_from": "valid split"}
    embedder = Embedder(small.model, card=card)
    assert embedder.threshold_source(0.3) == "given"
    assert embedder.threshold_source() == "operating point 'eer' of m's card (valid split)"
    with pytest.raises(ValueError, match="far1"):
        embedder.threshold_source("far1")


# --- embeddings unchanged by the "one path" refactor -------------------------------------------


def test_embeddings_equal_those_recorded_before_the_refactor(shared_data: Path) -> None:
    """Values recorded at commit a6d7889, before models owned their front-ends (see the file)."""
    import json

    reference = json.loads((Path(__file__).parent / "assets/reference_embeddings.json").read_text())
    waves = [io.load(shared_data / f, 16000)[: 3 * 16000] for f in reference["files"]]
    for name, expected in reference["models"].items():
        if name == "voxvec-default-v1":
            model, _ = load_model(name)
        else:
            torch.manual_seed(0)
            model = create_model(name)
        got = Embedder(model, precision="float32", min_speech_s=0).embed(waves, 16000)
        np.testing.assert_allclose(got, np.array(expected), atol=2e-5, err_msg=name)


# --- hostile and degenerate input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("zeros", lambda t: np.zeros_like(t), "(silence|0.00 s of speech found by VAD)"),
        ("white noise", lambda t: 0.1 * np.random.default_rng(0).standard_normal(t.size), "steady"),
        ("sine tone", lambda t: 0.3 * np.sin(2 * np.pi * 440 * t), "steady"),
        (
            "mains hum",
            lambda t: 0.2 * np.sin(2 * np.pi * 50 * t) + 0.05 * np.sin(2 * np.pi * 150 * t),
            "steady",
        ),  # noqa: E501
    ],
)
def test_inputs_without_speech_are_refused_not_scored(
    small: Embedder,
    name: str,
    make,
    reason: str,  # type: ignore[no-untyped-def]
) -> None:
    """Two silent (or noise, or tone) inputs used to score 1.0 / 0.97 / 0.85, 'same speaker'."""
    t = np.arange(3 * 16000) / 16000
    wav = make(t).astype(np.float32)
    for vad in ("off", "energy"):
        embedder = Embedder(small.model, vad=vad)
        with pytest.raises(ValueError, match=rf"input: .*{reason}"):
            embedder.embed(wav, 16000)
    # The check is part of min_speech_s: 0 embeds anything, as documented.
    assert Embedder(small.model, min_speech_s=0).embed(wav, 16000).shape == (1, small.embed_dim)


def test_real_speech_passes_the_speech_check(small: Embedder, shared_data: Path) -> None:
    """Every file of a spread of real corpora (and the 8 kHz digits) is accepted."""
    import csv

    for corpus in ("speechocean762", "free-spoken-digits", "arabic-speech-commands"):
        rows = list(csv.DictReader(open(shared_data / corpus / "manifest.csv")))[::97][:20]
        files = [shared_data / corpus / r["path"] for r in rows]
        results = list(Embedder(small.model, min_speech_s=0.1).iter_embed(files))
        assert [r.error for r in results if r.error is not None] == [], corpus


def test_loud_arrays_embed_like_the_same_audio_at_a_normal_level(small: Embedder) -> None:
    """Floats on an int16 scale or with a peak of 1e18 used to give NaN embeddings silently."""
    wave = _synthetic(2.0, 16000, 1)
    normal = small.embed(wave / np.abs(wave).max(), 16000)
    for gain in (32768.0, 1e18):
        loud = small.embed((wave * gain).astype(np.float32), 16000)
        assert np.isfinite(loud).all()
        np.testing.assert_allclose(loud, normal, atol=1e-5)


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 16000.5, "16000", True, 1, 0])
def test_bad_sample_rates_are_clear_errors(small: Embedder, rate: object) -> None:
    with pytest.raises(ValueError, match="sample_rate must be an integer number of Hz"):
        small.embed(_synthetic(1.0, 16000, 0), rate)  # type: ignore[arg-type]


def test_non_finite_options_are_refused(small: Embedder) -> None:
    for kwargs in ({"min_speech_s": float("nan")}, {"min_speech_s": float("inf")}):
        with pytest.raises(ValueError, match="min_speech_s must be a finite number"):
            Embedder(small.model, **kwargs)
    for kwargs in ({"window_s": float("inf")}, {"window_s": float("nan")}, {"hop_s": float("nan")}):
        with pytest.raises(ValueError, match="hop_s <= window_s"):
            Embedder(small.model, **kwargs)
    with pytest.raises(ValueError, match="finite number, got nan"):
        small.verify(_synthetic(1.0, 16000, 0), _synthetic(1.0, 16000, 1), sample_rate=16000,
                     threshold=float("nan"))  # fmt: skip


def test_one_embedder_shared_by_threads_matches_sequential_results(
    small: Embedder, real_files: list[Path]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    embedder = Embedder(small.model, vad="energy", precision="float32", min_speech_s=0.3)
    jobs = [real_files, real_files[::-1], real_files[1:]]
    sequential = [embedder.embed(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = list(pool.map(embedder.embed, jobs))
    for a, b in zip(sequential, threaded, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
