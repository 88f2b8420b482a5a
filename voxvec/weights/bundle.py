"""voxvec's model file: one ``.safetensors`` bundle holding the weights, the config and the card.

The safetensors header metadata (all strings) of a bundle:

- ``format``: ``"voxvec-bundle"``; ``format_version``: :data:`BUNDLE_VERSION`;
- ``arch``: the registered architecture;
- ``config``: JSON of the architecture's config (:func:`voxvec.config.config_to_dict`);
- ``card``: JSON of the model card: description, training data, held-out results and the
  verification ``thresholds`` (:meth:`voxvec.inference.Embedder.resolve_threshold` reads them),
  so that the file is the whole model.

Older versions are upgraded on reading: version 1 (voxvec 0.1) kept the card under ``metadata``
and the log-mel settings under the config key ``mel`` (``sample_rate`` for waveform models); both
become the version-2 ``frontend`` with its ``type``. Loading is strict (every parameter name and
shape must fit).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voxvec.atomic import atomic_path
from voxvec.config import TYPE_KEY, config_to_dict
from voxvec.models import SpeakerEncoder
from voxvec.weights.state import model_from_state_dict

BUNDLE_FORMAT = "voxvec-bundle"
BUNDLE_VERSION = 2


def save_bundle(
    model: SpeakerEncoder, path: str | os.PathLike, card: Mapping[str, Any] | None = None
) -> Path:
    """Write a model as one ``.safetensors`` file that :func:`load_bundle` reads back.

    The file is written to a temporary name first and moved into place.

    Args:
        model: a registered architecture (``model.arch`` set).
        path: the file to write (``.safetensors`` by convention).
        card: the model card: any JSON-serialisable mapping (description, training data,
            held-out results, ``thresholds`` ...).

    Returns:
        The path written.

    Raises:
        ValueError: ``model`` is not a registered architecture or ``card`` is not JSON.
    """
    if not getattr(model, "arch", ""):
        raise ValueError(f"{type(model).__name__} is not a registered architecture")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return _write(path, model.arch, config_to_dict(model.config), card or {}, tensors)


def update_card(path: str | os.PathLike, fields: Mapping[str, Any]) -> Path:
    """Set model-card fields of a bundle in place; weights, architecture and config unchanged.

    Args:
        path: the ``.safetensors`` bundle (an older format version is rewritten as the current).
        fields: card fields to add or replace (JSON-serialisable).

    Returns:
        The path written.

    Raises:
        FileNotFoundError / ValueError: as :func:`read_bundle`; ``fields`` not JSON.
    """
    header, tensors = read_bundle(path)
    return _write(path, header["arch"], header["config"], {**header["card"], **fields}, tensors)


def _write(
    path: str | os.PathLike,
    arch: str,
    config: Mapping[str, Any],
    card: Mapping[str, Any],
    tensors: dict[str, Any],
) -> Path:
    """The bundle file: header metadata (see the module docstring) and tensors, atomically."""
    from safetensors.torch import save_file

    try:
        card_json = json.dumps(dict(card))
    except TypeError as e:
        raise ValueError(f"the model card must be JSON-serialisable: {e}") from e
    header = {
        "format": BUNDLE_FORMAT,
        "format_version": str(BUNDLE_VERSION),
        "arch": arch,
        "config": json.dumps(dict(config)),
        "card": card_json,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def _upgrade_v1(header: dict[str, str]) -> dict[str, str]:
    """The version-2 header of a version-1 bundle (see the module docstring)."""
    config = json.loads(header["config"])
    if "mel" in config:
        config["frontend"] = {TYPE_KEY: "logmel", **config.pop("mel")}
    elif "sample_rate" in config:
        config["frontend"] = {TYPE_KEY: "waveform", "sample_rate": config.pop("sample_rate")}
    out = {k: v for k, v in header.items() if k != "metadata"}
    out["config"] = json.dumps(config)
    out["card"] = header.get("metadata", "{}")
    out["format_version"] = "2"
    return out


def read_bundle(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header (upgraded to the current version, JSON decoded) and tensors of a bundle.

    Returns:
        ``(header, tensors)``: header keys ``arch`` (str), ``config`` and ``card`` (dicts),
        ``format_version`` (int, as written); tensors on the CPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a safetensors file, not a voxvec bundle, a newer format version, or a
            header without valid JSON.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model bundle not found: '{path}'")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"cannot read '{path}' as a safetensors file: {e}") from e
    if header.get("format") != BUNDLE_FORMAT:
        raise ValueError(
            f"'{path}' is a safetensors file without voxvec bundle metadata (format "
            f"{header.get('format')!r}); bundles are written by voxvec.weights.save_bundle"
        )
    try:
        version = int(header.get("format_version", "0"))
        if version > BUNDLE_VERSION or version < 1:
            raise ValueError(
                f"'{path}' is bundle format version {version}; this voxvec reads versions 1 to "
                f"{BUNDLE_VERSION}" + (": upgrade voxvec" if version > BUNDLE_VERSION else "")
            )
        current = _upgrade_v1(header) if version == 1 else header
        decoded = {
            "arch": current["arch"],
            "config": json.loads(current["config"]),
            "card": json.loads(current.get("card", "{}")),
            "format_version": version,
        }
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"'{path}': bundle header has no valid JSON arch/config/card: {e}") from e
    return decoded, tensors


def load_bundle(path: str | os.PathLike) -> tuple[SpeakerEncoder, dict[str, Any]]:
    """Read a model written by :func:`save_bundle` (any format version up to the current one).

    Args:
        path: the ``.safetensors`` bundle.

    Returns:
        ``(model, card)``: the model in eval mode on the CPU and its model card.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: see :func:`read_bundle`; also an unknown config key or weights that do not
            fit.
        KeyError: the bundle's architecture is not registered.
    """
    header, tensors = read_bundle(path)
    model = model_from_state_dict(header["arch"], header["config"], tensors, f"'{path}'")
    return model, header["card"]
