"""Multi-process training through ``torchrun``: the process group of :mod:`voxvec.distributed`
(environment detection, collectives), and DDP for the model and its buffers.

Without torchrun the run is a single process and every helper here is a no-op, so the trainer
has one code path.
"""

from __future__ import annotations

import torch.distributed as dist
from torch import nn

from voxvec.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    cleanup,
    init_distributed,
    resolve_device,
)

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "barrier",
    "broadcast_buffers",
    "cleanup",
    "init_distributed",
    "resolve_device",
    "wrap_ddp",
]


def wrap_ddp(module: nn.Module, info: DistInfo) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel when distributed, else itself."""
    if not info.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (e.g. batch-norm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward pass, so after the last step every
    rank holds statistics updated by its own batch; this makes them identical again.
    """
    if info.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
