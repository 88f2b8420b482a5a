"""Training checkpoints: content, resume, atomic writes, keep-last-K, RNG capture and export.

A checkpoint is one ``ckpt_<step:08d>.pt`` file in the run directory, a dict of plain values and
tensors (loadable with ``torch.load(weights_only=True)``) holding everything an interrupted run
needs to continue exactly: the model and loss parameters, the optimiser, scheduler and grad-scaler
states, the sampler position, the step and epoch, every process's RNG states and the config.
:class:`RunState` holds the live objects behind those entries and writes and restores them;
:func:`resume_path` decides which checkpoint (if any) a run continues from and
:func:`load_resume` reads it.

Each checkpoint has a checksum beside it, ``ckpt_<step:08d>.pt.sha256`` (the ``sha256sum``
format), written before the checkpoint itself and verified on load, so a truncated, emptied or
overwritten checkpoint is detected with a clear message; a run resuming from its own directory
then falls back to the newest checkpoint that is intact. Writes are atomic (a temporary file,
then a rename); the temporary files a killed save leaves are removed when the next run starts
(:func:`remove_leftovers`).
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from voxvec.atomic import atomic_path
from voxvec.config import config_to_dict as model_config_to_dict
from voxvec.data.sampler import SpeakerBatchSampler
from voxvec.models.base import SpeakerEncoder

logger = logging.getLogger(__name__)

FORMAT = "voxvec-train-checkpoint"
VERSION = 1
_NAME = re.compile(r"ckpt_(\d+)\.pt$")
CHECKSUM_SUFFIX = ".sha256"
# What voxvec.atomic.atomic_path names the temporary files of a checkpoint and its checksum.
_LEFTOVER = re.compile(r"\.ckpt_\d+\.pt(\.sha256)?\.[0-9a-f]{32}\.tmp$")


@dataclass(frozen=True)
class CheckpointConfig:
    """Where a run writes its checkpoints, how often, and where it resumes from.

    Attributes:
        path: run directory for checkpoints, the resolved config.yaml and tensorboard logs;
            required to train.
        interval: steps between checkpoints (one is always written at the end).
        keep_last_k: checkpoints kept in path (older ones are deleted).
        resume: auto (continue from the latest checkpoint in path if there is one), never
            (start afresh; refused if path already holds checkpoints), or a checkpoint file or
            run directory to continue from.

    Raises:
        ValueError: an interval or keep_last_k below 1.
    """

    path: str = ""
    interval: int = 2500
    keep_last_k: int = 3
    resume: str = "auto"

    def __post_init__(self) -> None:
        for name in ("interval", "keep_last_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"checkpoint.{name} must be >= 1, got {getattr(self, name)}")


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint written after ``step`` optimiser steps."""
    return f"ckpt_{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The checkpoints in ``run_dir``, oldest (fewest steps) first; empty if there are none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint with the most steps in ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def checksum_path(checkpoint: str | os.PathLike[str]) -> Path:
    """The checksum file of ``checkpoint``: ``<checkpoint>.sha256``."""
    path = Path(checkpoint)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def remove_leftovers(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Remove what killed saves left in ``run_dir``: temporary files and orphaned checksums.

    Call it when a run starts, before it writes (one run per directory at a time).

    Returns:
        The files removed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    removed = [
        path
        for path in sorted(run_dir.iterdir())
        if _LEFTOVER.match(path.name)
        or (
            path.name.endswith(CHECKSUM_SUFFIX)
            and _NAME.match(path.name[: -len(CHECKSUM_SUFFIX)])
            and not path.with_name(path.name[: -len(CHECKSUM_SUFFIX)]).exists()
        )
    ]
    for path in removed:
        size = path.stat().st_size
        path.unlink()
        logger.info("removed %s (%d bytes), left by an interrupted checkpoint save", path, size)
    return removed


def save_checkpoint(
    state: dict[str, Any], run_dir: str | os.PathLike[str], step: int, keep_last_k: int
) -> Path:
    """Write ``state`` atomically as ``run_dir/ckpt_<step>.pt`` and delete all but the last K.

    The checkpoint is serialised in memory, its sha256 written to ``<checkpoint>.sha256``, then
    the file written to a temporary name in the same folder, flushed to disk and renamed over
    the final name, so a crash never leaves a truncated checkpoint under a real name.

    Args:
        state: the checkpoint dict (see the module docstring); ``format`` and ``version`` keys
            are added.
        run_dir: the run directory (created if missing).
        step: optimiser steps done, which names the file.
        keep_last_k: how many checkpoints to keep (>= 1), newest by step.

    Returns:
        The path written.

    Raises:
        OSError: the checkpoint cannot be written (e.g. a full disk); the message names it.
    """
    run_dir = Path(run_dir)
    path = run_dir / checkpoint_name(step)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    data = buffer.getbuffer()
    digest = hashlib.sha256(data).hexdigest()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(checksum_path(path)) as tmp:
            tmp.write_text(f"{digest}  {path.name}\n")
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise OSError(
            err.errno or errno.EIO,
            f"cannot write checkpoint {path} ({len(data)} bytes): {err.strerror or err}",
        ) from err
    for old in list_checkpoints(run_dir)[:-keep_last_k]:
        old.unlink()
        checksum_path(old).unlink(missing_ok=True)
        logger.debug("deleted old checkpoint %s", old)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint onto the CPU (``weights_only``: no code runs on load).

    The file is checked against its ``.sha256`` checksum first; one without (written by an
    older voxvec, or copied alone) is loaded unverified, with a warning.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a voxvec training checkpoint, or is damaged (empty,
            truncated, or not what was saved: the message says which).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"checkpoint {path} is empty (0 bytes): its save was interrupted")
    checksum = checksum_path(path)
    if checksum.is_file():
        recorded = checksum.read_text().split()[:1]
        actual = hashlib.sha256(data).hexdigest()
        if recorded != [actual]:
            raise ValueError(
                f"checkpoint {path} is damaged: its sha256 {actual[:16]}... is not the one "
                f"recorded when it was saved ({checksum}); the file was truncated or overwritten "
                f"({len(data)} bytes)"
            )
    else:
        logger.warning("checkpoint %s has no checksum (%s): loading it unverified", path, checksum)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a damaged file
        raise ValueError(
            f"cannot read checkpoint {path} ({len(data)} bytes): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a voxvec training checkpoint (written by `voxvec train`); "
            "inference bundles (.safetensors) load with voxvec.load"
        )
    if state.get("version") != VERSION:
        raise ValueError(
            f"{path} has checkpoint version {state.get('version')}; this voxvec reads {VERSION}"
        )
    return state


def load_resume(resume: str, run_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint a run continues from (see :func:`resume_path`), read.

    When the checkpoint is the latest of a directory (``resume`` is ``"auto"`` or a run
    directory) and it is damaged, the reason is logged and the newest intact older one is used.
    A checkpoint file named explicitly must be intact.

    Args:
        resume: as in :func:`resume_path`.
        run_dir: the run's own directory.

    Returns:
        ``(path, state)``, or None to start afresh.

    Raises:
        ValueError: ``resume`` as in :func:`resume_path`, or every candidate is damaged (each
            reason given).
        FileNotFoundError: as in :func:`resume_path`.
    """
    path = resume_path(resume, run_dir)
    if path is None:
        return None
    if resume != "auto" and not Path(resume).is_dir():
        return path, load_checkpoint(path)
    found = list_checkpoints(path.parent)
    reasons: list[str] = []
    for candidate in reversed(found[: found.index(path) + 1]):
        try:
            return candidate, load_checkpoint(candidate)
        except ValueError as err:
            logger.warning("%s; trying the checkpoint before it", err)
            reasons.append(str(err))
    raise ValueError(
        f"no intact checkpoint in {path.parent} to resume from: {'; '.join(reasons)}; use "
        "checkpoint.resume=never with another checkpoint.path to start afresh"
    )


def resume_path(resume: str, run_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint a run continues from, or None to start afresh.

    Args:
        resume: ``"auto"`` (the latest checkpoint in ``run_dir``, if any), ``"never"``, or a
            checkpoint file or run directory.
        run_dir: the run's own directory.

    Returns:
        A checkpoint path, or None.

    Raises:
        ValueError: ``"never"`` but ``run_dir`` already holds checkpoints.
        FileNotFoundError: ``resume`` is neither of the words nor an existing checkpoint, or a
            directory without checkpoints.
    """
    run_dir = Path(run_dir)
    existing = list_checkpoints(run_dir)
    if resume == "auto":
        return existing[-1] if existing else None
    if resume == "never":
        if existing:
            raise ValueError(
                f"{run_dir} already holds checkpoints ({existing[-1].name}); use "
                "checkpoint.resume=auto to continue that run, or another checkpoint.path"
            )
        return None
    path = Path(resume)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"resume={resume}: no checkpoint (ckpt_*.pt) in {path}")
        return found
    if not path.is_file():
        raise FileNotFoundError(
            f"resume={resume!r} is neither auto, never, nor an existing checkpoint"
        )
    return path


@dataclass
class Progress:
    """How far a run is.

    Attributes:
        step: optimiser steps done.
        epoch: the current epoch.
        batches_done: batches of the current epoch trained on.
    """

    step: int = 0
    epoch: int = 0
    batches_done: int = 0


@dataclass
class RunState:
    """The live objects of a run whose state a checkpoint holds (see the module docstring).

    Attributes:
        arch: the model's registered architecture.
        model: the encoder (its ``config`` is stored too).
        loss: the loss module (learned GE2E scale and bias, AAM class centres).
        optimizer: the optimiser.
        scheduler: the learning-rate scheduler (only its position is restored: the schedule
            itself comes from the config, so a run can be extended).
        scaler: the gradient scaler of float16 training (disabled otherwise).
        sampler: the batch sampler.
        progress: step, epoch and batches done.
    """

    arch: str
    model: SpeakerEncoder
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    sampler: SpeakerBatchSampler
    progress: Progress

    def state_dict(
        self,
        rng: list[dict[str, Any]],
        config: dict[str, Any],
        train_data: dict[str, Any],
    ) -> dict[str, Any]:
        """The checkpoint contents.

        Args:
            rng: every process's :func:`capture_rng_state`, by rank.
            config: the run's config as a plain dict.
            train_data: a summary of the training data (for the model card).

        Returns:
            The dict :func:`save_checkpoint` writes.
        """
        return {
            "arch": self.arch,
            "model_config": model_config_to_dict(self.model.config),
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(batches_done=self.progress.batches_done),
            "step": self.progress.step,
            "epoch": self.progress.epoch,
            "rng": rng,
            "world_size": len(rng),
            "config": config,
            "train_data": train_data,
        }

    def load_state_dict(self, state: dict[str, Any], source: Path, rank: int = 0) -> None:
        """Continue from a checkpoint: every object's state, the progress and this rank's RNG.

        The RNG states are restored only when the checkpoint was written by as many processes
        as this run has (otherwise a warning says the continuation is not bit-exact).

        Args:
            state: from :func:`load_checkpoint`.
            source: where it was read (for messages).
            rank: this process's rank.

        Raises:
            ValueError: the checkpoint holds another architecture or weights of other shapes.
        """
        if state["arch"] != self.arch:
            raise ValueError(
                f"checkpoint {source} holds a {state['arch']!r} model but the config trains "
                f"{self.arch!r}"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.loss.load_state_dict(state["loss"])
        except RuntimeError as err:
            raise ValueError(f"checkpoint {source} does not fit this config: {err}") from err
        self.optimizer.load_state_dict(state["optimizer"])
        scheduler_state = dict(state["scheduler"])
        scheduler_state.pop("lr_lambdas", None)
        self.scheduler.load_state_dict({**scheduler_state, "lr_lambdas": [None]})
        self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["sampler"])
        self.progress.step = int(state["step"])
        self.progress.epoch = int(state["epoch"])
        self.progress.batches_done = int(state["sampler"]["batches_done"])
        world_size = self.sampler.world_size
        rng = state["rng"]
        if len(rng) == world_size:
            restore_rng_state(rng[rank])
        else:
            logger.warning(
                "checkpoint was written by %d process(es), this run has %d: RNG states not "
                "restored, so the continuation is not bit-exact",
                len(rng),
                world_size,
            )
        progress = self.progress
        logger.info("resumed from %s at step %d (epoch %d)", source, progress.step, progress.epoch)


def capture_rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch and CUDA RNG states, as plain values and tensors."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only when CUDA is available)."""
    random.setstate(_as_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """``random.setstate`` wants nested tuples; serialisation may hand back lists."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuple(v) for v in value)
    return value


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Strip a training checkpoint down to an inference bundle that :func:`voxvec.load` reads.

    Keeps the model weights, architecture and config; drops the optimiser, loss head and RNG
    state. The bundle's metadata records the architecture, training steps and epoch, the loss
    and a summary of the training data, plus ``metadata``.

    Args:
        checkpoint: a ``ckpt_*.pt`` file written by ``voxvec train``.
        out: the ``.safetensors`` file to write.
        metadata: extra JSON-serialisable entries (they override the generated ones).

    Returns:
        ``out`` as a Path.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: not a training checkpoint, or its weights do not fit its architecture.
    """
    from voxvec._version import __version__
    from voxvec.models import create_model
    from voxvec.weights import save_bundle

    state = load_checkpoint(checkpoint)
    model = create_model(state["arch"], state["model_config"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"weights in {checkpoint} do not fit {state['arch']}: {err}") from err
    model.eval()
    loss = state.get("config", {}).get("loss")
    info: dict[str, Any] = {
        "arch": state["arch"],
        "steps": int(state["step"]),
        "epoch": int(state["epoch"]),
        # The loss section's kind; checkpoints written before the config was nested hold the
        # objective's name itself.
        "loss": loss.get("kind") if isinstance(loss, dict) else loss,
        "train_data": state.get("train_data", {}),
        "trained_with": f"voxvec {__version__}",
        "source_checkpoint": Path(checkpoint).name,
    }
    info.update(metadata or {})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(model, out, card=info)
    logger.info("exported %s (%s, %d steps) to %s", checkpoint, state["arch"], info["steps"], out)
    return out
