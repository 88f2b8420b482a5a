"""Tests for voxvec.export_graph: every registered model to ONNX and TorchScript, run on real
speech by onnxruntime and torch.jit.load, against PyTorch; graphs that tracing froze refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from voxvec.audio.io import load
from voxvec.export_graph import CARD_KEY, TOLERANCE, ExportError, export_graph
from voxvec.models import SpeakerEncoder, create_model, list_models

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")

SMALL = {
    "campplus": {"block_layers": (1, 1, 1), "growth_rate": 8, "init_channels": 32},
    "convgru": {
        "conv_layers": ((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2,
        "hidden_size": 16,
        "n_layers": 2,
        "embed_dim": 8,
    },
    "ecapa": {"channels": 32, "se_channels": 8, "mfa_channels": 48, "attention_channels": 16},
    "gru": {"hidden_size": 16, "n_layers": 2, "embed_dim": 8},
}
"""Small configs of every architecture (same code paths, seconds to export)."""

SPEECH = [
    f"audio/{name}.flac" for name in ("103-1240-0000", "1034-121119-0000", "1040-133433-0000")
]
"""LibriSpeech utterances (16 kHz, ~14 s each), cut to 1.3 s, 2.9 s and 2.1 s."""

EXTENSIONS = {"onnx": ".onnx", "torchscript": ".ts"}


def test_every_registered_model_has_a_small_config() -> None:
    assert sorted(SMALL) == list_models()


def real_batch(model: SpeakerEncoder, shared_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Three real utterances at the model's rate, right-padded, and their lengths."""
    root = shared_data / "librispeech-train-clean-100-sample"
    if not (root / SPEECH[0]).exists():
        pytest.skip(f"LibriSpeech sample not found in {root}")
    cuts = [int(seconds * model.sample_rate) for seconds in (1.3, 2.9, 2.1)]
    wavs = [load(root / path, model.sample_rate)[:n] for path, n in zip(SPEECH, cuts, strict=True)]
    batch = np.zeros((len(wavs), max(cuts)), dtype=np.float32)
    for row, wav in zip(batch, wavs, strict=True):
        row[: len(wav)] = wav
    return torch.from_numpy(batch), torch.tensor([len(w) for w in wavs])


def run_exported(path: Path, format: str, wav: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """Embeddings of the written file, loaded afresh (onnxruntime or torch.jit.load)."""
    if format == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"wav": wav.numpy(), "lengths": lengths.numpy()})[0]
    with torch.no_grad():
        return torch.jit.load(str(path))(wav, lengths).numpy()


def card_of(path: Path, format: str) -> dict:
    """The model card stored with an exported graph."""
    if format == "onnx":
        entries = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return json.loads(entries[CARD_KEY])
    files = {f"{CARD_KEY}.json": ""}
    torch.jit.load(str(path), _extra_files=files)
    return json.loads(files[f"{CARD_KEY}.json"])


def check_parity(model: SpeakerEncoder, path: Path, format: str, shared_data: Path) -> float:
    """Max difference of the file's embeddings from PyTorch's on real speech, padded and alone."""
    wav, lengths = real_batch(model, shared_data)
    with torch.no_grad():
        expected = model(wav, lengths).numpy()
    got = run_exported(path, format, wav, lengths)
    assert got.shape == expected.shape == (3, model.embed_dim)
    worst = float(np.abs(got - expected).max())
    for i, n in enumerate(lengths.tolist()):  # each item alone: an unpadded batch of one
        alone = run_exported(path, format, wav[i : i + 1, :n], lengths[i : i + 1])
        worst = max(worst, float(np.abs(alone[0] - expected[i]).max()))
    assert worst < TOLERANCE, f"{model.arch} {format}: {worst}"
    return worst


SLOW_TO_CHECK = {("campplus", "torchscript"), ("ecapa", "torchscript")}
"""TorchScript's executor optimises each new input size: these take tens of seconds."""


@pytest.mark.parametrize(
    ("arch", "format"),
    [
        pytest.param(arch, format, marks=[pytest.mark.slow] * ((arch, format) in SLOW_TO_CHECK))
        for arch in sorted(SMALL)
        for format in sorted(EXTENSIONS)
    ],
)
def test_every_model_exports_and_matches_pytorch_on_real_speech(
    arch: str, format: str, tmp_path: Path, shared_data: Path
) -> None:
    torch.manual_seed(0)
    model = create_model(arch, SMALL[arch]).eval()
    path = tmp_path / f"{arch}{EXTENSIONS[format]}"
    assert export_graph(model, path, format, {"name": "small"}) < TOLERANCE
    check_parity(model, path, format, shared_data)
    card = card_of(path, format)
    assert card == {
        "arch": arch,
        "sample_rate": model.sample_rate,
        "embed_dim": model.embed_dim,
        "min_samples": model.min_samples,
        "name": "small",
    }


@pytest.mark.slow
@pytest.mark.parametrize("format", sorted(EXTENSIONS))
@pytest.mark.parametrize("arch", sorted(SMALL))
def test_default_configs_export_and_match_pytorch(
    arch: str, format: str, tmp_path: Path, shared_data: Path
) -> None:
    torch.manual_seed(0)
    model = create_model(arch).eval()
    path = tmp_path / f"{arch}{EXTENSIONS[format]}"
    export_graph(model, path, format)
    check_parity(model, path, format, shared_data)


@pytest.mark.slow
@pytest.mark.parametrize("format", sorted(EXTENSIONS))
def test_the_bundled_default_model_exports(format: str, tmp_path: Path, shared_data: Path) -> None:
    from voxvec.weights import load_model

    model, card = load_model()
    path = tmp_path / f"default{EXTENSIONS[format]}"
    export_graph(model, path, format, card)
    check_parity(model, path, format, shared_data)
    assert card_of(path, format)["arch"] == model.arch


@pytest.mark.parametrize("format", sorted(EXTENSIONS))
def test_a_graph_that_tracing_froze_is_refused_and_removed(
    format: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = create_model("gru", SMALL["gru"]).eval()
    real_forward = type(model).forward
    monkeypatch.setattr(
        type(model),
        "forward",
        lambda self, wav, lengths=None: torch.roll(
            real_forward(self, wav, lengths), int(wav.shape[1]) % 7 + 1, dims=1
        ),
    )
    path = tmp_path / f"m{EXTENSIONS[format]}"
    with pytest.raises(ExportError, match=rf"the gru model traced into a {format} graph that "
                       r"differs from PyTorch by .* was not kept"):  # fmt: skip
        export_graph(model, path, format)
    assert not path.exists()


def test_an_exporter_failure_names_the_model_and_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Exporting the operator 'aten::fancy' is not supported")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    model = create_model("gru", SMALL["gru"])
    with pytest.raises(ExportError, match=r"the gru model cannot be exported to onnx: Exporting "
                       r"the operator 'aten::fancy' is not supported"):  # fmt: skip
        export_graph(model, tmp_path / "m.onnx", "onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ValueError, match="'tflite' is not a graph export format"):
        export_graph(model, tmp_path / "m.tflite", "tflite")


def test_a_single_layer_gru_is_refused_for_onnx_and_exports_to_torchscript(
    tmp_path: Path, shared_data: Path
) -> None:
    torch.manual_seed(0)
    model = create_model("convgru", {**SMALL["convgru"], "n_layers": 1}).eval()
    with pytest.raises(ExportError, match=r"the convgru model cannot be exported to onnx: "
                       r"PyTorch's ONNX exporter fails on a single-layer recurrent layer fed "
                       r"packed sequences, as rnn \(num_layers=1\) is"):  # fmt: skip
        export_graph(model, tmp_path / "m.onnx", "onnx")
    assert not (tmp_path / "m.onnx").exists()
    export_graph(model, tmp_path / "m.ts", "torchscript")
    check_parity(model, tmp_path / "m.ts", "torchscript", shared_data)
