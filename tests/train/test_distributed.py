"""Tests of voxvec.train.distributed: torchrun detection and a real 2-process gloo run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from voxvec.train.checkpoint import load_checkpoint
from voxvec.train.config import config_to_yaml
from voxvec.train.distributed import init_distributed, resolve_device

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_without_torchrun_the_run_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    assert info.device == torch.device("cpu")


def test_bad_environment_and_devices_are_clear_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        init_distributed("cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
        assert resolve_device("auto") == torch.device("cpu")


def test_two_gloo_processes_stay_in_sync(tiny_config, tmp_path):
    config = tiny_config("optim.max_steps=4", "validation.interval=2", "checkpoint.interval=2")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(config_to_yaml(config))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            str(HERE / "ddp_worker.py"), str(config_path), str(tmp_path),
        ],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    # Each rank trained on its own shard ...
    assert set(ranks[0]["first_batch"]).isdisjoint(ranks[1]["first_batch"])
    # ... yet every parameter and buffer (model, batch norms, GE2E w and b) is identical.
    state0, state1 = ranks[0]["state"], ranks[1]["state"]
    assert state0.keys() == state1.keys()
    for key in state0:
        assert torch.equal(state0[key], state1[key]), f"{key} differs between the ranks"
    # Rank 0 wrote the checkpoints, with both ranks' RNG states.
    final = load_checkpoint(Path(config.checkpoint.path) / "ckpt_00000004.pt")
    assert final["world_size"] == 2 and len(final["rng"]) == 2
    assert not torch.equal(final["rng"][0]["torch"], final["rng"][1]["torch"])
    for key, value in final["model"].items():
        assert torch.equal(state0[f"model.{key}"], value)
    assert torch.equal(state0["loss.ge2e.w_raw"], final["loss"]["ge2e.w_raw"])
    assert not torch.equal(final["loss"]["ge2e.b"], torch.tensor(-5.0)), "no training happened"
