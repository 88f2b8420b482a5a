"""One process of the 2-process gloo test (launched by torch.distributed.run, not by pytest).

Usage: python -m torch.distributed.run --standalone --nproc-per-node 2 ddp_worker.py CONFIG OUT
Trains CONFIG and saves this rank's model + loss parameters to OUT/rank<R>.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from voxvec.train.config import load_config
from voxvec.train.loop import Trainer


def main() -> None:
    config_path, out = sys.argv[1], Path(sys.argv[2])
    trainer = Trainer(load_config(config_path))
    first_batch = next(iter(trainer.data.sampler.epoch_batches(0)))
    trainer.fit()
    state = {k: v.detach().clone() for k, v in trainer.step_module.state_dict().items()}
    torch.save(
        {"state": state, "first_batch": first_batch, "world_size": trainer.dist.world_size},
        out / f"rank{trainer.dist.rank}.pt",
    )


if __name__ == "__main__":
    main()
