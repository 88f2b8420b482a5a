"""Converters: foreign checkpoint formats read into voxvec models, each behind a name.

A :class:`Converter` turns a file of another project's format into ``(arch, state_dict)`` with
voxvec's parameter names; :data:`CONVERTERS` holds them by name, and a pretrained spec names the
converter its file needs. voxvec's own format is the bundle (:mod:`voxvec.weights.bundle`).

``"rf5"``: the original "simple speaker embeddings" (RF5) release files. They are pickles, read
with a restricted unpickler that only rebuilds tensors and plain containers: any other class they
name (e.g. the original training script's ``train.TrainConfig``) becomes an inert
:class:`UnknownObject`, so the original code is never imported or run. The GRU file is a state
dict of the original wrapper (``model.rnn_stack.*``, ``model.projection.*``); the ConvGRU files
are dicts whose ``model_state_dict`` already uses voxvec's names (``conv_encoder.*``, ``rnn.*``,
``head.*``). The architecture is told from the top-level module names.

``"3dspeaker"``: 3D-Speaker's CAM++ checkpoints (github.com/modelscope/3D-Speaker), plain state
dicts of its ``CAMPPlus`` module (``head.*`` for the 2-D front module, ``xvector.*`` for the rest),
read with ``torch.load(..., weights_only=True)`` and renamed to :mod:`voxvec.models.campplus`'s
parameters by :data:`CAMPPLUS_KEY_RENAMES`.

``"pyannote-segmentation"``: pyannote's segmentation-3.0 checkpoint (``pytorch_model.bin``, a
PyTorch Lightning pickle that also names pyannote and Lightning classes), read with the restricted
unpickler; its ``state_dict`` already uses :class:`voxvec.models.pyannet.PyanNet`'s names and its
``hyper_parameters`` are checked against :class:`~voxvec.models.pyannet.PyanNetConfig`. It is not
a speaker encoder: :func:`voxvec.apps.segmentation.load_segmentation` builds the model from it.

:func:`detect_converter` tells which converter reads a file, by content.
"""

from __future__ import annotations

import codecs
import logging
import os
import pickle
import re
import types
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch
from torch import Tensor

from voxvec.weights.state import normalize_keys

logger = logging.getLogger(__name__)


class UnknownObject:
    """Inert stand-in for a class named in a pickle that the restricted loader does not trust.

    It runs none of the original class's code; it only records what the pickle gave it:
    constructor ``args``/``kwargs``, ``state`` (what ``__setstate__`` would have received) and
    any ``dict_items``/``list_items`` set on it. ``pickled_class`` is the original
    ``module.QualifiedName``.
    """

    pickled_class: ClassVar[str] = "?"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    dict_items: dict[Any, Any]
    list_items: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> UnknownObject:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        obj.dict_items, obj.list_items = {}, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Accept anything (``__new__`` has recorded it)."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.dict_items[key] = value

    def append(self, value: Any) -> None:
        """Record an item (pickles of list subclasses append their items)."""
        self.list_items.append(value)

    def extend(self, values: Iterable[Any]) -> None:
        """Record items (pickles of list subclasses extend with their items)."""
        self.list_items.extend(values)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} standing in for {self.pickled_class}>"


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles rebuild bytes objects
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only tensors, dtypes and plain containers (see the module doc)."""

    def __init__(self, file: BinaryIO, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._placeholders: dict[str, type[UnknownObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol-2 pickles use Python 2's module name
            module = "builtins"
        safe = _SAFE_GLOBALS.get((module, name))
        if safe is not None:
            return safe
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        qualified = f"{module}.{name}"
        if qualified not in self._placeholders:
            logger.debug("restricted unpickler: %s replaced by an inert placeholder", qualified)
            self._placeholders[qualified] = type(
                name.rpartition(".")[2], (UnknownObject,), {"pickled_class": qualified}
            )
        return self._placeholders[qualified]


def _restricted_pickle_load(file: BinaryIO, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# torch.load's ``pickle_module``: it needs ``Unpickler``, ``load`` and ``__name__``.
_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="voxvec.weights.converters.restricted_pickle",
    Unpickler=_RestrictedUnpickler,
    load=_restricted_pickle_load,
)


def load_pickled_checkpoint(path: str | os.PathLike) -> Any:
    """Read a ``torch.save`` file without trusting it: tensors and containers only.

    Classes other than tensors, dtypes and plain containers become :class:`UnknownObject`
    placeholders; no code named by the file is imported or run.

    Args:
        path: a file written by ``torch.save`` (zip or legacy format).

    Returns:
        The unpickled object, tensors on the CPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is a TorchScript archive or cannot be unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: '{path}'")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            raise ValueError(
                f"'{path}' is a TorchScript archive, not a checkpoint: load it with torch.jit.load"
            )
    try:
        return torch.load(
            path, map_location="cpu", pickle_module=_RESTRICTED_PICKLE, weights_only=False
        )
    except (pickle.UnpicklingError, EOFError, RuntimeError, TypeError, AttributeError) as e:
        raise ValueError(f"cannot read '{path}' as a PyTorch checkpoint: {e}") from e


def rf5_state_dict(checkpoint: Any) -> dict[str, Tensor]:
    """voxvec state dict from an original RF5 release file's content.

    Args:
        checkpoint: what :func:`load_pickled_checkpoint` returned: a state dict (the GRU wrapper's,
            keys ``model.*``) or a dict holding one under ``model_state_dict`` (the ConvGRU files).

    Returns:
        Parameter name -> tensor, with voxvec's names.

    Raises:
        ValueError: ``checkpoint`` holds no state dict of tensors.
    """
    if isinstance(checkpoint, Mapping) and "model_state_dict" in checkpoint:
        checkpoint = checkpoint["model_state_dict"]
    if (
        not isinstance(checkpoint, Mapping)
        or not checkpoint
        or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in checkpoint.items())
    ):
        raise ValueError(
            "expected a state dict (parameter name -> tensor), or a dict holding one under "
            f"'model_state_dict', got {type(checkpoint).__name__}"
        )
    return normalize_keys(checkpoint)


_RF5_ARCH_BY_FIRST_MODULE = {"rnn_stack": "gru", "conv_encoder": "convgru"}


def rf5_arch(state_dict: Mapping[str, Tensor], source: str) -> str:
    """The architecture of an RF5 state dict (voxvec names), told by its top-level modules.

    Raises:
        ValueError: the names fit neither ``gru`` nor ``convgru``.
    """
    modules = {key.split(".", 1)[0] for key in state_dict}
    found = {_RF5_ARCH_BY_FIRST_MODULE[m] for m in modules if m in _RF5_ARCH_BY_FIRST_MODULE}
    if len(found) != 1:
        raise ValueError(
            f"{source}: cannot tell the architecture from its parameter names "
            f"(top-level modules {sorted(modules)}); checkpoints of 'gru' ({{rnn_stack, "
            "projection}}) and 'convgru' ({conv_encoder, rnn, head}) are recognised; save other "
            "models with voxvec.weights.save_bundle"
        )
    return found.pop()


def read_rf5(path: str | os.PathLike) -> tuple[str, dict[str, Tensor]]:
    """``(arch, state_dict)`` of an original RF5 release file (or a plain state dict of one).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a readable checkpoint, or not one of a ``gru``/``convgru`` model.
    """
    state_dict = rf5_state_dict(load_pickled_checkpoint(path))
    return rf5_arch(state_dict, f"'{path}'"), state_dict


CAMPPLUS_KEY_RENAMES: tuple[tuple[str, str], ...] = (
    (r"head\.", "fcm."),
    (r"xvector\.tdnn\.linear\.", "tdnn.conv."),
    (r"xvector\.tdnn\.nonlinear\.batchnorm\.", "tdnn.norm."),
    (r"xvector\.block(\d+)\.tdnnd(\d+)\.nonlinear1\.batchnorm\.", "blocks.{}.layers.{}.norm1."),
    (r"xvector\.block(\d+)\.tdnnd(\d+)\.linear1\.", "blocks.{}.layers.{}.conv1."),
    (r"xvector\.block(\d+)\.tdnnd(\d+)\.nonlinear2\.batchnorm\.", "blocks.{}.layers.{}.norm2."),
    (
        r"xvector\.block(\d+)\.tdnnd(\d+)\.cam_layer\.linear_local\.",
        "blocks.{}.layers.{}.cam.local.",
    ),
    (
        r"xvector\.block(\d+)\.tdnnd(\d+)\.cam_layer\.linear1\.",
        "blocks.{}.layers.{}.cam.context_down.",
    ),
    (
        r"xvector\.block(\d+)\.tdnnd(\d+)\.cam_layer\.linear2\.",
        "blocks.{}.layers.{}.cam.context_up.",
    ),
    (r"xvector\.transit(\d+)\.nonlinear\.batchnorm\.", "transits.{}.norm."),
    (r"xvector\.transit(\d+)\.linear\.", "transits.{}.conv."),
    (r"xvector\.out_nonlinear\.batchnorm\.", "out_norm."),
    (r"xvector\.dense\.linear\.", "embedding."),
    (r"xvector\.dense\.nonlinear\.batchnorm\.", "embedding_norm."),
)
"""3D-Speaker CAM++ key prefix (regex) -> voxvec prefix; its 1-based block, layer and transition
numbers become 0-based list indices."""

_CAMPPLUS_RENAMES = tuple((re.compile(pattern), target) for pattern, target in CAMPPLUS_KEY_RENAMES)


def _campplus_key(key: str, source: str) -> str:
    for pattern, target in _CAMPPLUS_RENAMES:
        match = pattern.match(key)
        if match is not None:
            indices = (int(g) - 1 for g in match.groups())
            return target.format(*indices) + key[match.end() :]
    raise ValueError(
        f"{source}: parameter {key!r} is not one of a 3D-Speaker CAM++ model "
        "(expected head.*, xvector.tdnn.*, xvector.blockN.tdnndM.*, xvector.transitN.*, "
        "xvector.out_nonlinear.*, xvector.dense.*)"
    )


def looks_like_3dspeaker_campplus(checkpoint: Any) -> bool:
    """Whether ``checkpoint`` is a plain state dict of 3D-Speaker's CAM++ (by its key names)."""
    return (
        isinstance(checkpoint, Mapping)
        and "xvector.tdnn.linear.weight" in checkpoint
        and all(isinstance(k, str) and k.startswith(("head.", "xvector.")) for k in checkpoint)
    )


def campplus_state_dict(checkpoint: Any, source: str) -> dict[str, Tensor]:
    """voxvec ``campplus`` state dict from a 3D-Speaker CAM++ state dict.

    Args:
        checkpoint: the loaded file: parameter name -> tensor, with 3D-Speaker's names
            (a ``module.`` prefix, as written by DistributedDataParallel, is dropped).
        source: the file, for error messages.

    Returns:
        Parameter name -> tensor with :class:`voxvec.models.campplus.CAMPPlus`'s names; the
        embedding layer's ``(D, 2C, 1)`` convolution weight becomes a ``(D, 2C)`` linear weight.

    Raises:
        ValueError: not a state dict of tensors, or a key that is not one of CAM++.
    """
    if not isinstance(checkpoint, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in checkpoint.items()
    ):
        raise ValueError(
            f"{source}: expected a state dict (parameter name -> tensor) of a 3D-Speaker CAM++ "
            f"model, got {type(checkpoint).__name__}"
        )
    state = {_campplus_key(k, source): v for k, v in normalize_keys(checkpoint).items()}
    weight = state.get("embedding.weight")
    if weight is not None and weight.dim() == 3:
        state["embedding.weight"] = weight.squeeze(-1)
    return state


def _load_weights_only(path: str | os.PathLike, mmap: bool = False) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: '{path}'")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as e:
        raise ValueError(
            f"cannot read '{path}' as a plain PyTorch state dict (weights_only): {e}"
        ) from e


def read_3dspeaker(path: str | os.PathLike) -> tuple[str, dict[str, Tensor]]:
    """``("campplus", state_dict)`` of a 3D-Speaker CAM++ checkpoint (a plain state dict).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a plain state dict, or not one of a CAM++ model.
    """
    return "campplus", campplus_state_dict(_load_weights_only(path), f"'{path}'")


_PYANNOTE_HPARAMS: tuple[tuple[str, str, str], ...] = (
    ("sincnet", "stride", "sinc_stride"),
    ("lstm", "hidden_size", "lstm_hidden"),
    ("lstm", "num_layers", "lstm_layers"),
    ("linear", "hidden_size", "linear_hidden"),
    ("linear", "num_layers", "linear_layers"),
)
"""(section, key, PyanNetConfig field) of the checkpoint's hyper-parameters that voxvec checks."""


def pyannote_segmentation_state_dict(checkpoint: Any, source: str) -> dict[str, Tensor]:
    """:class:`~voxvec.models.pyannet.PyanNet` state dict from a pyannote Lightning checkpoint.

    Args:
        checkpoint: what :func:`load_pickled_checkpoint` returned: a dict with ``state_dict``
            and ``hyper_parameters`` (Lightning's layout).
        source: the file, for error messages.

    Returns:
        Parameter and buffer name -> tensor with PyanNet's names.

    Raises:
        ValueError: no state dict of tensors, or hyper-parameters other than those of
            segmentation-3.0 (a bidirectional, monolithic LSTM; the
            :class:`~voxvec.models.pyannet.PyanNetConfig` defaults).
    """
    from voxvec.models.pyannet import PyanNetConfig

    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"{source}: expected a PyTorch Lightning checkpoint with a 'state_dict' of tensors "
            f"(pyannote segmentation), got {type(checkpoint).__name__}"
        )
    hparams = checkpoint.get("hyper_parameters") or {}
    expected = PyanNetConfig()
    lstm = hparams.get("lstm") or {}
    if lstm.get("bidirectional") is False or lstm.get("monolithic") is False:
        raise ValueError(f"{source}: only a bidirectional, monolithic LSTM is supported ({lstm})")
    for section, key, field_name in _PYANNOTE_HPARAMS:
        value = (hparams.get(section) or {}).get(key)
        if value is not None and value != getattr(expected, field_name):
            raise ValueError(
                f"{source}: hyper-parameter {section}.{key}={value!r}, but voxvec's PyanNet "
                f"reads only the segmentation-3.0 layout ({key}={getattr(expected, field_name)})"
            )
    return normalize_keys(state)


def read_pyannote_segmentation(path: str | os.PathLike) -> tuple[str, dict[str, Tensor]]:
    """``("pyannet", state_dict)`` of a pyannote segmentation-3.0 checkpoint.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a readable checkpoint, or not one of the segmentation-3.0 layout.
    """
    return "pyannet", pyannote_segmentation_state_dict(load_pickled_checkpoint(path), f"'{path}'")


def detect_converter(path: str | os.PathLike) -> str:
    """The name of the converter that reads ``path`` (not a voxvec bundle), told by content.

    A plain state dict with 3D-Speaker CAM++ key names is ``"3dspeaker"``; anything else is left
    to ``"rf5"`` (whose reader explains what it could not read).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    try:
        checkpoint = _load_weights_only(path, mmap=True)
    except ValueError:  # not a zip-format plain state dict: RF5 pickles name their own classes
        return "rf5"
    return "3dspeaker" if looks_like_3dspeaker_campplus(checkpoint) else "rf5"


@dataclass(frozen=True)
class Converter:
    """A foreign checkpoint format.

    Attributes:
        name: what a pretrained spec names it by.
        description: one line: which files it reads.
        read: path -> ``(arch, state_dict)`` with voxvec's parameter names.
    """

    name: str
    description: str
    read: Callable[[str | os.PathLike], tuple[str, dict[str, Tensor]]]


CONVERTERS: Mapping[str, Converter] = types.MappingProxyType(
    {
        c.name: c
        for c in (
            Converter(
                "rf5",
                "original 'simple speaker embeddings' release files (GRU and ConvGRU pickles)",
                read_rf5,
            ),
            Converter(
                "3dspeaker",
                "3D-Speaker CAM++ checkpoints (plain state dicts, e.g. campplus_cn_en_common.pt)",
                read_3dspeaker,
            ),
            Converter(
                "pyannote-segmentation",
                "pyannote segmentation-3.0 Lightning checkpoints (pytorch_model.bin; not a "
                "speaker encoder)",
                read_pyannote_segmentation,
            ),
        )
    }
)
"""Every converter by name."""


def get_converter(name: str) -> Converter:
    """The converter called ``name``.

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    try:
        return CONVERTERS[name]
    except KeyError:
        raise KeyError(
            f"unknown checkpoint converter {name!r}; known: {sorted(CONVERTERS)}"
        ) from None
