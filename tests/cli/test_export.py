"""Tests of ``voxvec export``: checkpoint or run directory -> a bundle that voxvec.load reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import voxvec
from voxvec.cli import main
from voxvec.config import config_to_dict
from voxvec.models import create_model
from voxvec.train.checkpoint import save_checkpoint
from voxvec.weights import ALIASES, DEFAULT_MODEL, load_bundle

TINY = {"hidden_size": 16, "n_layers": 1, "embed_dim": 8}


@pytest.fixture
def run_dir(tmp_path):
    """A run directory with two training checkpoints of a tiny GRU (steps 10 and 20)."""
    for step in (10, 20):
        torch.manual_seed(step)
        model = create_model("gru", TINY)
        state = {
            "arch": "gru",
            "model_config": config_to_dict(model.config),
            "model": model.state_dict(),
            "optimizer": {"state": {}, "param_groups": []},
            "step": step,
            "epoch": 0,
            "config": {"loss": "ge2e"},
            "train_data": {"train_csv": "train.csv", "n_files": 12, "n_speakers": 3},
        }
        save_checkpoint(state, tmp_path / "run", step, keep_last_k=5)
    return tmp_path / "run"


def test_export_a_run_directory_takes_its_latest_checkpoint(run_dir, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["export", str(run_dir), "--out", str(out), "--meta", "name=tiny-gru",
                 "--meta", "licence=CC-BY-4.0"]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip() == str(out)
    model, card = load_bundle(out)
    assert card["steps"] == 20 and card["arch"] == "gru" and card["name"] == "tiny-gru"
    assert card["licence"] == "CC-BY-4.0" and card["train_data"]["n_speakers"] == 3
    torch.manual_seed(20)
    expected = create_model("gru", TINY).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key])
    embedder = voxvec.load(str(out), device="cpu", min_speech_s=0)  # noise in: not speech
    emb = embedder.embed([np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1],
                         sample_rate=22050)  # fmt: skip
    assert emb.shape == (1, 8) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_export_a_named_checkpoint(run_dir, tmp_path):
    out = tmp_path / "m10.safetensors"
    assert main(["export", str(run_dir / "ckpt_00000010.pt"), "--out", str(out)]) == 0
    assert load_bundle(out)[1]["steps"] == 10


def test_export_format_given_or_from_the_extension(run_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    assert main(["export", str(run_dir), "--out", str(out), "--format", "safetensors"]) == 0
    assert load_bundle(out)[1]["steps"] == 20


def test_export_a_run_to_torchscript_that_matches_pytorch(run_dir, tmp_path, capsys):
    out = tmp_path / "model.ts"
    assert main(["export", str(run_dir), "--out", str(out), "--meta", "name=tiny-gru"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    torch.manual_seed(20)
    model = create_model("gru", TINY).eval()
    rng = np.random.default_rng(0)
    wav = torch.from_numpy(rng.standard_normal((2, 30000)).astype(np.float32) * 0.1)
    lengths = torch.tensor([30000, 12345])
    with torch.no_grad():
        difference = torch.jit.load(str(out))(wav, lengths) - model(wav, lengths)
    assert float(difference.abs().max()) < 1e-4


def test_a_single_layer_gru_is_refused_for_onnx_with_the_reason(run_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the gru model cannot be exported to onnx: PyTorch's ONNX exporter fails on a " in err
    assert "rnn_stack (num_layers=1)" in err and "TorchScript (.ts) exports this one" in err
    assert not out.exists()


@pytest.mark.slow
def test_export_the_default_model_by_name(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = tmp_path / "voxvec-default.onnx"
    assert main(["export", "voxvec-default", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.stat().st_size > 1_000_000


def test_export_the_default_model_quantised_to_int8(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = tmp_path / "voxvec-default-int8.onnx"
    assert main(["export", "voxvec-default", "--out", str(out), "--quantize", "int8"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert list(tmp_path.iterdir()) == [out]  # the float32 intermediate is gone
    embedder = voxvec.load(out)
    assert embedder.precision == "int8" and embedder.card["name"] == ALIASES[DEFAULT_MODEL]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{empty}", "--out", "m.safetensors"], "no checkpoint"),
        (["{run}/nope.pt", "--out", "m.safetensors"], "nope.pt"),
        (["{run}", "--out", "m.onnx", "--format", "torchscript"], "torchscript files end in"),
        (["no-such-model", "--out", "m.onnx"], "unknown pretrained model 'no-such-model'"),
        (["{empty}", "--out", "m.ts"], "no checkpoint"),
        (["{run}", "--out", "m.onnx", "--format", "safetensors"], "safetensors files end in"),
        (["{run}", "--out", "m.bin"], "cannot tell the export format"),
        (["{run}", "--out", "m.ts", "--quantize", "int8"], "quantization is for onnx exports"),
    ],
)
def test_export_errors(run_dir, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    args = [a.format(run=run_dir, empty=tmp_path / "empty") for a in argv]
    args[2] = str(tmp_path / args[2])
    assert main(["export", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / Path(argv[2]).name).exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{run}", "--out", "m.safetensors", "--meta", "novalue"], "expected KEY=VALUE"),
        (["{run}", "--out", "m.safetensors", "--format", "h5"], "invalid choice: 'h5'"),
        (["{run}", "m.safetensors"], "the following arguments are required: --out"),
        (["{run}", "--out", "m.onnx", "--quantize", "int4"], "invalid choice: 'int4'"),
    ],
)
def test_export_usage_errors(run_dir, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", *[a.format(run=run_dir) for a in argv]])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_onnx_without_its_extra_fails_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    import voxvec.export

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a)
    )

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported before the extra was checked")

    monkeypatch.setattr(voxvec.export, "export", no_export)
    assert main(["export", "voxvec-default", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "ONNX export needs onnxruntime: pip install '.[onnx]'" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
