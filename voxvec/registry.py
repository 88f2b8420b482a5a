"""Registries of model architectures and front-ends: the only module-level mutable state.

``@register_model("name")`` and ``@register_frontend("name")`` are class decorators; the
architectures and front-ends in :mod:`voxvec.models` register themselves when that package is
imported. This module imports nothing of voxvec: the lookups here see what has been registered;
:func:`voxvec.models.create_model` and :func:`voxvec.models.list_models` import every built-in
architecture first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from voxvec.models.base import SpeakerEncoder
    from voxvec.models.frontends import Frontend

_MODELS: dict[str, type[SpeakerEncoder]] = {}
_FRONTENDS: dict[str, type[Frontend]] = {}

M = TypeVar("M", bound="type[SpeakerEncoder]")
F = TypeVar("F", bound="type[Frontend]")


def _check_config_class(cls: type, what: str) -> None:
    if not dataclasses.is_dataclass(getattr(cls, "config_class", None)):
        raise TypeError(f"{what} {cls.__name__} must define config_class, a dataclass")


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator registering a :class:`~voxvec.models.base.SpeakerEncoder` as ``name``.

    The class must define ``config_class``, a frozen dataclass whose instance is its only
    constructor argument; ``cls.arch`` is set to ``name``.

    Raises:
        ValueError: ``name`` is already registered to a different class.
        TypeError: the class has no dataclass ``config_class``.
    """

    def decorator(cls: M) -> M:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_MODELS[name]!r}")
        _check_config_class(cls, "model")
        cls.arch = name
        _MODELS[name] = cls
        return cls

    return decorator


def register_frontend(name: str) -> Callable[[F], F]:
    """Class decorator registering a :class:`~voxvec.models.frontends.Frontend` as ``name``.

    The class must define ``config_class``, a frozen dataclass used by no other front-end (a
    model config's front-end is serialised with this name as its ``"type"``); ``cls.kind`` is
    set to ``name``.

    Raises:
        ValueError: ``name`` or the config class is already registered to a different class.
        TypeError: the class has no dataclass ``config_class``.
    """

    def decorator(cls: F) -> F:
        if name in _FRONTENDS and _FRONTENDS[name] is not cls:
            raise ValueError(f"front-end {name!r} is already registered to {_FRONTENDS[name]!r}")
        _check_config_class(cls, "front-end")
        owner = frontend_kind_of_config(cls.config_class)
        if owner is not None and owner != name:
            raise ValueError(
                f"{cls.config_class.__name__} is already the config of front-end {owner!r}"
            )
        cls.kind = name
        _FRONTENDS[name] = cls
        return cls

    return decorator


def registered_models() -> list[str]:
    """Names of the architectures registered so far, sorted."""
    return sorted(_MODELS)


def registered_frontends() -> list[str]:
    """Names of the front-ends registered so far, sorted."""
    return sorted(_FRONTENDS)


def get_model_class(name: str) -> type[SpeakerEncoder]:
    """The architecture registered as ``name``.

    Raises:
        KeyError: unknown name; the message lists the registered ones.
    """
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(
            f"unknown model architecture {name!r}; registered: {sorted(_MODELS)}"
        ) from None


def get_frontend_class(name: str) -> type[Frontend]:
    """The front-end registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the registered ones.
    """
    try:
        return _FRONTENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown front-end type {name!r}; registered: {sorted(_FRONTENDS)}"
        ) from None


def frontend_kind_of_config(config_class: type) -> str | None:
    """The registered front-end whose ``config_class`` is ``config_class``, or None."""
    for name, cls in _FRONTENDS.items():
        if cls.config_class is config_class:
            return name
    return None
