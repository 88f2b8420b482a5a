"""Typed dataclass configs to and from plain (JSON/YAML) values: the one place that converts them.

Model configs, front-end configs and the training config are frozen dataclasses, saved as plain
JSON with the weights or as YAML recipes. :func:`config_from_dict` builds one from plain values
(nested dataclasses from mappings, tuples from lists; unknown keys are an error) and
:func:`config_to_dict` is its inverse.

A model's front-end is one of several registered kinds (see :mod:`voxvec.models.frontends`), so a
front-end config is written with its kind under the key ``"type"``
(``{"type": "logmel", "sample_rate": 16000, ...}``), and a ``"type"`` key in the values picks the
config class of that kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from voxvec import registry

C = TypeVar("C")

TYPE_KEY = "type"
"""The key naming a front-end config's kind in its plain form."""


def _frontend_kind(value: Any) -> str | None:
    """The registered front-end kind whose config class ``value`` is an instance of, or None."""
    return registry.frontend_kind_of_config(type(value))


def config_from_dict(config_class: type[C], values: Mapping[str, Any]) -> C:
    """Build a (possibly nested) config dataclass from plain values.

    Nested dataclass fields accept mappings (a front-end field also takes ``"type"``, the
    registered kind, which may differ from the default's); tuple fields accept lists (as JSON
    gives them). Fields not given keep their defaults.

    Args:
        config_class: a dataclass whose fields all have defaults.
        values: field name -> plain value.

    Returns:
        An instance of ``config_class``.

    Raises:
        TypeError: ``config_class`` is not a dataclass.
        ValueError: a key is not a field of the class (the message lists the valid ones), or an
            unknown front-end type.
    """
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"{config_class!r} is not a dataclass")
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} for {config_class.__name__}; valid keys: {sorted(fields)}"
        )
    defaults = config_class()  # type: ignore[call-arg]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        current = getattr(defaults, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            value = _nested_from_dict(current, value)
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[key] = value
    return config_class(**kwargs)


def _nested_from_dict(current: Any, value: Mapping[str, Any]) -> Any:
    kind = _frontend_kind(current)
    if kind is None:
        return config_from_dict(type(current), value)
    values = dict(value)
    cls = registry.get_frontend_class(str(values.pop(TYPE_KEY, kind))).config_class
    return config_from_dict(cls, values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-JSON form of a config dataclass (inverse of :func:`config_from_dict`).

    Front-end configs carry their kind under ``"type"``; tuples become lists.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass instance, got {type(config).__name__}")
    out: dict[str, Any] = {}
    kind = _frontend_kind(config)
    if kind is not None:
        out[TYPE_KEY] = kind
    for f in dataclasses.fields(config):
        out[f.name] = _plain(getattr(config, f.name))
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
