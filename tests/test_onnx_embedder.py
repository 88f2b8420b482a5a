"""Tests for voxvec.onnx_embedder: the exported default model run by onnxruntime through
voxvec.load gives the PyTorch Embedder's embeddings on real speech (files, arrays at other
rates, padded batches, windows, speaker means, verification with the card's thresholds) and
imports no torch; int8 quantisation; clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import voxvec
from voxvec.audio import io
from voxvec.export import export
from voxvec.inference import Embedder
from voxvec.onnx_embedder import CARD_KEY, OnnxEmbedder, onnx_providers
from voxvec.weights import ALIASES, DEFAULT_MODEL, load_model

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")

TOLERANCE = 1e-4
"""Largest difference allowed between onnxruntime's and PyTorch's embeddings, per value."""

SPEECH = ("103-1240-0000.flac", "1034-121119-0000.flac", "1040-133433-0000.flac")
"""LibriSpeech utterances (16 kHz, about 14 s each)."""


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled default model exported to ONNX (float32)."""
    return export("voxvec-default", tmp_path_factory.mktemp("onnx") / "default.onnx")


@pytest.fixture(scope="module")
def torch_embedder() -> Embedder:
    model, card = load_model()
    return Embedder(model, "cpu", card, precision="float32")


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> list[Path]:
    root = shared_data / "librispeech-train-clean-100-sample" / "audio"
    files = [root / name for name in SPEECH]
    if not all(f.is_file() for f in files):
        pytest.skip(f"LibriSpeech sample not found in {root}")
    return files


def test_load_dispatches_onnx_files_to_onnxruntime(onnx_file: Path) -> None:
    embedder = voxvec.load(onnx_file, "cpu", window_s=2.0, hop_s=1.0)
    assert isinstance(embedder, OnnxEmbedder)
    assert (embedder.sample_rate, embedder.embed_dim, embedder.min_samples) == (16000, 256, 672)
    assert (embedder.window, embedder.hop) == (32000, 16000)
    assert embedder.providers == ["CPUExecutionProvider"] and embedder.device == "cpu"
    assert embedder.precision == "float32"
    assert "voxvec-default" in repr(embedder)


def test_files_arrays_and_padded_batches_match_pytorch(
    onnx_file: Path, torch_embedder: Embedder, speech: list[Path]
) -> None:
    embedder = voxvec.load(onnx_file, "cpu")
    got, expected = embedder.embed(speech), torch_embedder.embed(speech)
    assert got.shape == (3, 256)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)

    wav_8k = io.load(speech[0], 8000)[: 8000 * 5]  # resampled inside, by the shared code
    np.testing.assert_allclose(
        embedder.embed(wav_8k, 8000), torch_embedder.embed(wav_8k, 8000), atol=TOLERANCE
    )

    waves = [io.load(f, 16000)[:n] for f, n in zip(speech, (16000 * 3, 16000, 24000), strict=True)]
    batch = np.zeros((3, 16000 * 3), np.float32)
    for row, wav in zip(batch, waves, strict=True):
        row[: len(wav)] = wav
    lengths = np.array([len(w) for w in waves])
    padded = embedder.embed(batch, 16000, lengths=lengths)
    np.testing.assert_allclose(
        padded, torch_embedder.embed(batch, 16000, lengths=lengths), atol=TOLERANCE
    )
    alone = np.concatenate([embedder.embed(w, 16000) for w in waves])
    np.testing.assert_allclose(padded, alone, atol=TOLERANCE)  # padding changes nothing


def test_windows_vad_and_speaker_means_match_pytorch(
    onnx_file: Path, torch_embedder: Embedder, speech: list[Path]
) -> None:
    options = {"window_s": 3.0, "hop_s": 1.5, "vad": "energy"}
    embedder = voxvec.load(onnx_file, "cpu", **options)
    reference = Embedder(
        torch_embedder.model, card=torch_embedder.card, precision="float32", **options
    )
    for got, expected in zip(
        embedder.embed_windows(speech[:2]), reference.embed_windows(speech[:2]), strict=True
    ):
        assert len(got.embeddings) > 1 and got.speech_s < got.duration_s  # windows, trimmed
        np.testing.assert_allclose(got.embeddings, expected.embeddings, atol=TOLERANCE)
        np.testing.assert_array_equal(got.starts_s, expected.starts_s)
        np.testing.assert_array_equal(got.ends_s, expected.ends_s)
        assert got.speech_s == expected.speech_s
    np.testing.assert_allclose(
        embedder.embed_speaker(speech[:2]), reference.embed_speaker(speech[:2]), atol=TOLERANCE
    )


def test_verify_uses_the_thresholds_stored_in_the_graph(
    onnx_file: Path, torch_embedder: Embedder, speech: list[Path]
) -> None:
    embedder = voxvec.load(onnx_file)
    entries = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert json.loads(entries[CARD_KEY])["thresholds"] == torch_embedder.card["thresholds"]
    assert embedder.threshold == torch_embedder.threshold
    assert embedder.resolve_threshold("far1") == torch_embedder.resolve_threshold("far1")
    assert f"{ALIASES[DEFAULT_MODEL]}'s card" in embedder.threshold_source()
    score, same = embedder.verify(speech[0], speech[1])
    expected_score, expected_same = torch_embedder.verify(speech[0], speech[1])
    assert abs(score - expected_score) < TOLERANCE and same == expected_same


def test_the_onnx_path_and_streaming_import_no_torch(onnx_file: Path, speech: list[Path]) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import voxvec
        from voxvec.audio import load

        e = voxvec.load({str(onnx_file)!r}, window_s=3.0)
        files = {[str(f) for f in speech[:2]]!r}
        emb = e.embed(files)
        batch = np.zeros((2, 48000), np.float32)
        batch[0], batch[1, :24000] = load(files[0], 16000)[:48000], load(files[1], 16000)[:24000]
        padded = e.embed(batch, 16000, lengths=np.array([48000, 24000]))
        windows = e.embed_windows(files[0])[0]
        score, same = e.verify(files[0], files[1])
        assert emb.shape == padded.shape == (2, 256) and len(windows.embeddings) > 1

        from voxvec.streaming import StreamingEmbedder

        stream = StreamingEmbedder(e)
        wav = load(files[0], 16000)
        for start in range(0, len(wav), 4000):
            stream.push(wav[start : start + 4000])
        assert np.abs(stream.finish().embeddings - windows.embeddings).max() < 1e-5
        assert "torch" not in sys.modules, "torch was imported"
        print(score)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert -1 <= float(result.stdout) <= 1


def test_int8_quantisation_is_smaller_and_close(
    onnx_file: Path, tmp_path: Path, speech: list[Path]
) -> None:
    path = export("voxvec-default", tmp_path / "int8.onnx", quantize="int8")
    assert path.stat().st_size < onnx_file.stat().st_size / 3
    assert not list(tmp_path.glob(".*float32*"))  # the float32 intermediate is removed
    quantised, exact = voxvec.load(path), voxvec.load(onnx_file)
    assert quantised.precision == "int8" and quantised.card["quantization"] == "int8"
    assert quantised.threshold == exact.threshold
    cosines = np.sum(quantised.embed(speech) * exact.embed(speech), axis=1)
    assert (cosines > 0.95).all(), cosines  # quantisation noise, not another speaker
    assert (cosines < 1 - 1e-6).all()  # it did quantise


def test_quantisation_is_for_onnx_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quantization is for onnx"):
        export("voxvec-default", tmp_path / "m.ts", quantize="int8")
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        export("voxvec-default", tmp_path / "m.onnx", quantize="int4")


def test_errors_are_clear(onnx_file: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        voxvec.load(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="precision must be 'auto' or 'float32'"):
        voxvec.load(onnx_file, precision="bfloat16")
    with pytest.raises(ValueError, match="num_threads"):
        voxvec.load(onnx_file, num_threads=0)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="not an ONNX model"):
        voxvec.load(garbage)
    bare = onnx.load(str(onnx_file))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="no voxvec model card"):
        voxvec.load(tmp_path / "bare.onnx")


def test_devices_map_to_providers() -> None:
    cpu_only = ["CPUExecutionProvider"]
    with_cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(None, cpu_only) == onnx_providers("auto", cpu_only) == cpu_only
    assert onnx_providers("auto", with_cuda) == with_cuda
    assert onnx_providers("cpu", with_cuda) == cpu_only
    assert onnx_providers("cuda:1", with_cuda) == [
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
    with pytest.raises(ValueError, match="no CUDA provider"):
        onnx_providers("cuda", cpu_only)
    with pytest.raises(ValueError, match="device must be"):
        onnx_providers("tpu", with_cuda)


def test_the_command_line_runs_onnx_models_on_the_threads_given(
    onnx_file: Path,
    torch_embedder: Embedder,
    speech: list[Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from voxvec.cli import main

    out = tmp_path / "emb.npy"
    argv = ["embed", str(speech[0]), "--model", str(onnx_file), "--out", str(out), "--threads", "1"]
    with caplog.at_level("INFO", logger="voxvec.cli.model_options"):
        assert main([*argv, "--quiet"]) == 0
    np.testing.assert_allclose(np.load(out), torch_embedder.embed(speech[0]), atol=TOLERANCE)
    assert "precision float32 (auto)" in caplog.text and "threads 1" in caplog.text
