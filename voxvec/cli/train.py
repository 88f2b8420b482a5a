"""Train (or fine-tune, or resume) a speaker encoder on path,speaker manifests.

The run is described by a YAML recipe (--config, e.g. configs/convgru.yaml) whose fields are
overridden by key=value arguments. The config has sections (model, data, loss, optim, validation,
checkpoint, log) plus seed, device, precision and compile; nested keys take dots
(data.n_speakers=16, model.config.embed_dim=128, data.augment.noise_prob=0.5), lists take
brackets (optim.betas=[0.9,0.98]). Unknown keys are errors, and model.config is checked against
the architecture before any data is read. data.train_csv and checkpoint.path are required.
Checkpoints, the resolved config.yaml and the tensorboard logs (tensorboard --logdir RUN/logs)
go to checkpoint.path; running the same command again resumes from the latest checkpoint there
(checkpoint.resume=auto).

Several GPUs or machines: launch with torchrun, one process per GPU; data.n_speakers per batch
is per process. On several machines checkpoint.path must be on a shared file system.

examples:
  voxvec train --config configs/convgru.yaml data.train_csv=splits/train.csv \\
      validation.csv=splits/valid.csv checkpoint.path=runs/convgru
  voxvec train --config configs/gru.yaml --print-config optim.max_lr=1e-4
  torchrun --nproc-per-node 4 -m voxvec train --config configs/convgru.yaml \\
      data.train_csv=splits/train.csv checkpoint.path=runs/convgru4
  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint host:29500 \\
      -m voxvec train --config configs/convgru.yaml data.train_csv=... \\
      checkpoint.path=/shared/run
"""

from __future__ import annotations

import argparse
import os

HELP = "train or fine-tune a model (GE2E / AAM, one GPU, many GPUs or machines via torchrun)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the options of ``voxvec train``; every config field is listed in the epilog."""
    from voxvec.train.config import config_help

    parser.add_argument("--config", metavar="YAML", help="training recipe (default: built-ins)")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config fields to override"
    )
    parser.epilog = config_help()


def run(args: argparse.Namespace) -> int:
    """Resolve the config, then print it or train; prints the final checkpoint's path."""
    from voxvec.train.config import config_to_yaml, load_config

    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(config_to_yaml(config), end="")
        return 0
    from voxvec.train.loop import train

    final = train(config)
    if os.environ.get("RANK", "0") == "0":
        print(final)
    return 0
