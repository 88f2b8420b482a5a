"""Shared pieces of the weights tests: seeded models, RF5-style files, a foreign module."""

from __future__ import annotations

import importlib
import sys
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from voxvec.models import SpeakerEncoder, create_model

FOREIGN_SOURCE = """
import dataclasses
from pathlib import Path

SENTINEL = Path({sentinel!r})


def touch(reason):
    SENTINEL.write_text(reason)


@dataclasses.dataclass
class TrainConfig:
    checkpoint_path: str = "runs/sse2"
    n_epochs: int = 2000
    betas: tuple = (0.9, 0.99)

    def __setstate__(self, state):
        touch("__setstate__ ran")
        self.__dict__.update(state)


class Payload:
    def __reduce__(self):
        return (touch, ("__reduce__ callable ran",))
"""


@pytest.fixture
def foreign(tmp_path: Path) -> Iterator[tuple[types.ModuleType, Path]]:
    """A throwaway module standing for the original training script (``train.py``).

    Its classes run code when unpickled: ``TrainConfig.__setstate__`` and ``Payload``'s reduce
    callable write ``SENTINEL``. It stays importable during the test, so an unrestricted
    loader would import and run it.
    """
    name = f"foreign_train_{tmp_path.name.replace('-', '_')}"
    sentinel = tmp_path / "sentinel.txt"
    (tmp_path / f"{name}.py").write_text(FOREIGN_SOURCE.format(sentinel=str(sentinel)))
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(name), sentinel
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def _seeded(arch: str, seed: int, **overrides: object) -> SpeakerEncoder:
    torch.manual_seed(seed)
    return create_model(arch, **overrides).eval()


def _save_rf5_gru(model: SpeakerEncoder, path: Path) -> Path:
    """Save like the original GRU release: the wrapper's state dict, keys ``model.*``."""
    torch.save(OrderedDict((f"model.{k}", v) for k, v in model.state_dict().items()), path)
    return path


def _save_rf5_convgru(model: SpeakerEncoder, path: Path, config: object) -> Path:
    """Save like the original ConvGRU releases: a dict with a state dict and training objects."""
    torch.save(
        {"model_state_dict": model.state_dict(), "steps": 700000, "epoch": 12, "cfg": config},
        path,
    )
    return path


def _same_weights(a: SpeakerEncoder, b: SpeakerEncoder) -> bool:
    return all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


@pytest.fixture
def seeded() -> Callable[..., SpeakerEncoder]:
    """``seeded(arch, seed, **overrides)``: an untrained model with seeded weights, eval mode."""
    return _seeded


@pytest.fixture
def same_weights() -> Callable[[SpeakerEncoder, SpeakerEncoder], bool]:
    """``same_weights(a, b)``: every tensor of ``b``'s state dict equals ``a``'s."""
    return _same_weights


@pytest.fixture
def save_rf5_gru() -> Callable[[SpeakerEncoder, Path], Path]:
    """Save a model as the original GRU release file."""
    return _save_rf5_gru


@pytest.fixture
def save_rf5_convgru() -> Callable[[SpeakerEncoder, Path, object], Path]:
    """Save a model as an original ConvGRU release file."""
    return _save_rf5_convgru
