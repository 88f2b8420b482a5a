"""Jobs of many processes through ``torchrun``: environment detection, process group, collectives.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``; :func:`init_distributed`
reads them and joins the process group (NCCL on CUDA, gloo on CPU, unless told). Without them
the job is a single process and every helper here is a no-op, so training
(:mod:`voxvec.train.distributed` adds DDP) and ``voxvec embed`` have one code path each.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank in [0, world_size).
        world_size: number of processes (1 when not launched by torchrun).
        local_rank: rank on this machine (which GPU to use).
        device: the device this process computes on.
        local_world_size: processes on this machine (1 when not launched by torchrun).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes the job's results (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """The torch device for a config's ``device`` string.

    Args:
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
        local_rank: under torchrun, "auto" and "cuda" pick GPU ``local_rank``.

    Raises:
        ValueError: CUDA was asked for but is not available, or the string is not a device.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available")
        by_rank = resolved.index is None
        if by_rank:
            resolved = torch.device("cuda", local_rank)
        n_gpus = torch.cuda.device_count()
        if resolved.index >= n_gpus:
            hint = ": start at most one process per GPU (torchrun --nproc-per-node)"
            raise ValueError(
                f"device {resolved} asked for{f' (local rank {local_rank})' if by_rank else ''}, "
                f"but this machine has {n_gpus} GPUs{hint if by_rank else ''}"
            )
    return resolved


def init_distributed(
    device: str = "auto", *, backend: str | None = None, timeout: timedelta | None = None
) -> DistInfo:
    """Detect a ``torchrun`` launch and join its process group.

    Args:
        device: the job's device string (see :func:`resolve_device`).
        backend: the process group's backend; None: NCCL on CUDA, else gloo. Jobs that only
            exchange Python objects want gloo everywhere.
        timeout: how long a collective waits for the slowest process; None: torch's default
            (30 minutes for gloo, 10 for NCCL).

    Returns:
        This process's :class:`DistInfo`; world size 1 without torchrun.

    Raises:
        ValueError: malformed torchrun variables or an unavailable device.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", 1)
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if resolved.type == "cuda" else "gloo"
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **options)
        logger.info(
            "rank %d/%d joined the %s process group on %s", rank, world_size, backend, resolved
        )
    return DistInfo(rank, world_size, local_rank, resolved, local_world_size)


def cpu_threads_per_process(info: DistInfo) -> int:
    """The CPU threads each of this machine's processes gets: its cores shared out, at least 1.

    The cores are those this process may run on; they are divided by the processes torchrun
    started on this machine (``LOCAL_WORLD_SIZE``), so that together they use each core once.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // info.local_world_size)


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, indexed by rank (``[obj]`` in a single process)."""
    if not info.distributed:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself in a single process)."""
    if not info.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def cleanup(info: DistInfo) -> None:
    """Leave the process group (no-op in a single process)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
