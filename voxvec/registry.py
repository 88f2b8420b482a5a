"""Model registry: ``@register_model("name")``, :func:`create_model`, :func:`list_models`.

This is the only module-level mutable state in voxvec. Architectures register themselves when
``voxvec.models`` is imported; :func:`create_model` imports it on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    # Only for annotations: importing voxvec.models here would be circular (its architecture
    # modules import this module to register themselves).
    from voxvec.models.base import SpeakerEncoder

_MODELS: dict[str, type[SpeakerEncoder]] = {}

M = TypeVar("M", bound="type[SpeakerEncoder]")
C = TypeVar("C")


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator registering a :class:`SpeakerEncoder` subclass under ``name``.

    The class must define ``config_class``, a frozen dataclass whose instance is its only
    constructor argument.

    Raises:
        ValueError: ``name`` is already registered to a different class.
    """

    def decorator(cls: M) -> M:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_MODELS[name]!r}")
        if not dataclasses.is_dataclass(getattr(cls, "config_class", None)):
            raise TypeError(f"{cls.__name__} must define config_class, a dataclass")
        cls.arch = name
        _MODELS[name] = cls
        return cls

    return decorator


def _ensure_imported() -> None:
    importlib.import_module("voxvec.models")


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    _ensure_imported()
    return sorted(_MODELS)


def get_model_class(name: str) -> type[SpeakerEncoder]:
    """The class registered under ``name``.

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    _ensure_imported()
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(
            f"unknown model architecture {name!r}; registered: {sorted(_MODELS)}"
        ) from None


def config_from_dict(config_class: type[C], values: Mapping[str, Any]) -> C:
    """Build a (possibly nested) config dataclass from plain values; unknown keys are an error.

    Nested dataclass fields accept dicts; tuple-typed fields accept lists (as JSON gives them).

    Raises:
        ValueError: a key is not a field of ``config_class``.
    """
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"{config_class!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} for {config_class.__name__}; valid keys: {sorted(fields)}"
        )
    kwargs: dict[str, Any] = {}
    defaults = config_class()  # type: ignore[call-arg]
    for key, value in values.items():
        current = getattr(defaults, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            value = config_from_dict(type(current), value)
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[key] = value
    return config_class(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-JSON form of a config dataclass (inverse of :func:`config_from_dict`)."""
    return dataclasses.asdict(config)


def create_model(name: str, config: Any = None, **overrides: Any) -> SpeakerEncoder:
    """Build an untrained model of architecture ``name`` on the CPU.

    Args:
        name: a registered architecture (see :func:`list_models`).
        config: an instance of the architecture's config dataclass, a dict of its fields, or None
            for the defaults.
        **overrides: individual config fields to replace.

    Raises:
        KeyError: unknown architecture.
        ValueError: unknown config key.
    """
    cls = get_model_class(name)
    if config is None:
        values: dict[str, Any] = {}
    elif isinstance(config, Mapping):
        values = dict(config)
    else:
        values = config_to_dict(config)
    values.update(overrides)
    return cls(config_from_dict(cls.config_class, values))
