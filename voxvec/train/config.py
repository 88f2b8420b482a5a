"""The training configuration: nested typed dataclasses, YAML recipes and ``key=value`` overrides.

A run is fully described by one :class:`TrainConfig`, made of sections, each defined next to the
code that interprets it:

==============  ====================================================  ==========================
section         what                                                  class
==============  ====================================================  ==========================
``model``       architecture, its config, fine-tuning source          :class:`ModelSection`
``data``        manifest, batches, crops, augmentation, workers       ``data.loader.DataConfig``
``loss``        GE2E, AAM-softmax or both, and their parameters       ``losses.LossConfig``
``distill``     a teacher model and the distillation terms            ``train.distill``
``optim``       AdamW, learning-rate schedule, steps, clipping        ``train.step.OptimConfig``
``validation``  validation manifest, interval, files used             ``train.validation``
``checkpoint``  run directory, interval, files kept, resume           ``train.checkpoint``
``log``         tensorboard and console intervals                     ``train.logging.LogConfig``
==============  ====================================================  ==========================

plus the run-wide ``seed``, ``device``, ``precision`` and ``compile``. Recipes in
``configs/*.yaml`` override some fields and the command line overrides more with dotted
``key=value`` pairs (``data.n_speakers=16``, ``model.config.embed_dim=128``; omegaconf, as in the
original project). Unknown keys and values of the wrong type are errors, and ``model.config`` is
checked against the architecture's own config when the config is built, before any data is read.
Every field is documented in the ``Attributes:`` section of its class's docstring;
:func:`config_help` renders them all for ``--help``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voxvec.models  # noqa: F401  (registers the architectures that model.arch names)
from voxvec.config import config_from_dict as arch_config_from_dict
from voxvec.config import config_to_dict as plain_dict
from voxvec.data.loader import DataConfig
from voxvec.losses.combined import LossConfig
from voxvec.registry import get_model_class
from voxvec.train.checkpoint import CheckpointConfig
from voxvec.train.distill import DistillConfig
from voxvec.train.logging import LogConfig
from voxvec.train.step import PRECISIONS, OptimConfig
from voxvec.train.validation import ValidationConfig


@dataclass(frozen=True)
class ModelSection:
    """The model to train.

    Attributes:
        arch: registered architecture to train (see `voxvec models`).
        config: overrides of the architecture's config fields, e.g. model.config.embed_dim=128;
            checked against the architecture when the config is built.
        init_from: fine-tuning, start the model from these weights (a pretrained name such as
            voxvec-default, or a bundle from `voxvec export`) instead of a random
            initialisation; arch and config must match it. The loss head, optimiser and
            schedule start fresh; a resumed run takes its weights from the checkpoint instead.

    Raises:
        ValueError: an unknown architecture, or a config the architecture refuses (unknown
            field, value out of range).
    """

    arch: str = "convgru"
    config: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None

    def __post_init__(self) -> None:
        self.arch_config()

    def arch_config(self) -> Any:
        """The architecture's own config dataclass with ``config`` applied.

        Raises:
            ValueError: as the class.
        """
        try:
            return arch_config_from_dict(get_model_class(self.arch).config_class, self.config)
        except KeyError as err:
            raise ValueError(f"model.arch: {err.args[0]}") from None
        except (TypeError, ValueError) as err:
            raise ValueError(f"model.config does not fit the {self.arch!r} model: {err}") from None


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run.

    Attributes:
        model: the model to train.
        data: the training data and its batches.
        loss: the training objective.
        distill: knowledge distillation from a teacher model, added to the objective.
        optim: optimiser, schedule and run length.
        validation: validation during training.
        checkpoint: checkpoints and resume.
        log: logging intervals.
        seed: seed of the model initialisation, sampling, crops and augmentation.
        device: auto (cuda when available), cpu, cuda or cuda:N.
        precision: auto (bfloat16 where the device computes it natively, else float32),
            float32, bfloat16 (autocast) or float16 (CUDA only, autocast with a grad scaler).
        compile: torch.compile the model.

    Raises:
        ValueError: an invalid section, an unknown precision, or a GE2E objective with fewer
            than 2 speakers or 2 utterances per batch.
    """

    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 1775
    device: str = "auto"
    precision: str = "float32"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        n, m = self.data.n_speakers, self.data.n_utterances
        if self.loss.uses_ge2e and (n < 2 or m < 2):
            raise ValueError(
                f"GE2E needs data.n_speakers >= 2 and data.n_utterances >= 2, got {n} x {m}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def check_required(self) -> None:
        """Refuse to train without ``data.train_csv`` and ``checkpoint.path``.

        (A config without them is valid, e.g. to print or extend a recipe.)

        Raises:
            ValueError: naming the missing setting.
        """
        for name, value in (
            ("data.train_csv", self.data.train_csv),
            ("checkpoint.path", self.checkpoint.path),
        ):
            if not value:
                raise ValueError(f"{name} is required: set it in the config or as {name}=...")


def _omegaconf() -> Any:
    try:
        import omegaconf
    except ImportError as err:
        raise ImportError("training configs need omegaconf: pip install 'voxvec[train]'") from err
    return omegaconf


def _build(layers: list[Any], source: str) -> TrainConfig:
    """Merge ``layers`` over the structured schema and build the validated dataclass."""
    omegaconf = _omegaconf()
    conf = omegaconf.OmegaConf
    schema = conf.structured(TrainConfig)
    # The sections are frozen, which omegaconf turns into read-only nodes; overrides must reach
    # them (the dataclasses built at the end are frozen again).
    conf.set_readonly(schema, False)
    try:
        config = conf.to_object(conf.merge(schema, *layers))
    except omegaconf.errors.OmegaConfBaseException as err:
        raise ValueError(f"invalid training config{source}: {err}") from None
    except ValueError as err:
        raise ValueError(f"invalid training config{source}: {err}") from None
    assert isinstance(config, TrainConfig)
    return config


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> TrainConfig:
    """Build a :class:`TrainConfig` from a YAML recipe and dotted ``key=value`` overrides.

    Args:
        path: a YAML file of :class:`TrainConfig` fields, or None for the defaults.
        overrides: ``key=value`` strings applied after the file (``model.config.embed_dim=128``,
            ``data.augment.noise_prob=0.5``, ``optim.betas=[0.9,0.98]``).

    Returns:
        The validated config. ``data.train_csv`` and ``checkpoint.path`` may still be empty:
        :func:`voxvec.train.loop.train` refuses that.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown key, a value of the wrong type, or an invalid combination.
        ImportError: omegaconf is not installed.
    """
    conf = _omegaconf().OmegaConf
    layers = []
    source = ""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config not found: {path}")
        layers.append(conf.load(path))
        source = f" ({path} with overrides {list(overrides)})"
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"overrides must be key=value, got {bad}")
    layers.append(conf.from_dotlist(list(overrides)))
    return _build(layers, source)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain, JSON- and YAML-friendly form of ``config`` (nested dicts; tuples become lists)."""
    return plain_dict(config)


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict` (as stored in a checkpoint), validated.

    Raises:
        ValueError: unknown key or invalid value.
    """
    return _build([_omegaconf().OmegaConf.create(dict(values))], "")


def config_to_yaml(config: TrainConfig) -> str:
    """``config`` as YAML, loadable by :func:`load_config`."""
    return _omegaconf().OmegaConf.to_yaml(config_to_dict(config))


def config_help() -> str:
    """Every :class:`TrainConfig` field with its type, default and documentation, for ``--help``.

    Each field's text is its entry in the ``Attributes:`` section of its class's docstring;
    sections are listed as ``name.*`` followed by their fields under dotted names.
    """
    lines = ["training options (set in the YAML recipe or as key=value; nested keys with dots):"]
    for name, f, default, text in iter_fields(TrainConfig()):
        if dataclasses.is_dataclass(default):
            lines.append(f"  {name}.*: {text}")
        else:
            lines.extend(_help_lines(name, f, default, text))
    return "\n".join(lines)


def iter_fields(
    config: Any, prefix: str = ""
) -> Iterator[tuple[str, dataclasses.Field[Any], Any, str]]:
    """Every field of a config dataclass instance and of its sections, depth first.

    Yields:
        ``(dotted name, field, value, documentation)``; a section comes before its fields.
    """
    docs = _attribute_docs(type(config).__doc__ or "")
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        name = f"{prefix}{f.name}"
        yield name, f, value, docs.get(f.name, "")
        if dataclasses.is_dataclass(value):
            yield from iter_fields(value, f"{name}.")


def _help_lines(name: str, f: dataclasses.Field[Any], default: Any, text: str) -> list[str]:
    type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    shown = default if isinstance(default, str) and default else repr(default)
    body = textwrap.wrap(
        text, width=92, initial_indent=" " * 6, subsequent_indent=" " * 6, break_on_hyphens=False
    )
    return [f"  {name} ({type_name}, default {shown})", *body]


def _attribute_docs(docstring: str) -> dict[str, str]:
    """``name -> text`` from the ``Attributes:`` section of a Google-style docstring."""
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(docstring).splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return docs
    name = ""
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            break
        match = re.match(r"\s+(\w+)(?: \(.*?\))?: (.*)", line)
        if match and indent <= 4:
            name = match.group(1)
            docs[name] = match.group(2).strip()
        elif name:
            docs[name] += " " + line.strip()
    return docs
