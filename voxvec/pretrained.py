"""Pretrained models: named specs, the original RF5 releases and voxvec's safetensors bundles.

:func:`load_model` accepts three things:

- a name from :func:`list_pretrained` (e.g. ``"convgru-rf5"``): its weights come from a file
  bundled in ``voxvec/assets/`` or are downloaded once into ``torch.hub.get_dir()/checkpoints``
  (checked against the spec's sha256 or sha256 prefix when it has one);
- a path to a voxvec bundle: one ``.safetensors`` file whose header metadata holds the
  architecture, its JSON config and a JSON model card (see :func:`save_bundle`);
- a path to an original "simple speaker embeddings" (RF5) release file or a plain PyTorch state
  dict of a ``gru`` or ``convgru`` model; the kind of file is detected from its content.

The original release files are pickles. They are read with a restricted unpickler that only
rebuilds tensors and plain containers: any other class they name (e.g. the original training
script's ``train.TrainConfig``) becomes an inert :class:`UnknownObject`, so the original code is
never imported or run. Their tensor names map onto voxvec's modules by stripping prefixes
(:func:`normalize_keys`): the GRU file is a state dict of the original wrapper
(``model.rnn_stack.*``, ``model.projection.*``); the ConvGRU files are dicts whose
``model_state_dict`` already uses voxvec's names (``conv_encoder.*``, ``rnn.*``, ``head.*``).
Loading is strict.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import pickle
import types
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch
from torch import Tensor

from voxvec.atomic import atomic_path
from voxvec.models.base import SpeakerEncoder
from voxvec.registry import config_to_dict, create_model

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "voxvec-default"
"""The spec :func:`load_model` uses when given no name."""

BUNDLE_FORMAT = "voxvec-bundle"
BUNDLE_VERSION = 1
ASSETS_DIR = Path(__file__).resolve().parent / "assets"

KEY_PREFIXES = ("module.", "_orig_mod.", "model.")
"""Prefixes :func:`normalize_keys` strips: DataParallel/DDP, ``torch.compile``, the RF5 wrapper."""

_RF5_RELEASES = "https://github.com/RF5/simple-speaker-embedding/releases/download"
_PATH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


# ---------------------------------------------------------------------------------------------
# Restricted unpickling of the original release files


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
    ("builtins", "bytearray"): bytearray,
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
    __name__="voxvec.pretrained.restricted_pickle",
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


# ---------------------------------------------------------------------------------------------
# State dicts


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


def _clip_list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


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
    model.load_state_dict(state_dict, strict=True)


# ---------------------------------------------------------------------------------------------
# Bundles


def save_bundle(
    model: SpeakerEncoder, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a model as one ``.safetensors`` file that :func:`load_bundle` reads back.

    The header metadata holds ``format``/``format_version``, ``arch``, ``config`` (JSON of the
    config dataclass) and ``metadata`` (JSON of ``metadata``: the model card). The file is
    written to a temporary name first and moved into place.

    Args:
        model: a registered architecture (``model.arch`` set).
        path: the file to write (``.safetensors`` by convention).
        metadata: the model card: any JSON-serialisable mapping (description, training data,
            thresholds ...).

    Returns:
        The path written.

    Raises:
        ValueError: ``model`` is not a registered architecture or ``metadata`` is not JSON.
    """
    from safetensors.torch import save_file

    if not getattr(model, "arch", ""):
        raise ValueError(f"{type(model).__name__} is not a registered architecture")
    try:
        card = json.dumps(dict(metadata or {}))
    except TypeError as e:
        raise ValueError(f"bundle metadata must be JSON-serialisable: {e}") from e
    header = {
        "format": BUNDLE_FORMAT,
        "format_version": str(BUNDLE_VERSION),
        "arch": model.arch,
        "config": json.dumps(config_to_dict(model.config)),
        "metadata": card,
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def load_bundle(path: str | os.PathLike) -> tuple[SpeakerEncoder, dict[str, Any]]:
    """Read a model written by :func:`save_bundle`.

    Args:
        path: the ``.safetensors`` bundle.

    Returns:
        ``(model, card)``: the model in eval mode on the CPU and its metadata dict.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a safetensors file, not a voxvec bundle, a newer format version, an
            unknown config key, or weights that do not fit.
        KeyError: the bundle's architecture is not registered.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model bundle not found: '{path}'")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"cannot read '{path}' as a safetensors file: {e}") from e
    if header.get("format") != BUNDLE_FORMAT:
        raise ValueError(
            f"'{path}' is a safetensors file without voxvec bundle metadata (format "
            f"{header.get('format')!r}); bundles are written by voxvec.pretrained.save_bundle"
        )
    version = int(header.get("format_version", "0"))
    if version > BUNDLE_VERSION:
        raise ValueError(
            f"'{path}' is bundle format version {version}; this voxvec reads up to "
            f"{BUNDLE_VERSION}: upgrade voxvec"
        )
    try:
        config = json.loads(header["config"])
        card = json.loads(header.get("metadata", "{}"))
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"'{path}': bundle header has no valid JSON config/metadata: {e}") from e
    model = create_model(header["arch"], config)
    load_state_dict_strict(model, tensors, f"'{path}'")
    return model.eval(), card


# ---------------------------------------------------------------------------------------------
# Named pretrained models


@dataclass(frozen=True)
class PretrainedSpec:
    """One named pretrained model.

    Attributes:
        name: what :func:`load_model` is given.
        arch: the registered architecture.
        sample_rate: the model's input sample rate in Hz.
        input_kind: "waveform" or "logmel".
        n_params: number of parameters.
        description: one line: what it is, what it was trained on, its published results.
        config: the architecture's config fields ({} = defaults); unused for bundles, which
            carry their own.
        url: where to download the weights file (exactly one of ``url`` and ``asset``).
        asset: the weights file's name in ``voxvec/assets/``.
        sha256: hex sha256 of the file, or a prefix of it (as torch.hub names files); None
            when not pinned.
        converter: turns the content of an original pickled release file into voxvec's state
            dict; None: the file is a voxvec bundle (:func:`save_bundle`).
        card_asset: a JSON model card in ``voxvec/assets/`` (training data, recipe, held-out
            results, verification thresholds, limits) merged into the loaded card.
    """

    name: str
    arch: str
    sample_rate: int
    input_kind: str
    n_params: int
    description: str
    config: Mapping[str, Any] = field(default_factory=dict)
    url: str | None = None
    asset: str | None = None
    sha256: str | None = None
    converter: Callable[[Any], dict[str, Tensor]] | None = None
    card_asset: str | None = None

    def __post_init__(self) -> None:
        if (self.url is None) == (self.asset is None):
            raise ValueError(f"spec {self.name!r}: give exactly one of url and asset")

    @property
    def filename(self) -> str:
        """The weights file's name."""
        return self.asset if self.asset is not None else str(self.url).rsplit("/", 1)[-1]

    @property
    def local_path(self) -> Path:
        """Where the weights file is read from: the bundled asset, or the torch hub cache."""
        if self.asset is not None:
            return ASSETS_DIR / self.asset
        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename

    @property
    def source(self) -> str:
        """The download URL or the bundled asset's path."""
        return self.url if self.url is not None else str(self.local_path)

    def card(self) -> dict[str, Any]:
        """The spec as a model card, with the bundled JSON card's fields when it has one."""
        card = {
            "name": self.name,
            "arch": self.arch,
            "sample_rate": self.sample_rate,
            "input_kind": self.input_kind,
            "n_params": self.n_params,
            "description": self.description,
            "source": self.source,
        }
        if self.card_asset is not None:
            path = ASSETS_DIR / self.card_asset
            try:
                card.update(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(
                    f"pretrained model {self.name!r}: bad model card '{path}': {e}"
                ) from e
        return card


_SPECS: Mapping[str, PretrainedSpec] = types.MappingProxyType(
    {
        spec.name: spec
        for spec in (
            PretrainedSpec(
                name="gru-rf5",
                arch="gru",
                sample_rate=22050,
                input_kind="logmel",
                n_params=9_242_368,
                description=(
                    "original GRU (RF5, Nov 2020) on 22.05 kHz Tacotron log-mels; VCC 2018, VCTK, "
                    "LibriSpeech, CommonVoice English; EER 7.97% LibriSpeech test-clean"
                ),
                url=f"{_RF5_RELEASES}/0.1/gru-wrapped-f1f850.pth",
                sha256="f1f850",
                converter=rf5_state_dict,
            ),
            PretrainedSpec(
                name="convgru-rf5",
                arch="convgru",
                sample_rate=16000,
                input_kind="waveform",
                n_params=31_753_472,
                description=(
                    "original ConvGRU (RF5, Dec 2021) on raw 16 kHz waveforms; VCTK, LibriSpeech, "
                    "VoxCeleb 1 & 2; EER 2.95% LibriSpeech test-clean, 3.20% VoxCeleb1 test"
                ),
                url=f"{_RF5_RELEASES}/v1.0/convgru_ckpt_00700000_strip.pt",
                converter=rf5_state_dict,
            ),
            PretrainedSpec(
                name="convgru-rf5-sc09",
                arch="convgru",
                sample_rate=16000,
                input_kind="waveform",
                n_params=31_753_472,
                description=(
                    "original ConvGRU (RF5) trained on the Google Speech Commands digits (SC09)"
                ),
                url=f"{_RF5_RELEASES}/0.1/convgru_sc09_ckpt_00077500-strip.pt",
                converter=rf5_state_dict,
            ),
            PretrainedSpec(
                name=DEFAULT_MODEL,
                arch="ecapa",
                sample_rate=16000,
                input_kind="logmel",
                n_params=2_148_320,
                description=(
                    "voxvec's default: ECAPA-TDNN-lite on 16 kHz log-mels, trained by "
                    "configs/voxvec-default.yaml on 460 speakers of 5 corpora in 6 languages; "
                    "ships inside the package"
                ),
                asset="voxvec-default.safetensors",
                card_asset="voxvec-default.json",
            ),
        )
    }
)


def list_pretrained() -> list[PretrainedSpec]:
    """Every named pretrained model, in table order."""
    return list(_SPECS.values())


def get_spec(name: str) -> PretrainedSpec:
    """The spec called ``name``.

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    try:
        return _SPECS[name]
    except KeyError:
        raise KeyError(f"unknown pretrained model {name!r}; available: {sorted(_SPECS)}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(spec: PretrainedSpec, progress: bool) -> Path:
    """The spec's weights file: the bundled asset, or the download cached in the torch hub dir."""
    path = spec.local_path
    if spec.asset is not None:
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained model {spec.name!r}: its bundled weights '{path}' are missing "
                "(a source checkout without the asset, or a broken install: reinstall voxvec)"
            )
        return path
    url = str(spec.url)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s to %s", url, path)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=spec.sha256, progress=progress)
    except RuntimeError as e:  # hash mismatch: torch.hub has removed the file
        raise RuntimeError(
            f"pretrained model {spec.name!r}: download from {url} failed: {e}"
        ) from e
    except OSError as e:
        raise OSError(
            f"pretrained model {spec.name!r}: cannot download {url} ({e}); download it by hand "
            f"and pass its path to load_model, or save it as '{path}'"
        ) from e
    if spec.sha256 is None:
        logger.info("%s: sha256 %s (not pinned in the spec)", path.name, _sha256(path))
    return path


def _load_checkpoint_model(
    path: Path, converter: Callable[[Any], dict[str, Tensor]], arch: str | None, config: Any
) -> SpeakerEncoder:
    """Build ``arch`` (None: detect it from the parameter names) and fill it from ``path``."""
    state_dict = converter(load_pickled_checkpoint(path))
    if arch is None:
        arch = _detect_arch(state_dict, path)
    model = create_model(arch, config)
    load_state_dict_strict(model, state_dict, f"'{path}'")
    return model.eval()


_ARCH_BY_FIRST_MODULE = {"rnn_stack": "gru", "conv_encoder": "convgru"}


def _detect_arch(state_dict: Mapping[str, Tensor], path: Path) -> str:
    modules = {key.split(".", 1)[0] for key in state_dict}
    found = {_ARCH_BY_FIRST_MODULE[m] for m in modules if m in _ARCH_BY_FIRST_MODULE}
    if len(found) != 1:
        raise ValueError(
            f"'{path}': cannot tell the architecture from its parameter names "
            f"(top-level modules {sorted(modules)}); checkpoints of 'gru' ({{rnn_stack, "
            "projection}}) and 'convgru' ({conv_encoder, rnn, head}) are recognised; save other "
            "models with voxvec.pretrained.save_bundle"
        )
    return found.pop()


def _is_safetensors(path: Path) -> bool:
    """True when ``path`` starts like a safetensors file (u64 header size, then a JSON object)."""
    with path.open("rb") as f:
        head = f.read(9)
    return (
        len(head) == 9
        and 0 < int.from_bytes(head[:8], "little") <= path.stat().st_size
        and head[8:] == b"{"
    )


def _load_path(path: Path) -> tuple[SpeakerEncoder, dict[str, Any]]:
    if _is_safetensors(path):
        return load_bundle(path)
    model = _load_checkpoint_model(path, rf5_state_dict, None, None)
    card = {"arch": model.arch, "source": str(path)}
    return model, card


def load_model(
    name_or_path: str | os.PathLike | None = None, *, progress: bool = True
) -> tuple[SpeakerEncoder, dict[str, Any]]:
    """Load a pretrained model by name, a voxvec bundle, or an original release file.

    Args:
        name_or_path: a name from :func:`list_pretrained`; a path to a bundle written by
            :func:`save_bundle`; a path to an original RF5 release file or a PyTorch state dict
            of a ``gru``/``convgru`` model (detected by content); None for the default model
            (:data:`DEFAULT_MODEL`).
        progress: show a progress bar while downloading.

    Returns:
        ``(model, card)``: the model in eval mode on the CPU, and its model card (name,
        architecture, source ... ; possibly empty for a bare file).

    Raises:
        KeyError: unknown name (the message lists the valid ones), or no default model.
        FileNotFoundError: a path that does not exist, or a missing bundled asset.
        OSError / RuntimeError: the download failed or its hash did not match.
        ValueError: the file is not a model voxvec reads, or its weights do not fit.
    """
    if name_or_path is None:
        if DEFAULT_MODEL not in _SPECS:
            raise KeyError(
                f"no default model ({DEFAULT_MODEL!r}) in this version of voxvec; "
                f"pass one of {sorted(_SPECS)} or a path to a model file"
            )
        name_or_path = DEFAULT_MODEL
    if isinstance(name_or_path, str) and name_or_path in _SPECS:
        spec = _SPECS[name_or_path]
        path = _fetch(spec, progress)
        if spec.converter is None:
            model, card = load_bundle(path)
            if model.arch != spec.arch:
                raise ValueError(
                    f"pretrained model {spec.name!r}: '{path}' holds a '{model.arch}' model, "
                    f"expected '{spec.arch}'"
                )
            return model, {**card, **spec.card()}
        model = _load_checkpoint_model(path, spec.converter, spec.arch, dict(spec.config))
        return model, spec.card()
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return _load_path(path)
    text = os.fspath(name_or_path)
    if path.exists():
        raise ValueError(f"'{path}' is not a file: pass a model file or a pretrained name")
    if isinstance(name_or_path, str) and not (
        os.sep in text or "/" in text or text.endswith(_PATH_SUFFIXES)
    ):
        raise KeyError(
            f"unknown pretrained model {text!r} (and no such file); available: {sorted(_SPECS)}"
        )
    raise FileNotFoundError(f"model file not found: '{path}'")
