"""Tests of ``voxvec models``: every architecture and pretrained model with its details."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from voxvec.cli import main
from voxvec.models import create_model, list_models
from voxvec.weights import list_pretrained


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}


def test_models_lists_architectures_and_pretrained(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    specs = [s for s in list_pretrained() if s.url is not None]
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    if specs:  # one downloaded file in the hub cache: that model works offline
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / specs[0].filename).write_bytes(b"x")

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "name",
        "type",
        "arch",
        "rate",
        "frontend",
        "params",
        "size",
        "weights",
    ]
    rows = _rows(out)
    for name in list_models():
        model = create_model(name)
        n_params = sum(p.numel() for p in model.parameters())
        assert rows[name][1:5] == [
            "architecture",
            name,
            str(model.sample_rate),
            model.frontend.kind,
        ]
        assert rows[name][5] == f"{n_params / 1e6:.1f}M"
        assert rows[name][-1] == "untrained"
    for spec in list_pretrained():
        row = rows[spec.name]
        assert row[1:5] == ["pretrained", spec.arch, str(spec.sample_rate), spec.frontend]
    if specs:
        assert rows[specs[0].name][-1] == "cached"
        assert all(rows[s.name][-1] in ("download", "cached") for s in specs[1:])
