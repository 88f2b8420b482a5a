"""The named pretrained models: the spec table, downloads, the bundled default."""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from voxvec.models import create_model
from voxvec.weights import (
    DEFAULT_MODEL,
    PretrainedSpec,
    get_spec,
    list_pretrained,
    load_model,
    pretrained,
    save_bundle,
)


def test_spec_table() -> None:
    names = [spec.name for spec in list_pretrained()]
    assert {"gru-rf5", "convgru-rf5", "convgru-rf5-sc09", "voxvec-default-v1"} <= set(names)
    for spec in list_pretrained():
        if spec.converter is None:
            model, _ = load_model(spec.name)
            assert spec.n_params == sum(p.numel() for p in model.parameters())
            assert (spec.sample_rate, spec.frontend) == (model.sample_rate, model.frontend.kind)
            continue
        model = create_model(spec.arch, dict(spec.config))
        assert spec.n_params == sum(p.numel() for p in model.parameters())
        assert (spec.sample_rate, spec.frontend) == (model.sample_rate, model.frontend.kind)
        if spec.converter == "rf5":
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
    hub_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    seeded: Callable[..., Any],
    same_weights: Callable[..., Any],
    save_rf5_gru: Callable[..., Any],
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
    hub_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    foreign: tuple[types.ModuleType, Path],
    seeded: Callable[..., Any],
    same_weights: Callable[..., Any],
    save_rf5_convgru: Callable[..., Any],
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


def test_asset_backed_spec_and_default(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seeded: Callable[..., Any],
    same_weights: Callable[..., Any],
) -> None:
    spec = PretrainedSpec(
        name="test-default-v3",
        arch="gru",
        sample_rate=22050,
        frontend="logmel",
        n_params=0,
        description="a bundled test model",
        asset="default-test.safetensors",
    )
    monkeypatch.setattr(pretrained, "_SPECS", types.MappingProxyType({}))
    with pytest.raises(KeyError, match=DEFAULT_MODEL):
        load_model()
    monkeypatch.setattr(pretrained, "_SPECS", types.MappingProxyType({spec.name: spec}))
    monkeypatch.setattr(pretrained, "ALIASES", types.MappingProxyType({DEFAULT_MODEL: spec.name}))
    monkeypatch.setattr(pretrained, "ASSETS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="default-test.safetensors"):
        load_model()
    source = seeded("gru", 6, hidden_size=8)
    save_bundle(source, tmp_path / "default-test.safetensors", {"thresholds": {"eer": 0.5}})
    model, card = load_model()
    assert same_weights(model, source)
    assert card["name"] == "test-default-v3" and card["thresholds"] == {"eer": 0.5}


def test_the_default_name_is_an_alias_of_a_versioned_bundled_model(
    same_weights: Callable[..., Any],
) -> None:
    """``voxvec-default`` moves with each new default; the versioned name keeps its weights,
    and what was loaded by either records the versioned name (stores and calibrations keep it)."""
    assert set(pretrained.ALIASES) == {DEFAULT_MODEL}
    target = pretrained.ALIASES[DEFAULT_MODEL]
    assert get_spec(DEFAULT_MODEL) is get_spec(target) and get_spec(target).asset is not None
    assert DEFAULT_MODEL not in [spec.name for spec in list_pretrained()]
    by_alias, alias_card = load_model(DEFAULT_MODEL)
    by_version, version_card = load_model(target)
    assert same_weights(by_alias, by_version)
    assert alias_card == version_card and alias_card["name"] == target
    with pytest.raises(KeyError, match=f"available: .*'{DEFAULT_MODEL}'"):
        get_spec("voxvec-default-v0")


@pytest.mark.network
@pytest.mark.parametrize("name", ["gru-rf5", "convgru-rf5", "convgru-rf5-sc09"])
def test_real_release_files_load_strictly(name: str) -> None:
    model, card = load_model(name, progress=False)
    spec = get_spec(name)
    assert model.arch == spec.arch and card["name"] == name
    assert sum(p.numel() for p in model.parameters()) == spec.n_params
    x = 0.1 * torch.randn(2, model.sample_rate)
    with torch.no_grad():
        emb = model(x)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
