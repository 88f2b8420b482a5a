"""Tests for voxvec.export: formats from names or extensions, runs resolved to checkpoints.

The bundle itself is written by voxvec.train.checkpoint.export_checkpoint (tested with it, and
end to end in tests/cli/test_export.py) and the graphs by voxvec.export_graph (tests/
test_export_graph.py); here they are replaced by recorders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import voxvec.export_graph
import voxvec.train.checkpoint
import voxvec.weights
from voxvec.export import EXPORT_FORMATS, export, export_format


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, Any, Any]]:
    """The export_checkpoint calls made, as (checkpoint, out, metadata)."""
    made: list[tuple[Path, Any, Any]] = []

    def record(checkpoint: Path, out: Any, metadata: Any = None) -> Path:
        made.append((checkpoint, out, metadata))
        return Path(out)

    monkeypatch.setattr(voxvec.train.checkpoint, "export_checkpoint", record)
    return made


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory holding checkpoints of steps 5, 40 and 300 (their names are enough)."""
    for step in (40, 300, 5):
        (tmp_path / "run").mkdir(exist_ok=True)
        (tmp_path / "run" / f"ckpt_{step:08d}.pt").write_bytes(b"")
    return tmp_path / "run"


def test_format_from_the_extension_or_given() -> None:
    for name, suffix in EXPORT_FORMATS.items():
        assert export_format(f"model{suffix}") == name
        assert export_format(f"MODEL{suffix.upper()}", name) == name
    with pytest.raises(ValueError, match=r"cannot tell the export format of m\.bin"):
        export_format("m.bin")
    with pytest.raises(ValueError, match="onnx files end in .onnx, got m.safetensors"):
        export_format("m.safetensors", "onnx")
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_format("m.tflite", "tflite")


def test_a_run_exports_its_latest_checkpoint(run_dir: Path, tmp_path: Path, calls: list) -> None:
    out = tmp_path / "m.safetensors"
    assert export(run_dir, out, metadata={"name": "x"}) == out
    named = run_dir / "ckpt_00000005.pt"
    export(named, out, format="safetensors")
    assert calls == [(run_dir / "ckpt_00000300.pt", out, {"name": "x"}), (named, out, None)]


def test_graph_formats_export_what_load_model_reads(
    tmp_path: Path, calls: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    graphs: list[tuple[str, Path, str, dict]] = []
    monkeypatch.setattr(
        voxvec.export_graph,
        "export_graph",
        lambda model, out, format, card: graphs.append((model, Path(out), format, card)),
    )
    monkeypatch.setattr(
        voxvec.weights, "load_model", lambda source: (f"model of {source}", {"arch": "ecapa"})
    )
    assert export("voxvec-default", tmp_path / "m.onnx", metadata={"name": "x"}) == (
        tmp_path / "m.onnx"
    )
    export("bundle.safetensors", tmp_path / "m.ts")
    assert graphs == [
        ("model of voxvec-default", tmp_path / "m.onnx", "onnx", {"arch": "ecapa", "name": "x"}),
        ("model of bundle.safetensors", tmp_path / "m.ts", "torchscript", {"arch": "ecapa"}),
    ]
    assert calls == []


def test_runs_without_checkpoints(tmp_path: Path, calls: list) -> None:
    (tmp_path / "empty").mkdir()
    for suffix in EXPORT_FORMATS.values():
        with pytest.raises(FileNotFoundError, match="no checkpoint"):
            export(tmp_path / "empty", tmp_path / f"m{suffix}")
    assert calls == []
