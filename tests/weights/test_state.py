"""Key normalisation and strict loading (voxvec.weights.state)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from voxvec.weights.state import load_state_dict_strict, normalize_keys


def test_normalize_keys_strips_wrapper_prefixes() -> None:
    t = torch.zeros(1)
    out = normalize_keys({"module._orig_mod.rnn.w": t, "model.head.b": t, "conv.x": t})
    assert list(out) == ["rnn.w", "head.b", "conv.x"]
    with pytest.raises(ValueError, match="collide"):
        normalize_keys({"module.a": t, "a": t})


def test_strict_loading_lists_every_problem(seeded: Callable[..., Any]) -> None:
    model = seeded("gru", 0, hidden_size=8, n_layers=1)
    state = dict(model.state_dict())
    state.pop("projection.bias")
    state["extra.weight"] = torch.zeros(1)
    state["projection.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError) as info:
        load_state_dict_strict(model, state, "'x.pt'")
    message = str(info.value)
    assert "'x.pt'" in message and "'gru'" in message
    assert "missing keys: projection.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "projection.weight (3, 3) vs (256, 8)" in message
