"""Pretrained specs, the restricted loader, RF5 release files and safetensors bundles (offline)."""

from __future__ import annotations

import importlib
import json
import os
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from voxvec import pretrained
from voxvec.models.base import SpeakerEncoder
from voxvec.pretrained import (
    DEFAULT_MODEL,
    PretrainedSpec,
    UnknownObject,
    get_spec,
    list_pretrained,
    load_bundle,
    load_model,
    load_pickled_checkpoint,
    load_state_dict_strict,
    normalize_keys,
    rf5_state_dict,
    save_bundle,
)
from voxvec.registry import create_model

FOREIGN_SOURCE = """
import dataclasses
from pathlib import Path

SENTINEL = Path({sentinel!r})


def touch(reason):
    SENTINEL.write_text(reason)


@dataclasses.dataclass
class TrainConfig:
    checkpoint_path: str = "runs/sse2"
    n_epochs: int = 2000
    betas: tuple = (0.9, 0.99)

    def __setstate__(self, state):
        touch("__setstate__ ran")
        self.__dict__.update(state)


class Payload:
    def __reduce__(self):
        return (touch, ("__reduce__ callable ran",))
"""


@pytest.fixture
def foreign(tmp_path: Path) -> Iterator[tuple[types.ModuleType, Path]]:
    """A throwaway module standing for the original training script (``train.py``).

    Its classes run code when unpickled: ``TrainConfig.__setstate__`` and ``Payload``'s reduce
    callable write ``SENTINEL``. It stays importable during the test, so an unrestricted
    loader would import and run it.
    """
    name = f"foreign_train_{tmp_path.name.replace('-', '_')}"
    sentinel = tmp_path / "sentinel.txt"
    (tmp_path / f"{name}.py").write_text(FOREIGN_SOURCE.format(sentinel=str(sentinel)))
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(name), sentinel
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def seeded(arch: str, seed: int, **overrides: object) -> SpeakerEncoder:
    torch.manual_seed(seed)
    return create_model(arch, **overrides).eval()


def save_rf5_gru(model: SpeakerEncoder, path: Path) -> Path:
    """Save like the original GRU release: the wrapper's state dict, keys ``model.*``."""
    torch.save(OrderedDict((f"model.{k}", v) for k, v in model.state_dict().items()), path)
    return path


def save_rf5_convgru(model: SpeakerEncoder, path: Path, config: object) -> Path:
    """Save like the original ConvGRU releases: a dict with a state dict and training objects."""
    torch.save(
        {"model_state_dict": model.state_dict(), "steps": 700000, "epoch": 12, "cfg": config},
        path,
    )
    return path


def same_weights(a: SpeakerEncoder, b: SpeakerEncoder) -> bool:
    return all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


# --- key normalisation and strict loading ----------------------------------------------------


def test_normalize_keys_strips_wrapper_prefixes() -> None:
    t = torch.zeros(1)
    out = normalize_keys({"module._orig_mod.rnn.w": t, "model.head.b": t, "conv.x": t})
    assert list(out) == ["rnn.w", "head.b", "conv.x"]
    with pytest.raises(ValueError, match="collide"):
        normalize_keys({"module.a": t, "a": t})


def test_rf5_state_dict_accepts_both_release_layouts() -> None:
    t = torch.ones(2)
    assert list(rf5_state_dict({"model.rnn_stack.w": t})) == ["rnn_stack.w"]
    assert list(rf5_state_dict({"model_state_dict": {"head.w": t}, "steps": 3})) == ["head.w"]
    with pytest.raises(ValueError, match="state dict"):
        rf5_state_dict({"steps": 3})


def test_strict_loading_lists_every_problem() -> None:
    model = seeded("gru", 0, hidden_size=8, n_layers=1)
    state = dict(model.state_dict())
    state.pop("projection.bias")
    state["extra.weight"] = torch.zeros(1)
    state["projection.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError) as info:
        load_state_dict_strict(model, state, "'x.pt'")
    message = str(info.value)
    assert "'x.pt'" in message and "'gru'" in message
    assert "missing keys: projection.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "projection.weight (3, 3) vs (256, 8)" in message


# --- the restricted unpickler ----------------------------------------------------------------


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


def test_load_original_gru_file_by_path(tmp_path: Path) -> None:
    source = seeded("gru", 1)
    path = save_rf5_gru(source, tmp_path / "gru-wrapped-f1f850.pth")
    model, card = load_model(path)
    assert model.arch == "gru" and not model.training
    assert same_weights(model, source)
    assert card["source"] == str(path)
    x = torch.randn(2, 30, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), atol=0, rtol=0)


def test_load_original_convgru_file_by_path(
    tmp_path: Path, foreign: tuple[types.ModuleType, Path]
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


# --- bundles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "overrides"),
    [
        ("gru", {"hidden_size": 16, "n_layers": 2, "embed_dim": 8, "normalize": False}),
        ("convgru", {"conv_layers": ((16, 10, 5), (16, 3, 2)), "hidden_size": 8, "embed_dim": 4}),
    ],
)
def test_bundle_round_trip(tmp_path: Path, arch: str, overrides: dict) -> None:
    source = seeded(arch, 3, **overrides)
    card = {"description": "test model", "thresholds": {"eer": 0.41}}
    path = save_bundle(source, tmp_path / "model.safetensors", card)
    model, loaded_card = load_bundle(path)
    assert model.arch == arch and model.config == source.config and not model.training
    assert loaded_card == card
    assert same_weights(model, source)
    # load_model detects a bundle by content, whatever its suffix.
    renamed = path.rename(tmp_path / "model.pt")
    assert load_model(renamed)[0].config == source.config


def test_bundle_header(tmp_path: Path) -> None:
    from safetensors import safe_open

    path = save_bundle(seeded("gru", 0, hidden_size=4), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    assert header["format"] == "voxvec-bundle" and header["format_version"] == "1"
    assert header["arch"] == "gru"
    assert json.loads(header["config"])["hidden_size"] == 4
    assert json.loads(header["metadata"]) == {}
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left


def test_bundle_errors(tmp_path: Path) -> None:
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(ValueError, match="without voxvec bundle metadata"):
        load_bundle(bare)
    newer = tmp_path / "newer.safetensors"
    save_file(
        {"w": torch.zeros(2)}, str(newer), {"format": "voxvec-bundle", "format_version": "99"}
    )
    with pytest.raises(ValueError, match="version 99"):
        load_bundle(newer)
    not_st = tmp_path / "x.safetensors"
    not_st.write_bytes(b"hello")
    with pytest.raises(ValueError, match="x.safetensors"):
        load_bundle(not_st)
    with pytest.raises(ValueError, match="JSON"):
        save_bundle(seeded("gru", 0, hidden_size=4), tmp_path / "y.safetensors", {"f": object()})


# --- the spec table --------------------------------------------------------------------------


def test_spec_table() -> None:
    names = [spec.name for spec in list_pretrained()]
    assert {"gru-rf5", "convgru-rf5", "convgru-rf5-sc09"} <= set(names)
    for spec in list_pretrained():
        if spec.converter is None:
            continue
        model = create_model(spec.arch, dict(spec.config))
        assert spec.n_params == sum(p.numel() for p in model.parameters())
        assert (spec.sample_rate, spec.input_kind) == (model.sample_rate, model.input_kind)
        assert spec.url is not None and spec.url.startswith("https://github.com/RF5/")
    assert get_spec("gru-rf5").sha256 == "f1f850"
    assert get_spec("gru-rf5").filename == "gru-wrapped-f1f850.pth"


def test_unknown_names_and_missing_files() -> None:
    with pytest.raises(KeyError, match="gru-rf5"):
        load_model("no-such-model")
    with pytest.raises(KeyError, match="convgru-rf5"):
        get_spec("no-such-model")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model("some/dir/missing.pt")


def test_spec_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        PretrainedSpec("x", "gru", 22050, "logmel", 1, "d")


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_named_model_downloads_once_with_hash_check(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = seeded("gru", 4)
    calls: list[tuple[str, str, str | None, bool]] = []

    def fake_download(url: str, dst: str, hash_prefix: str | None, progress: bool) -> None:
        calls.append((url, dst, hash_prefix, progress))
        save_rf5_gru(source, Path(dst))

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model, card = load_model("gru-rf5", progress=False)
    spec = get_spec("gru-rf5")
    assert calls == [(spec.url, str(hub_dir / spec.filename), "f1f850", False)]
    assert same_weights(model, source)
    assert card["name"] == "gru-rf5" and card["source"] == spec.url
    load_model("gru-rf5")
    assert len(calls) == 1  # cached


def test_named_convgru_reads_the_cached_file(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch, foreign: tuple[types.ModuleType, Path]
) -> None:
    module, _ = foreign
    source = seeded("convgru", 5)
    hub_dir.mkdir(parents=True)
    first, second = (hub_dir / get_spec(n).filename for n in ("convgru-rf5", "convgru-rf5-sc09"))
    save_rf5_convgru(source, first, module.TrainConfig())
    os.link(first, second)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not download a cached file")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    for name in ("convgru-rf5", "convgru-rf5-sc09"):
        model, card = load_model(name)
        assert model.arch == "convgru" and card["name"] == name
        assert same_weights(model, source)


def test_download_failure_is_actionable(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(OSError, match="convgru_ckpt_00700000_strip.pt.*by hand"):
        load_model("convgru-rf5")


def test_asset_backed_spec_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = PretrainedSpec(
        name=DEFAULT_MODEL,
        arch="gru",
        sample_rate=22050,
        input_kind="logmel",
        n_params=0,
        description="a bundled test model",
        asset="default-test.safetensors",
    )
    monkeypatch.setattr(pretrained, "_SPECS", types.MappingProxyType({}))
    with pytest.raises(KeyError, match=DEFAULT_MODEL):
        load_model()
    monkeypatch.setattr(pretrained, "_SPECS", types.MappingProxyType({DEFAULT_MODEL: spec}))
    monkeypatch.setattr(pretrained, "ASSETS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="default-test.safetensors"):
        load_model()
    source = seeded("gru", 6, hidden_size=8)
    save_bundle(source, tmp_path / "default-test.safetensors", {"thresholds": {"eer": 0.5}})
    model, card = load_model()
    assert same_weights(model, source)
    assert card["name"] == DEFAULT_MODEL and card["thresholds"] == {"eer": 0.5}


@pytest.mark.network
@pytest.mark.parametrize("name", ["gru-rf5", "convgru-rf5", "convgru-rf5-sc09"])
def test_real_release_files_load_strictly(name: str) -> None:
    model, card = load_model(name, progress=False)
    spec = get_spec(name)
    assert model.arch == spec.arch and card["name"] == name
    assert sum(p.numel() for p in model.parameters()) == spec.n_params
    n = model.sample_rate
    x = 0.1 * torch.randn(2, n)
    if model.input_kind == "logmel":
        from voxvec.audio.features import log_mel

        assert model.mel_config is not None
        x, _ = log_mel(x, model.mel_config)
    with torch.no_grad():
        emb = model(x)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
