"""Foreign checkpoint converters: the restricted unpickler and the RF5 release files."""

from __future__ import annotations

import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from voxvec.weights import load_model
from voxvec.weights.converters import (
    CONVERTERS,
    UnknownObject,
    get_converter,
    load_pickled_checkpoint,
    rf5_state_dict,
)


def test_restricted_loader_never_runs_or_imports_foreign_code(
    tmp_path: Path, foreign: tuple[types.ModuleType, Path]
) -> None:
    module, sentinel = foreign
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int16)}
    path = tmp_path / "ckpt.pt"
    torch.save(
        {"model_state_dict": state, "cfg": module.TrainConfig(), "p": module.Payload()}, path
    )

    # The file really is dangerous: an unrestricted load imports the module and runs its code.
    torch.load(path, weights_only=False)
    assert sentinel.exists()
    sentinel.unlink()
    sys.modules.pop(module.__name__)

    loaded = load_pickled_checkpoint(path)
    assert not sentinel.exists()
    assert module.__name__ not in sys.modules
    for key, value in state.items():
        assert torch.equal(loaded["model_state_dict"][key], value)
        assert loaded["model_state_dict"][key].dtype == value.dtype
    cfg = loaded["cfg"]
    assert isinstance(cfg, UnknownObject)
    assert cfg.pickled_class == f"{module.__name__}.TrainConfig"
    assert cfg.state == {"checkpoint_path": "runs/sse2", "n_epochs": 2000, "betas": (0.9, 0.99)}
    payload = loaded["p"]
    assert isinstance(payload, UnknownObject)
    assert payload.pickled_class == f"{module.__name__}.touch"
    assert payload.args == ("__reduce__ callable ran",)


@pytest.mark.parametrize("zip_format", [True, False])
def test_restricted_loader_rebuilds_tensors_and_containers(
    tmp_path: Path, zip_format: bool
) -> None:
    obj = {
        "state": OrderedDict(w=torch.arange(4.0), h=torch.ones(2, dtype=torch.float16)),
        "param": torch.nn.Parameter(torch.ones(2)),
        "meta": [torch.float16, torch.Size([2, 3]), torch.device("cpu"), b"raw", {1, 2}, (3,)],
    }
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    loaded = load_pickled_checkpoint(path)
    assert isinstance(loaded["state"], OrderedDict) and list(loaded["state"]) == ["w", "h"]
    assert all(torch.equal(loaded["state"][k], v) for k, v in obj["state"].items())
    assert loaded["state"]["h"].dtype == torch.float16
    assert isinstance(loaded["param"], torch.nn.Parameter)
    assert loaded["meta"] == obj["meta"]


def test_restricted_loader_rejects_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    with zipfile.ZipFile(path, "w") as archive:  # the layout torch.jit.save writes
        archive.writestr("scripted/data.pkl", b"")
        archive.writestr("scripted/constants.pkl", b"")
        archive.writestr("scripted/code/__torch__.py", "")
    with pytest.raises(ValueError, match="TorchScript"):
        load_pickled_checkpoint(path)


def test_restricted_loader_reports_garbage(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x80\x02not really a pickle")
    with pytest.raises(ValueError, match="junk.pt"):
        load_pickled_checkpoint(path)


# --- original release files by path ----------------------------------------------------------


def test_load_original_gru_file_by_path(
    tmp_path: Path,
    seeded: Callable[..., Any],
    same_weights: Callable[..., Any],
    save_rf5_gru: Callable[..., Any],
) -> None:
    source = seeded("gru", 1)
    path = save_rf5_gru(source, tmp_path / "gru-wrapped-f1f850.pth")
    model, card = load_model(path)
    assert model.arch == "gru" and not model.training
    assert same_weights(model, source)
    assert card["source"] == str(path)
    x = 0.1 * torch.randn(2, 8000)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), atol=0, rtol=0)


def test_load_original_convgru_file_by_path(
    tmp_path: Path,
    foreign: tuple[types.ModuleType, Path],
    seeded: Callable[..., Any],
    same_weights: Callable[..., Any],
    save_rf5_convgru: Callable[..., Any],
) -> None:
    module, sentinel = foreign
    source = seeded("convgru", 2)
    path = save_rf5_convgru(source, tmp_path / "convgru_ckpt_strip.pt", module.TrainConfig())
    sys.modules.pop(module.__name__)
    model, _ = load_model(str(path))
    assert model.arch == "convgru"
    assert same_weights(model, source)
    assert not sentinel.exists()


def test_unrecognised_state_dict_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="cannot tell the architecture"):
        load_model(path)


def test_converters_are_named() -> None:
    assert get_converter("rf5") is CONVERTERS["rf5"]
    with pytest.raises(KeyError, match="rf5"):
        get_converter("kaldi")


def test_rf5_state_dict_accepts_both_release_layouts() -> None:
    t = torch.ones(2)
    assert list(rf5_state_dict({"model.rnn_stack.w": t})) == ["rnn_stack.w"]
    assert list(rf5_state_dict({"model_state_dict": {"head.w": t}, "steps": 3})) == ["head.w"]
    with pytest.raises(ValueError, match="state dict"):
        rf5_state_dict({"steps": 3})


def test_a_tiny_pickle_cannot_allocate_gigabytes(tmp_path: Path) -> None:
    """``bytearray(2_200_000_000)`` in a 1 KB checkpoint: the restricted loader does not build
    it (it becomes an inert placeholder) and nothing is allocated."""

    class Bomb:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (bytearray, (2_200_000_000,))

    path = tmp_path / "bomb.pt"
    torch.save({"model_state_dict": Bomb()}, path)
    assert path.stat().st_size < 2000
    loaded = load_pickled_checkpoint(path)
    bomb = loaded["model_state_dict"]
    assert isinstance(bomb, UnknownObject) and bomb.args == (2_200_000_000,)
    assert bomb.pickled_class == "builtins.bytearray"
