"""Where and how a model runs: the device, the arithmetic precision, and the batched forward pass.

:func:`embed_waveforms` is voxvec's one batched primitive: any number of waveforms of any lengths
in, one embedding per waveform out, in length-sorted batches with padding, under the chosen
precision, scattered back into input order. The :class:`~voxvec.inference.Embedder`, training
validation, the benchmarks and the hub wrappers all embed through it.

Vocabulary (the same in the API, the CLI and configs):

- device: ``"auto"`` (or None) for CUDA when available, else the CPU; ``"cpu"``, ``"cuda"``,
  ``"cuda:1"`` ...
- precision (:data:`PRECISIONS`): ``"float32"``; ``"bfloat16"`` (autocast; features and sums over
  time stay float32); ``"auto"``: bfloat16 where the device computes it natively
  (:func:`native_bfloat16`), else float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads PRECISIONS without it
    import numpy as np
    import torch
    from torch import Tensor

    from voxvec.models.base import SpeakerEncoder

PRECISIONS = ("auto", "float32", "bfloat16")
"""Inference precisions: what ``precision=`` and ``--precision`` accept."""

AUTO = "auto"

MAX_DEFAULT_THREADS = 4
"""The most torch threads :func:`default_num_threads` picks: more rarely speeds up one model's
forward pass, and on a shared machine every extra thread waits for a busy core."""


def default_num_threads() -> int:
    """The torch threads voxvec's CLI uses unless told otherwise (``--threads auto``).

    ``OMP_NUM_THREADS`` when it is set (the usual way to pin a job's threads), else the CPU cores
    this process may run on less those already busy (the 1-minute load average, rounded), at
    least 1 and at most :data:`MAX_DEFAULT_THREADS`. On a 2-core machine that other jobs keep
    busy, torch's own default (a thread per core) embedded one file 5-11x slower than one
    thread; on the idle machine both cores embedded a batch 1.5x faster than one (BENCHMARKS.md).

    Raises:
        ValueError: ``OMP_NUM_THREADS`` is set but not a positive integer.
    """
    import os

    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"OMP_NUM_THREADS must be a positive integer, got {text!r}")
        return int(text)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):  # no load average on this platform
        busy = 0
    return max(1, min(cores - busy, MAX_DEFAULT_THREADS))


def set_num_threads(num_threads: int | str) -> int:
    """Set the torch threads of this process (one forward pass's parallelism) and return them.

    Torch's threads are a setting of the whole process: every model in it runs with them.

    Args:
        num_threads: threads, >= 1; ``"auto"`` for :func:`default_num_threads`.

    Raises:
        ValueError: ``num_threads`` is neither ``"auto"`` nor a positive integer.
    """
    import torch

    n = default_num_threads() if num_threads == AUTO else num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_threads must be 'auto' or a positive integer, got {num_threads!r}")
    torch.set_num_threads(n)
    return n


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on.

    Args:
        device: None or ``"auto"``: CUDA when available, else the CPU; otherwise any
            ``torch.device`` spelling (``"cpu"``, ``"cuda:1"`` ...).

    Raises:
        ValueError: a CUDA device is requested but CUDA is not available, or the name is not a
            device.
    """
    import torch

    if device is None or device == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use 'cpu'")
    return resolved


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (so autocast to it is faster, not slower).

    CUDA: :func:`torch.cuda.is_bf16_supported` without emulation (Ampere and later). CPU: AMX
    tiles (Intel Xeons since Sapphire Rapids). AVX512-BF16 alone does not count: it has only
    dot-product instructions, and on such a CPU (BENCHMARKS.md, "Precision") the default model
    ran 1.06x (2 threads) to 1.16x (1 thread) slower under bfloat16 autocast than
    in float32. Elsewhere bfloat16 is emulated.
    """
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type != "cpu":
        return False
    try:  # private helpers of torch.cpu (torch >= 2.3); absent means "do not know": no
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve_precision(
    precision: str, device: torch.device, model: SpeakerEncoder | None = None
) -> str:
    """``"float32"`` or ``"bfloat16"`` for a :data:`PRECISIONS` value on ``device``.

    A ``model`` that computes in float32 whatever autocast asks (``supports_bfloat16`` False,
    e.g. CAM++) always gets ``"float32"``, so what is reported is what runs.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if model is not None and not model.supports_bfloat16:
        return "float32"
    if precision == AUTO:
        return "bfloat16" if native_bfloat16(device) else "float32"
    return precision


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    import torch

    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def embed_waveforms(
    model: SpeakerEncoder,
    waves: Sequence[np.ndarray | Tensor],
    *,
    batch_size: int = 16,
    precision: str = "float32",
) -> Tensor:
    """Embed waveforms of any lengths in length-sorted, padded batches (on a CPU of at most
    :data:`voxvec.audio.windows.CPU_BATCH_S` seconds each).

    Each waveform gets the embedding it gets alone (padding is masked by every model; under
    bfloat16 rounding differs slightly with the batch shape). Runs on the model's device without
    gradients; the caller puts the model in eval mode.

    Args:
        model: the encoder.
        waves: ``S`` 1-D waveforms at ``model.sample_rate`` (numpy arrays or tensors), each at
            least ``model.min_samples`` long.
        batch_size: most waveforms per forward pass (the bound on peak memory).
        precision: one of :data:`PRECISIONS` (``"auto"`` resolved for the model's device).

    Returns:
        ``(S, D)`` float32 embeddings on the CPU, in the order of ``waves``.

    Raises:
        ValueError: ``batch_size < 1``, an unknown precision, or a waveform the model rejects
            (not 1-D, or too short).
    """
    import torch

    from voxvec.audio.windows import batch_bound, length_batches, pad_batch

    device = model_device(model)
    bound = batch_bound(model.sample_rate, device.type == "cpu")
    batches = length_batches([len(w) for w in waves], batch_size, bound)
    bfloat16 = resolve_precision(precision, device, model) == "bfloat16"
    out = torch.empty(len(waves), model.embed_dim)
    with torch.inference_mode():
        for idx in batches:
            wav, lengths = pad_batch([waves[i] for i in idx])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bfloat16):
                emb = model(wav.to(device), lengths.to(device))
            out[idx] = emb.float().cpu()
    return out
