"""Tests of voxvec.distributed: what a process learns from torchrun's environment.

The process group itself is run for real by tests/cli/test_embed_torchrun.py (voxvec embed) and
tests/train/test_distributed.py (training), both with two gloo processes.
"""

from __future__ import annotations

import os

import pytest
import torch

from voxvec.distributed import cpu_threads_per_process, init_distributed, resolve_device


def test_torchrun_variables_give_the_rank_and_the_processes_on_this_machine(monkeypatch):
    for name, value in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    info = init_distributed("cpu", backend="gloo")
    assert (info.rank, info.world_size, info.local_world_size) == (0, 1, 4)
    assert info.device == torch.device("cpu") and not info.distributed
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "four")
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE='four' is not an integer"):
        init_distributed("cpu")


@pytest.mark.parametrize(
    ("cores", "local_world_size", "expected"), [(16, 4, 4), (2, 2, 1), (3, 8, 1)]
)
def test_cpu_threads_share_the_cores_among_the_processes_of_a_machine(
    monkeypatch, cores, local_world_size, expected
):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_world_size))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert cpu_threads_per_process(init_distributed("cpu")) == expected


def test_a_process_without_its_own_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="local rank 2.* 2 GPUs: start at most one process per"):
        resolve_device("auto", local_rank=2)
    with pytest.raises(ValueError, match=r"cuda:5 asked for, but this machine has 2 GPUs$"):
        resolve_device("cuda:5")
