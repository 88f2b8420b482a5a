"""Export a training checkpoint as an inference bundle that voxvec.load reads.

Strips the optimiser, loss head and RNG state from a ckpt_*.pt written by `voxvec train` and
writes one .safetensors file holding the weights, the architecture, its config and metadata (the
training steps and data summary). Given a run directory, its latest checkpoint is exported.

examples:
  voxvec export runs/convgru/ckpt_00700000.pt convgru.safetensors
  voxvec export runs/convgru model.safetensors --meta name=my-model --meta licence=CC-BY-4.0
  python -c "import voxvec; print(voxvec.load('model.safetensors'))"
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "turn a training checkpoint into an inference bundle (.safetensors) for voxvec.load"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the options of ``voxvec export``."""
    parser.add_argument("checkpoint", help="ckpt_*.pt file, or a run directory (its latest one)")
    parser.add_argument("out", help="the .safetensors bundle to write")
    parser.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra metadata entry for the bundle's model card (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """Export and print the bundle's path."""
    from voxvec.train.checkpoint import export_checkpoint, latest_checkpoint

    checkpoint = Path(args.checkpoint)
    if checkpoint.is_dir():
        found = latest_checkpoint(checkpoint)
        if found is None:
            raise FileNotFoundError(f"no checkpoint (ckpt_*.pt) in {checkpoint}")
        checkpoint = found
    bad = [m for m in args.meta if "=" not in m]
    if bad:
        raise ValueError(f"--meta takes KEY=VALUE, got {bad}")
    metadata = dict(m.split("=", 1) for m in args.meta)
    print(export_checkpoint(checkpoint, args.out, metadata=metadata))
    return 0
