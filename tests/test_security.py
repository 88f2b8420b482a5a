"""No code runs from any file voxvec reads: every loading path is tried with a planted pickle
whose unpickling would write a marker file; each refuses it or loads it inertly."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from voxvec.embedding_files import read_embeddings
from voxvec.train.checkpoint import load_checkpoint
from voxvec.weights import load_model
from voxvec.weights.converters import CONVERTERS


class _Payload:
    """Unpickling this writes ``marker`` (through ``pathlib.Path.write_text``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pathlib.Path.write_text, (self.marker, "code from the file ran"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned.txt"


def _torch_file(tmp_path: Path, marker: Path, name: str) -> Path:
    path = tmp_path / name
    state = {"model_state_dict": {"w": torch.zeros(2)}, "payload": _Payload(marker)}
    torch.save(state, path)
    # The file is really dangerous: an unrestricted load runs the payload.
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path


LOADERS: dict[str, Callable[[Path], Any]] = {
    "voxvec.weights.load_model": load_model,
    "voxvec.load": lambda p: __import__("voxvec").load(p, device="cpu"),
    "training checkpoint (resume=, export)": load_checkpoint,
    **{f"converter {name}": converter.read for name, converter in CONVERTERS.items()},
}


@pytest.mark.parametrize("loader", list(LOADERS), ids=list(LOADERS))
def test_no_loading_path_runs_code_from_a_torch_file(
    loader: str, tmp_path: Path, marker: Path
) -> None:
    path = _torch_file(tmp_path, marker, "model.pt")
    try:
        LOADERS[loader](path)
    except (ValueError, KeyError, OSError, RuntimeError):
        pass  # refusing it is fine
    assert not marker.exists(), f"{loader} ran code from the file"


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_embedding_files_refuse_pickled_arrays(tmp_path: Path, marker: Path, suffix: str) -> None:
    path = tmp_path / f"emb{suffix}"
    payload = np.array([_Payload(marker)], dtype=object)
    if suffix == ".npy":
        np.save(path, payload, allow_pickle=True)
    else:
        np.savez(path, embeddings=payload)
    with pytest.raises((ValueError, OSError)):
        read_embeddings(path)
    assert not marker.exists()
