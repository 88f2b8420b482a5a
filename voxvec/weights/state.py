"""State dicts: one key normaliser and strict loading, shared by every weights format.

:func:`normalize_keys` strips the prefixes wrappers add to parameter names
(``module.`` of DataParallel/DDP, ``_orig_mod.`` of ``torch.compile``, ``model.`` of the original
project's wrapper); :func:`load_state_dict_strict` requires exactly the model's names and shapes
and lists every problem when they differ; :func:`weights_fingerprint` tells two models' weights
apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from voxvec.models import SpeakerEncoder, create_model

KEY_PREFIXES = ("module.", "_orig_mod.", "model.")
"""Prefixes :func:`normalize_keys` strips: DataParallel/DDP, ``torch.compile``, the RF5 wrapper."""


def normalize_keys(
    state_dict: Mapping[str, Tensor], prefixes: Iterable[str] = KEY_PREFIXES
) -> dict[str, Tensor]:
    """Strip wrapper prefixes (``module.``, ``_orig_mod.``, ``model.``) from state-dict keys.

    Prefixes are removed repeatedly from the start of each key, in any order
    (``module._orig_mod.rnn.weight`` -> ``rnn.weight``).

    Args:
        state_dict: parameter name -> tensor.
        prefixes: the prefixes to strip.

    Returns:
        A new dict with the stripped keys.

    Raises:
        ValueError: two keys become the same.
    """
    prefixes = tuple(prefixes)
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        stripped = key
        while True:
            prefix = next((p for p in prefixes if stripped.startswith(p)), None)
            if prefix is None:
                break
            stripped = stripped[len(prefix) :]
        if stripped in out:
            raise ValueError(f"state-dict keys collide after stripping prefixes: {stripped!r}")
        out[stripped] = value
    return out


def _clip_list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def model_from_state_dict(
    arch: str, config: Any, state_dict: Mapping[str, Tensor], source: str
) -> SpeakerEncoder:
    """Build architecture ``arch`` with ``config`` and fill it strictly from ``state_dict``.

    The model is first built on the ``meta`` device (no memory) and checked against the file's
    names and shapes, so a tiny file whose config asks for a huge model is refused before
    anything is allocated.

    Args:
        arch: a registered architecture.
        config: its config (dataclass or plain dict).
        state_dict: parameter name -> tensor (voxvec's names).
        source: where the weights come from, for error messages.

    Returns:
        The model in eval mode on the CPU.

    Raises:
        KeyError: unknown architecture.
        ValueError: an invalid config, or weights that do not fit it (every problem listed).
    """
    try:
        with torch.device("meta"):
            probe = create_model(arch, config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: invalid '{arch}' config: {e}") from e
    check_state_dict(probe, state_dict, source)
    model = create_model(arch, config)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def load_state_dict_strict(
    model: torch.nn.Module, state_dict: Mapping[str, Tensor], source: str
) -> None:
    """Load ``state_dict`` into ``model`` requiring the exact same names and shapes.

    Args:
        model: the module to fill.
        state_dict: parameter name -> tensor.
        source: where the weights come from (a file or name), for the error message.

    Raises:
        ValueError: missing keys, unexpected keys or shape mismatches, all listed.
    """
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, Tensor], source: str) -> None:
    """Check that ``state_dict`` has exactly ``model``'s names and shapes (``model`` may live
    on the ``meta`` device).

    Raises:
        ValueError: missing keys, unexpected keys or shape mismatches, all listed.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys: {_clip_list(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_clip_list(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches (file vs model): {_clip_list(mismatched)}")
        arch = getattr(model, "arch", "") or type(model).__name__
        raise ValueError(f"{source}: weights do not fit the '{arch}' model ({'; '.join(problems)})")


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 (hex) over every tensor of ``model``'s state dict, by name, dtype and shape: equal
    exactly when the weights are (whatever file or name they were loaded from)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{key}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
