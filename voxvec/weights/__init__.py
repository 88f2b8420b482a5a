"""Model weights: voxvec's bundle format, foreign-format converters and the named pretrained models.

- :mod:`voxvec.weights.state`: key normalisation and strict loading (every format uses them);
- :mod:`voxvec.weights.bundle`: the ``.safetensors`` bundle (weights + config + model card);
- :mod:`voxvec.weights.converters`: readers of other projects' checkpoints, by name;
- :mod:`voxvec.weights.pretrained`: the named models, downloads, and :func:`load_model`.
"""

from voxvec.weights.bundle import load_bundle, read_bundle, save_bundle, update_card
from voxvec.weights.pretrained import (
    ALIASES,
    DEFAULT_MODEL,
    PretrainedSpec,
    get_spec,
    list_pretrained,
    load_model,
)
from voxvec.weights.state import load_state_dict_strict, normalize_keys

__all__ = [
    "ALIASES",
    "DEFAULT_MODEL",
    "PretrainedSpec",
    "get_spec",
    "list_pretrained",
    "load_bundle",
    "load_model",
    "load_state_dict_strict",
    "normalize_keys",
    "read_bundle",
    "save_bundle",
    "update_card",
]
