"""The training configuration: typed dataclasses, YAML recipes and ``key=value`` overrides.

A run is fully described by one :class:`TrainConfig`. Recipes in ``configs/*.yaml`` override some
of its fields and the command line overrides more with dotted ``key=value`` pairs (omegaconf, as
in the original project). Unknown keys and values of the wrong type are errors. Every field carries
its documentation in ``metadata["help"]``; :func:`config_help` renders it for ``--help``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxvec.data.augment import AugmentConfig

LOSSES = ("ge2e", "aam", "ge2e+aam")
GE2E_METHODS = ("softmax", "contrast")
PRECISIONS = ("fp32", "fp16", "bf16")
SCHEDULE_KINDS = ("one_cycle", "cosine")


def _doc(help_text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field carrying its documentation (for ``--help``)."""
    if default is dataclasses.MISSING:
        return field(metadata={"help": help_text}, **kwargs)
    return field(default=default, metadata={"help": help_text}, **kwargs)


@dataclass
class TrainConfig:
    """Every setting of a training run (see the ``help`` metadata of each field)."""

    # Model
    model: str = _doc("registered architecture to train (see `voxvec models`)", "convgru")
    model_config: dict[str, Any] = _doc(
        "overrides of the architecture's config fields, e.g. model_config.embed_dim=128",
        default_factory=dict,
    )
    # Data
    train_csv: str = _doc("training manifest (path,speaker CSV); required", "")
    valid_csv: str | None = _doc(
        "validation manifest with speakers disjoint from training; null disables validation", None
    )
    checkpoint_path: str = _doc(
        "run directory: checkpoints, resolved config and tensorboard logs; required", ""
    )
    n_speakers: int = _doc("speakers per batch N (per process)", 8)
    n_utterances: int = _doc(
        "utterances per speaker M; a batch is N x M crops. GE2E needs M >= 2; for AAM alone "
        "M = 1 with a large N gives a plain shuffled batch of distinct speakers",
        6,
    )
    min_crop_s: float = _doc("shortest random crop in seconds (one length per batch)", 2.0)
    max_crop_s: float = _doc("longest random crop in seconds", 8.0)
    speed_speakers: bool = _doc(
        "add speed-perturbed copies of the training data, each speed counted as a new speaker",
        False,
    )
    speed_factors: tuple[float, ...] = _doc(
        "speed factors of speed_speakers (1.0 is the original data, always included)",
        (0.9, 1.1),
    )
    augment: AugmentConfig = _doc(
        "on-the-fly augmentation (all off by default); see voxvec.data.augment.AugmentConfig",
        default_factory=AugmentConfig,
    )
    num_workers: int = _doc("DataLoader worker processes decoding audio (0 = in the main one)", 4)
    cache_dir: str | None = _doc("on-disk cache of decoded, resampled audio; null disables", None)
    # Loss
    loss: str = _doc("training objective: ge2e, aam or ge2e+aam", "ge2e")
    ge2e_weight: float = _doc("weight of the GE2E term in ge2e+aam", 1.0)
    aam_weight: float = _doc("weight of the AAM term in ge2e+aam", 1.0)
    ge2e_method: str = _doc("GE2E variant: softmax or contrast", "softmax")
    ge2e_init_w: float = _doc("initial GE2E similarity scale w (kept positive)", 10.0)
    ge2e_init_b: float = _doc("initial GE2E similarity bias b", -5.0)
    aam_margin: float = _doc("additive angular margin (radians) of AAM softmax", 0.2)
    aam_scale: float = _doc("logit scale s of AAM softmax", 30.0)
    aam_subcentres: int = _doc("sub-centres per class of AAM softmax (1 = plain AAM)", 1)
    margin_warmup_pct: float = _doc(
        "fraction of training over which the AAM margin ramps linearly from 0", 0.0
    )
    # Optimisation
    max_steps: int | None = _doc(
        "optimiser steps to train for; null = n_epochs passes over the sampler", None
    )
    n_epochs: int = _doc("passes over the training data when max_steps is null", 50)
    schedule: str = _doc(
        "learning-rate schedule: one_cycle (linear up then linear down, the original's) or "
        "cosine (linear up then cosine down)",
        "one_cycle",
    )
    start_lr: float = _doc("learning rate at step 0", 1e-6)
    max_lr: float = _doc("peak learning rate, reached after warmup_pct of training", 5e-5)
    end_lr: float = _doc("learning rate at the last step", 3e-7)
    warmup_pct: float = _doc("fraction of training spent warming up", 0.15)
    betas: tuple[float, float] = _doc("AdamW betas", (0.9, 0.99))
    weight_decay: float = _doc(
        "AdamW decoupled weight decay (on weight matrices; never on biases, norms, GE2E w/b)", 0.01
    )
    grad_clip: float = _doc(
        "clip the gradient norm of the model (and, apart, the loss) to this", 1.0
    )
    precision: str = _doc("fp32, fp16 (CUDA only, with a grad scaler) or bf16 (autocast)", "fp32")
    compile: bool = _doc("torch.compile the model", False)
    seed: int = _doc("seed of the model initialisation, sampling, crops and augmentation", 1775)
    device: str = _doc("auto (cuda when available), cpu, cuda or cuda:N", "auto")
    # Logging, validation, checkpoints
    log_interval: int = _doc("steps between tensorboard scalars (loss, lr, grad norm, speed)", 25)
    console_interval: int = _doc("steps between console log lines", 100)
    validation_interval: int = _doc("steps between validations (loss and EER on valid_csv)", 1000)
    valid_n_speakers: int = _doc("validation speakers used (a fixed seeded choice)", 40)
    valid_n_utterances: int = _doc("validation utterances per speaker (fixed seeded choice)", 6)
    valid_max_s: float = _doc(
        "validation utterances are cut to their centre valid_max_s seconds before embedding", 8.0
    )
    checkpoint_interval: int = _doc(
        "steps between checkpoints (one is always written at the end)", 2500
    )
    keep_last_k: int = _doc("checkpoints kept in checkpoint_path (older ones are deleted)", 3)
    init_from: str | None = _doc(
        "fine-tuning: start the model from these weights (a pretrained name such as "
        "voxvec-default, or a bundle from `voxvec export`) instead of a random initialisation; "
        "the architecture and model_config must match it. The loss head, optimiser and schedule "
        "start fresh; a resumed run takes its weights from the checkpoint instead",
        None,
    )
    resume: str = _doc(
        "auto: continue from the latest checkpoint in checkpoint_path if there is one; never: "
        "start afresh (refused if checkpoint_path already holds checkpoints); or a checkpoint "
        "file to continue from",
        "auto",
    )

    def __post_init__(self) -> None:
        checks = [
            (self.loss in LOSSES, f"loss must be one of {list(LOSSES)}, got {self.loss!r}"),
            (
                self.ge2e_method in GE2E_METHODS,
                f"ge2e_method must be one of {list(GE2E_METHODS)}, got {self.ge2e_method!r}",
            ),
            (
                self.precision in PRECISIONS,
                f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}",
            ),
            (
                self.schedule in SCHEDULE_KINDS,
                f"schedule must be one of {list(SCHEDULE_KINDS)}, got {self.schedule!r}",
            ),
            (self.n_speakers >= 1, f"n_speakers must be >= 1, got {self.n_speakers}"),
            (self.n_utterances >= 1, f"n_utterances must be >= 1, got {self.n_utterances}"),
            (
                "ge2e" not in self.loss or (self.n_speakers >= 2 and self.n_utterances >= 2),
                f"GE2E needs n_speakers >= 2 and n_utterances >= 2, got {self.n_speakers} x "
                f"{self.n_utterances}",
            ),
            (
                0 < self.min_crop_s <= self.max_crop_s,
                f"need 0 < min_crop_s <= max_crop_s, got {self.min_crop_s}, {self.max_crop_s}",
            ),
            (
                self.max_steps is None or self.max_steps >= 1,
                f"max_steps must be >= 1 or null, got {self.max_steps}",
            ),
            (self.n_epochs >= 1, f"n_epochs must be >= 1, got {self.n_epochs}"),
            (0 <= self.warmup_pct < 1, f"warmup_pct must be in [0, 1), got {self.warmup_pct}"),
            (
                0 <= self.margin_warmup_pct <= 1,
                f"margin_warmup_pct must be in [0, 1], got {self.margin_warmup_pct}",
            ),
            (self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (self.keep_last_k >= 1, f"keep_last_k must be >= 1, got {self.keep_last_k}"),
            (
                all(f > 0 and f != 1.0 for f in self.speed_factors),
                f"speed_factors must be positive and != 1.0, got {list(self.speed_factors)}",
            ),
        ]
        for name in (
            "log_interval",
            "console_interval",
            "validation_interval",
            "checkpoint_interval",
        ):
            value = getattr(self, name)
            checks.append((value >= 1, f"{name} must be >= 1, got {value}"))
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid training config: {message}")


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
    # AugmentConfig is frozen, which omegaconf turns into a read-only node; overrides must reach it.
    conf.set_readonly(schema, False)
    try:
        config = conf.to_object(conf.merge(schema, *layers))
    except omegaconf.errors.OmegaConfBaseException as err:
        raise ValueError(f"invalid training config{source}: {err}") from None
    assert isinstance(config, TrainConfig)
    return config


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> TrainConfig:
    """Build a :class:`TrainConfig` from a YAML recipe and dotted ``key=value`` overrides.

    Args:
        path: a YAML file of :class:`TrainConfig` fields, or None for the defaults.
        overrides: ``key=value`` strings applied after the file (``model_config.embed_dim=128``,
            ``augment.noise_prob=0.5``, ``betas=[0.9,0.98]``).

    Returns:
        The validated config. ``train_csv`` and ``checkpoint_path`` may still be empty:
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
    """Plain, JSON- and YAML-friendly form of ``config`` (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict` (as stored in a checkpoint), validated.

    Raises:
        ValueError: unknown key or invalid value.
    """
    return _build([_omegaconf().OmegaConf.create(values)], "")


def config_to_yaml(config: TrainConfig) -> str:
    """``config`` as YAML, loadable by :func:`load_config`."""
    return _omegaconf().OmegaConf.to_yaml(config_to_dict(config))


def config_help() -> str:
    """Every :class:`TrainConfig` field with its type, default and documentation, for ``--help``.

    ``TrainConfig`` fields are documented in their ``metadata["help"]``; the nested
    ``augment.*`` fields in the ``Attributes:`` section of the ``AugmentConfig`` docstring.
    """
    lines = ["training options (set in the YAML recipe or as key=value; nested keys with dots):"]
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name == "augment":
            continue
        lines.extend(_help_lines(f.name, f, getattr(defaults, f.name), f.metadata.get("help", "")))
    lines.append("  augment.*: on-the-fly augmentation of training batches (all off by default)")
    docs = _attribute_docs(AugmentConfig.__doc__ or "")
    for f in dataclasses.fields(AugmentConfig):
        value = getattr(defaults.augment, f.name)
        lines.extend(_help_lines(f"augment.{f.name}", f, value, docs.get(f.name, "")))
    return "\n".join(lines)


def _help_lines(name: str, f: dataclasses.Field[Any], default: Any, text: str) -> list[str]:
    type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    shown = default if isinstance(default, str) and default else repr(default)
    body = textwrap.wrap(text, width=92, initial_indent=" " * 6, subsequent_indent=" " * 6)
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
