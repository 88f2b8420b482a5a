"""Tests of voxvec.train.config: sections, recipes, overrides, validation, round trips, --help."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from voxvec.data.augment import AugmentConfig
from voxvec.models import create_model
from voxvec.train.config import (
    TrainConfig,
    config_from_dict,
    config_help,
    config_to_dict,
    config_to_yaml,
    iter_fields,
    load_config,
)
from voxvec.train.step import resolve_precision

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "configs").glob("*.yaml"))


def test_defaults_follow_the_original_trainer():
    c = load_config()
    assert (c.data.n_speakers, c.data.n_utterances, c.seed) == (8, 6, 1775)
    o = c.optim
    assert (o.start_lr, o.max_lr, o.end_lr, o.warmup_pct) == (1e-6, 5e-5, 3e-7, 0.15)
    assert o.betas == (0.9, 0.99) and o.grad_clip == 1.0
    assert (c.data.min_crop_s, c.data.max_crop_s) == (2.0, 8.0)
    assert c.data.augment == AugmentConfig() and not c.data.augment.enabled
    assert c.precision == "float32" and c.loss.kind == "ge2e"


def test_yaml_then_dotted_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model:\n  arch: gru\n  config:\n    hidden_size: 64\noptim:\n  max_lr: 1.0e-3\n"
    )
    c = load_config(
        recipe,
        [
            "optim.max_lr=2e-3",
            "model.config.n_layers=1",
            "data.augment.gain_prob=0.5",
            "optim.betas=[0.8,0.9]",
            "optim.max_steps=10",
            "validation.csv=null",
            "loss.aam.margin=0.3",
        ],
    )
    assert c.model.arch == "gru" and c.optim.max_lr == 2e-3
    assert c.model.config == {"hidden_size": 64, "n_layers": 1}
    assert isinstance(c.data.augment, AugmentConfig) and c.data.augment.gain_prob == 0.5
    assert c.optim.betas == (0.8, 0.9) and c.optim.max_steps == 10 and c.validation.csv is None
    assert c.loss.aam.margin == 0.3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.optim.max_lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("no_such_key=1", "no_such_key"),
        ("data.augment.no_such_key=1", "no_such_key"),
        ("max_steps=10", "max_steps"),  # the flat keys of before are unknown now
        ("optim.max_steps=ten", "max_steps"),
        ("loss.kind=triplet", "loss.kind must be one of"),
        ("loss.ge2e.method=cosine", "loss.ge2e.method"),
        ("loss.aam.margin_warmup_pct=2", "margin_warmup_pct"),
        ("precision=fp16", "precision must be one of"),
        ("optim.schedule=step", "schedule"),
        ("data.n_utterances=1", "GE2E needs"),
        ("data.min_crop_s=9", "min_crop_s"),
        ("data.augment.noise_prob=0.5", "noise_dir"),
        ("data.speed_factors=[1.0]", "speed_factors"),
        ("checkpoint.interval=0", "checkpoint.interval"),
        ("log.interval=0", "log.interval"),
        ("validation.n_utterances=0", "validation.n_utterances"),
        ("model.arch=nope", "model.arch"),
        ("model.config.no_such_field=1", "model.config does not fit the 'convgru' model"),
        ("max_steps", "key=value"),
    ],
)
def test_invalid_settings_are_errors_that_name_them(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, [override])


def test_model_config_is_checked_against_the_architecture_before_any_data_is_read(tmp_path):
    # The manifest does not exist: the model config is refused first, when the config is built.
    with pytest.raises(ValueError, match="'gru' model"):
        load_config(None, ["model.arch=gru", "model.config.channels=16",
                           f"data.train_csv={tmp_path / 'missing.csv'}"])  # fmt: skip
    c = load_config(None, ["model.arch=gru", "model.config.hidden_size=32"])
    assert c.model.arch_config().hidden_size == 32


def test_aam_alone_accepts_one_utterance_per_speaker():
    c = load_config(None, ["loss.kind=aam", "data.n_utterances=1", "data.n_speakers=64"])
    assert c.loss.kind == "aam" and c.data.n_utterances == 1


def test_missing_recipe_file():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")


def test_dict_and_yaml_round_trips(tmp_path):
    c = load_config(None, ["model.arch=gru", "model.config.frontend.n_mels=40",
                           "data.augment.speeds=[0.95,1.05]", "seed=3"])  # fmt: skip
    assert config_from_dict(config_to_dict(c)) == c
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(c))
    assert load_config(path) == c


def test_help_documents_every_field_of_every_section():
    text = config_help()
    lines = text.splitlines()
    names = []
    for name, _, value, doc in iter_fields(TrainConfig()):
        assert doc, f"{name} has no documentation"
        names.append(name)
        if dataclasses.is_dataclass(value):
            assert f"  {name}.*: {doc}" in text
        else:
            line = next(ln for ln in lines if ln.startswith(f"  {name} ("))
            assert lines[lines.index(line) + 1].startswith("      "), f"{name}: no description"
    for section in ("model", "data", "data.augment", "loss", "loss.ge2e", "loss.aam", "optim",
                    "validation", "checkpoint", "log"):  # fmt: skip
        assert section in names
    assert {f"data.augment.{f.name}" for f in dataclasses.fields(AugmentConfig)} <= set(names)


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipes_load_build_their_model_and_run_on_this_machine(recipe):
    c = load_config(recipe)
    model = create_model(c.model.arch, c.model.arch_config())
    assert round(c.data.min_crop_s * model.sample_rate) >= model.min_samples
    # The precision resolves on a CPU (precision=auto was fp16 before, refused without CUDA).
    assert resolve_precision(c.precision, torch.device("cpu")) in ("float32", "bfloat16")


@pytest.mark.parametrize("name", ["gru", "convgru"])
def test_original_recipes_train_their_architecture_with_ge2e(name):
    c = load_config(REPO / "configs" / f"{name}.yaml")
    assert c.model.arch == name and c.loss.kind == "ge2e" and c.loss.ge2e.method == "softmax"
    assert create_model(c.model.arch, c.model.arch_config()).embed_dim == 256


def test_convgru_recipe_matches_the_original_command():
    c = load_config(REPO / "configs" / "convgru.yaml")
    d, o = c.data, c.optim
    assert round(d.max_crop_s * 16000) == 120000 and round(d.min_crop_s * 16000) == 32000
    assert (d.n_speakers, d.n_utterances) == (9, 6)
    assert (o.start_lr, o.max_lr, o.end_lr) == (1e-8, 4e-5, 1e-7)
    assert o.n_epochs == 2000 and c.validation.interval == 2500 and c.precision == "auto"


def test_gru_recipe_crops_like_the_original_frames():
    c = load_config(REPO / "configs" / "gru.yaml")
    hop, rate = 256, 22050
    assert round(c.data.min_crop_s * rate / hop) == 96
    assert round(c.data.max_crop_s * rate / hop) == 288
