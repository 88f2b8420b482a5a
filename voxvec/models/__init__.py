"""Model architectures and front-ends; importing this package registers every built-in one.

One architecture per file, each with its frozen config dataclass, registered by name
(:func:`voxvec.registry.register_model`). :func:`create_model` builds one by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voxvec import registry
from voxvec.config import config_from_dict, config_to_dict
from voxvec.models import campplus, convgru, ecapa, frontends, gru
from voxvec.models.base import SpeakerEncoder

__all__ = [
    "SpeakerEncoder",
    "campplus",
    "convgru",
    "create_model",
    "ecapa",
    "frontends",
    "gru",
    "list_models",
]


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    return registry.registered_models()


def create_model(name: str, config: Any = None, **overrides: Any) -> SpeakerEncoder:
    """Build an untrained model of architecture ``name`` on the CPU.

    Args:
        name: a registered architecture (see :func:`list_models`).
        config: an instance of the architecture's config dataclass, a dict of its fields, or None
            for the defaults.
        **overrides: individual config fields to replace (plain values, as in a dict config).

    Raises:
        KeyError: unknown architecture (the message lists the registered ones).
        ValueError: unknown config key or invalid value.
    """
    cls = registry.get_model_class(name)
    if config is None:
        values: dict[str, Any] = {}
    elif isinstance(config, Mapping):
        values = dict(config)
    else:
        values = config_to_dict(config)
    values.update(overrides)
    return cls(config_from_dict(cls.config_class, values))
