"""Tests of voxvec.train.config: recipes, overrides, validation, round trips and --help text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from voxvec.data.augment import AugmentConfig
from voxvec.registry import create_model
from voxvec.train.config import (
    TrainConfig,
    config_from_dict,
    config_help,
    config_to_dict,
    config_to_yaml,
    load_config,
)

REPO = Path(__file__).resolve().parents[2]


def test_defaults_follow_the_original_trainer():
    c = load_config()
    assert (c.n_speakers, c.n_utterances, c.seed) == (8, 6, 1775)
    assert (c.start_lr, c.max_lr, c.end_lr, c.warmup_pct) == (1e-6, 5e-5, 3e-7, 0.15)
    assert c.betas == (0.9, 0.99) and c.grad_clip == 1.0
    assert (c.min_crop_s, c.max_crop_s) == (2.0, 8.0)
    assert c.augment == AugmentConfig() and not c.augment.enabled


def test_yaml_then_dotted_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: gru\nmax_lr: 1.0e-3\nmodel_config:\n  hidden_size: 64\n")
    c = load_config(
        recipe,
        [
            "max_lr=2e-3",
            "model_config.n_layers=1",
            "augment.gain_prob=0.5",
            "betas=[0.8,0.9]",
            "max_steps=10",
            "valid_csv=null",
        ],
    )
    assert c.model == "gru" and c.max_lr == 2e-3
    assert c.model_config == {"hidden_size": 64, "n_layers": 1}
    assert isinstance(c.augment, AugmentConfig) and c.augment.gain_prob == 0.5
    assert c.betas == (0.8, 0.9) and c.max_steps == 10 and c.valid_csv is None


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("no_such_key=1", "no_such_key"),
        ("augment.no_such_key=1", "no_such_key"),
        ("max_steps=ten", "max_steps"),
        ("loss=triplet", "loss must be one of"),
        ("precision=fp8", "precision"),
        ("schedule=step", "schedule"),
        ("n_utterances=1", "GE2E needs"),
        ("min_crop_s=9", "min_crop_s"),
        ("augment.noise_prob=0.5", "noise_dir"),
        ("speed_factors=[1.0]", "speed_factors"),
        ("checkpoint_interval=0", "checkpoint_interval"),
        ("max_steps", "key=value"),
    ],
)
def test_invalid_settings_are_errors_that_name_them(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, [override])


def test_aam_alone_accepts_one_utterance_per_speaker():
    c = load_config(None, ["loss=aam", "n_utterances=1", "n_speakers=64"])
    assert c.loss == "aam" and c.n_utterances == 1


def test_missing_recipe_file():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")


def test_dict_and_yaml_round_trips(tmp_path):
    c = load_config(None, ["model_config.mel.n_mels=40", "augment.speeds=[0.95,1.05]", "seed=3"])
    assert config_from_dict(config_to_dict(c)) == c
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(c))
    assert load_config(path) == c


def test_help_documents_every_field():
    text = config_help()
    for f in dataclasses.fields(TrainConfig):
        if f.name != "augment":
            assert f"  {f.name} (" in text
            assert f.metadata.get("help"), f"{f.name} has no help text"
    for f in dataclasses.fields(AugmentConfig):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"  augment.{f.name} ("))
        following = text.splitlines()[text.splitlines().index(line) + 1]
        assert following.startswith("      "), f"augment.{f.name} has no description"


@pytest.mark.parametrize("name", ["gru", "convgru"])
def test_recipes_load_and_build_their_model(name):
    c = load_config(REPO / "configs" / f"{name}.yaml")
    assert c.model == name and c.loss == "ge2e"
    model = create_model(c.model, c.model_config)
    assert model.embed_dim == 256
    assert round(c.min_crop_s * model.sample_rate) >= model.min_samples


def test_convgru_recipe_matches_the_original_command():
    c = load_config(REPO / "configs" / "convgru.yaml")
    assert round(c.max_crop_s * 16000) == 120000 and round(c.min_crop_s * 16000) == 32000
    assert (c.n_speakers, c.n_utterances) == (9, 6)
    assert (c.start_lr, c.max_lr, c.end_lr) == (1e-8, 4e-5, 1e-7)
    assert c.n_epochs == 2000 and c.validation_interval == 2500 and c.precision == "fp16"


def test_gru_recipe_crops_like_the_original_frames():
    c = load_config(REPO / "configs" / "gru.yaml")
    hop, rate = 256, 22050
    assert round(c.min_crop_s * rate / hop) == 96 and round(c.max_crop_s * rate / hop) == 288
