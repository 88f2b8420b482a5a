"""Training checkpoints: atomic writes, keep-last-K, RNG capture, and export to an inference bundle.

A checkpoint is one ``ckpt_<step:08d>.pt`` file in the run directory, a dict of plain values and
tensors (loadable with ``torch.load(weights_only=True)``) holding everything an interrupted run
needs to continue exactly: the model and loss parameters, the optimiser, scheduler and grad-scaler
states, the sampler position, the step and epoch, every process's RNG states and the config.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxvec.atomic import atomic_path

logger = logging.getLogger(__name__)

FORMAT = "voxvec-train-checkpoint"
VERSION = 1
_NAME = re.compile(r"ckpt_(\d+)\.pt$")


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


def save_checkpoint(
    state: dict[str, Any], run_dir: str | os.PathLike[str], step: int, keep_last_k: int
) -> Path:
    """Write ``state`` atomically as ``run_dir/ckpt_<step>.pt`` and delete all but the last K.

    The file is written to a temporary name in the same folder, flushed to disk and renamed over
    the final name, so a crash never leaves a truncated checkpoint behind.

    Args:
        state: the checkpoint dict (see the module docstring); ``format`` and ``version`` keys
            are added.
        run_dir: the run directory (created if missing).
        step: optimiser steps done, which names the file.
        keep_last_k: how many checkpoints to keep (>= 1), newest by step.

    Returns:
        The path written.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / checkpoint_name(step)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save({"format": FORMAT, "version": VERSION, **state}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    for old in list_checkpoints(run_dir)[:-keep_last_k]:
        old.unlink()
        logger.debug("deleted old checkpoint %s", old)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint onto the CPU (``weights_only``: no code runs on load).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a voxvec training checkpoint (or is damaged).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a damaged file
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
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
    from voxvec import __version__
    from voxvec.pretrained import save_bundle
    from voxvec.registry import create_model

    state = load_checkpoint(checkpoint)
    model = create_model(state["arch"], state["model_config"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"weights in {checkpoint} do not fit {state['arch']}: {err}") from err
    model.eval()
    config = state.get("config", {})
    info: dict[str, Any] = {
        "arch": state["arch"],
        "steps": int(state["step"]),
        "epoch": int(state["epoch"]),
        "loss": config.get("loss"),
        "train_data": state.get("train_data", {}),
        "trained_with": f"voxvec {__version__}",
        "source_checkpoint": Path(checkpoint).name,
    }
    info.update(metadata or {})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(model, out, metadata=info)
    logger.info("exported %s (%s, %d steps) to %s", checkpoint, state["arch"], info["steps"], out)
    return out
