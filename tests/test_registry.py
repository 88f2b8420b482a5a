"""voxvec.registry: registration rules, lookups, and no import of the models it registers."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from voxvec import registry
from voxvec.models import SpeakerEncoder, list_models
from voxvec.models.frontends import Frontend, LogMel, Waveform, WaveformConfig


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test disappear after it."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_FRONTENDS", dict(registry._FRONTENDS))


@dataclass(frozen=True)
class _Config:
    frontend: WaveformConfig = WaveformConfig()
    embed_dim: int = 2


def test_built_in_architectures_and_front_ends() -> None:
    assert list_models() == ["campplus", "convgru", "ecapa", "gru"]
    assert registry.registered_frontends() == ["kaldi_fbank", "logmel", "waveform"]
    assert registry.get_frontend_class("logmel") is LogMel and LogMel.kind == "logmel"
    assert registry.frontend_kind_of_config(WaveformConfig) == "waveform"
    assert registry.frontend_kind_of_config(_Config) is None


def test_register_model_sets_arch_and_refuses_clashes(clean_registry: None) -> None:
    @registry.register_model("tiny")
    class Tiny(SpeakerEncoder):
        config_class = _Config

    assert Tiny.arch == "tiny" and registry.get_model_class("tiny") is Tiny
    assert registry.register_model("tiny")(Tiny) is Tiny  # the same class again is fine
    with pytest.raises(ValueError, match="already registered"):

        @registry.register_model("tiny")
        class Other(SpeakerEncoder):
            config_class = _Config

    with pytest.raises(TypeError, match="config_class, a dataclass"):

        @registry.register_model("no-config")
        class NoConfig(SpeakerEncoder):
            config_class = dict


def test_register_frontend_refuses_a_shared_config_class(clean_registry: None) -> None:
    with pytest.raises(ValueError, match="already the config of front-end 'waveform'"):

        @registry.register_frontend("raw")
        class Raw(Waveform):
            pass

    with pytest.raises(ValueError, match="already registered"):

        @registry.register_frontend("logmel")
        class Other(Frontend):
            config_class = _Config


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(
        KeyError, match=r"'nope'.*registered: \['campplus', 'convgru', 'ecapa', 'gru'\]"
    ):
        registry.get_model_class("nope")
    known = r"\['kaldi_fbank', 'logmel', 'waveform'\]"
    with pytest.raises(ValueError, match=r"front-end type 'kaldi'.*" + known):
        registry.get_frontend_class("kaldi")


def test_registry_imports_no_model_code() -> None:
    code = (
        "import sys, voxvec.registry; print('voxvec.models' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
