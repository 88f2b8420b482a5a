"""The bundle format: round trips, the header, the card inside, version upgrades, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from voxvec.config import config_to_dict
from voxvec.weights import (
    ALIASES,
    DEFAULT_MODEL,
    list_pretrained,
    load_bundle,
    load_model,
    read_bundle,
    save_bundle,
    update_card,
)


@pytest.mark.parametrize(
    ("arch", "overrides"),
    [
        ("gru", {"hidden_size": 16, "n_layers": 2, "embed_dim": 8, "normalize": False}),
        ("convgru", {"conv_layers": ((16, 10, 5), (16, 3, 2)), "hidden_size": 8, "embed_dim": 4}),
    ],
)
def test_bundle_round_trip(
    tmp_path: Path,
    arch: str,
    overrides: dict,
    seeded: Callable[..., Any],
    same_weights: Callable[..., Any],
) -> None:
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


def test_bundle_header(tmp_path: Path, seeded: Callable[..., Any]) -> None:
    from safetensors import safe_open

    path = save_bundle(seeded("gru", 0, hidden_size=4), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    assert header["format"] == "voxvec-bundle" and header["format_version"] == "2"
    assert header["arch"] == "gru"
    config = json.loads(header["config"])
    assert config["hidden_size"] == 4 and config["frontend"]["type"] == "logmel"
    assert json.loads(header["card"]) == {}
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left


def test_update_card_keeps_weights_and_config(
    tmp_path: Path, seeded: Callable[..., Any], same_weights: Callable[..., Any]
) -> None:
    source = seeded("gru", 2, hidden_size=4)
    path = save_bundle(source, tmp_path / "m.safetensors", {"thresholds": {"eer": 0.4}})
    assert update_card(path, {"diarization": {"spectral": {"merge_threshold": 0.5}}}) == path
    model, card = load_bundle(path)
    assert card == {
        "thresholds": {"eer": 0.4},
        "diarization": {"spectral": {"merge_threshold": 0.5}},
    }
    assert model.config == source.config and same_weights(model, source)
    with pytest.raises(ValueError, match="JSON"):
        update_card(path, {"bad": object()})
    assert load_bundle(path)[1] == card  # a failed update leaves the file as it was


def test_bundle_errors(tmp_path: Path, seeded: Callable[..., Any]) -> None:
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


def _write_v1(model: Any, path: Path, card: dict[str, Any]) -> None:
    """Write ``model`` as voxvec 0.1 wrote bundles: version 1, ``mel`` / ``sample_rate`` in the
    config, the card under ``metadata``."""
    config = config_to_dict(model.config)
    if config["frontend"]["type"] == "logmel":
        config["mel"] = {k: v for k, v in config.pop("frontend").items() if k != "type"}
    else:
        config["sample_rate"] = config.pop("frontend")["sample_rate"]
    header = {
        "format": "voxvec-bundle",
        "format_version": "1",
        "arch": model.arch,
        "config": json.dumps(config),
        "metadata": json.dumps(card),
    }
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), header)


def test_version_1_bundles_of_the_shipped_default_model_still_load(tmp_path: Path) -> None:
    shipped, card = load_model()
    old = tmp_path / "voxvec-default-v1.safetensors"
    _write_v1(shipped, old, {"thresholds": card["thresholds"]})
    header, _ = read_bundle(old)
    assert header["format_version"] == 1 and header["card"] == {"thresholds": card["thresholds"]}
    model, old_card = load_bundle(old)
    assert model.config == shipped.config
    assert old_card["thresholds"] == card["thresholds"]
    wav = 0.1 * torch.randn(2, 24000, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(model(wav), shipped(wav), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("arch", "overrides"), [("convgru", {"conv_layers": ((8, 10, 5),), "hidden_size": 4})]
)
def test_version_1_waveform_model_upgrades(
    tmp_path: Path, arch: str, overrides: dict, seeded: Callable[..., Any]
) -> None:
    source = seeded(arch, 1, **overrides)
    _write_v1(source, tmp_path / "old.safetensors", {})
    model, _ = load_bundle(tmp_path / "old.safetensors")
    assert model.config == source.config and model.sample_rate == 16000


def test_the_shipped_bundle_is_the_whole_model() -> None:
    """Loading the bundled file by path gives the card and its thresholds, not only weights."""
    from voxvec.weights import get_spec

    path = get_spec("voxvec-default").local_path
    header, _ = read_bundle(path)
    assert header["format_version"] == 2
    _, card = load_model(path)
    assert card["name"] == ALIASES[DEFAULT_MODEL]  # the versioned name: stores record it
    assert set(card["thresholds"]) == {"eer", "far1"}
    assert 0 < card["thresholds"]["eer"] < card["thresholds"]["far1"] < 1


@pytest.mark.parametrize(
    "name", [spec.name for spec in list_pretrained() if spec.asset is not None]
)
def test_every_bundled_model_card_says_what_made_it(name: str) -> None:
    """The issue's model card: data, recipe, steps, held-out results, thresholds, limits; the
    recipe it names is in configs/, and a recipe with a teacher means the card names the teacher
    and its licence."""
    from voxvec.train.config import load_config

    _, card = load_model(name)
    assert card["name"] == name
    assert {
        "architecture",
        "input",
        "training",
        "thresholds",
        "thresholds_from",
        "held_out_results",
        "limits",
        "diarization",
    } <= set(card)
    training = card["training"]
    assert {"recipe", "data", "held_out", "steps", "command"} <= set(training)
    recipe = Path(__file__).resolve().parents[2] / training["recipe"]
    assert training["steps"] > 0 and card["limits"]
    teacher = load_config(recipe).distill.teacher
    assert ("teacher" in training) == bool(teacher), f"{recipe} has teacher {teacher!r}"
    if teacher:
        assert "Apache-2.0" in training["teacher"]["licence"]


def test_a_tiny_file_asking_for_a_huge_model_is_refused_before_allocating(
    tmp_path: Path, seeded: Callable[..., Any]
) -> None:
    """The config is checked against the file's tensors on the meta device first: a 2 KB bundle
    whose config asks for a 360 GB GRU gets a clear error, not an allocation."""
    small = seeded("gru", 0, hidden_size=4, n_layers=1, embed_dim=4)
    path = save_bundle(small, tmp_path / "tiny.safetensors")
    header, tensors = read_bundle(path)
    config = {**header["config"], "hidden_size": 100_000, "n_layers": 3}
    forged = tmp_path / "forged.safetensors"
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(forged),
        {
            "format": "voxvec-bundle",
            "format_version": "2",
            "arch": "gru",
            "config": json.dumps(config),
            "card": "{}",
        },
    )
    assert forged.stat().st_size < 10_000
    with pytest.raises(ValueError, match=r"forged\.safetensors.*do not fit the 'gru' model"):
        load_bundle(forged)
    bad_config = tmp_path / "bad-config.safetensors"
    save_file({}, str(bad_config), {**json.loads(json.dumps({
        "format": "voxvec-bundle", "format_version": "2", "arch": "gru",
        "config": json.dumps({"hidden_sise": 4}), "card": "{}"}))})  # fmt: skip
    with pytest.raises(ValueError, match=r"bad-config\.safetensors'?: invalid 'gru' config.*sise"):
        load_bundle(bad_config)
