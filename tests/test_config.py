"""voxvec.config: typed configs to and from plain values, front-ends tagged with their type."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from voxvec.audio.features import LOGMEL_16K, TACOTRON_22K, MelConfig
from voxvec.config import config_from_dict, config_to_dict
from voxvec.models.convgru import ConvGRUConfig
from voxvec.models.ecapa import ECAPAConfig
from voxvec.models.frontends import WaveformConfig


@dataclass(frozen=True)
class _Inner:
    size: int = 3
    pairs: tuple[tuple[int, int], ...] = ((1, 2),)


@dataclass(frozen=True)
class _Outer:
    name: str = "x"
    inner: _Inner = field(default_factory=_Inner)
    dims: tuple[int, ...] = (4, 5)


def test_round_trip_through_json() -> None:
    config = _Outer(name="y", inner=_Inner(size=7, pairs=((3, 4), (5, 6))), dims=(1,))
    plain = json.loads(json.dumps(config_to_dict(config)))
    assert plain == {"name": "y", "inner": {"size": 7, "pairs": [[3, 4], [5, 6]]}, "dims": [1]}
    assert config_from_dict(_Outer, plain) == config


def test_missing_keys_keep_defaults_and_unknown_keys_are_errors() -> None:
    assert config_from_dict(_Outer, {"inner": {"size": 9}}) == _Outer(inner=_Inner(size=9))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sise'\] for _Inner.*'size'"):
        config_from_dict(_Outer, {"inner": {"sise": 9}})
    with pytest.raises(TypeError, match="not a dataclass"):
        config_from_dict(dict, {})
    with pytest.raises(TypeError, match="config dataclass instance"):
        config_to_dict(_Outer)


def test_front_end_configs_carry_their_type() -> None:
    plain = config_to_dict(ECAPAConfig())
    assert plain["frontend"]["type"] == "logmel"
    assert plain["frontend"]["n_mels"] == 80
    assert config_from_dict(ECAPAConfig, plain) == ECAPAConfig()
    assert config_to_dict(ConvGRUConfig())["frontend"] == {"type": "waveform", "sample_rate": 16000}


def test_a_type_key_switches_the_front_end() -> None:
    tacotron = {"type": "logmel", **{k: v for k, v in config_to_dict(TACOTRON_22K).items()}}
    config = config_from_dict(ECAPAConfig, {"frontend": tacotron})
    assert config.frontend == TACOTRON_22K
    waveform = config_from_dict(ECAPAConfig, {"frontend": {"type": "waveform"}})
    assert waveform.frontend == WaveformConfig()
    partial = config_from_dict(ECAPAConfig, {"frontend": {"n_mels": 40}})  # type: the default's
    assert isinstance(partial.frontend, MelConfig) and partial.frontend.n_mels == 40
    assert partial.frontend.sample_rate == LOGMEL_16K.sample_rate
    with pytest.raises(ValueError, match="unknown front-end type 'kaldi'"):
        config_from_dict(ECAPAConfig, {"frontend": {"type": "kaldi"}})
