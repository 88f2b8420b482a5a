"""The raw cosine similarity of the speakers of two audio files.

Prints the score (in [-1, 1]; higher means more alike) and nothing else: no threshold, no
decision. To decide whether they are the same speaker, use `voxvec verify` (which also takes
several files per side and a calibration).

examples:
  voxvec similarity alice1.wav alice2.flac
  voxvec similarity a.wav b.wav --model convgru-rf5
"""

from __future__ import annotations

import argparse
from pathlib import Path

from voxvec.cli.model_options import add_model_arguments, load_embedder

HELP = "raw cosine similarity of the speakers of two files (for a decision: voxvec verify)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec similarity``."""
    parser.add_argument("a", type=Path, help="first audio file")
    parser.add_argument("b", type=Path, help="second audio file")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Print the cosine score."""
    from voxvec.inference import similarity

    emb = load_embedder(args).embed([args.a, args.b])
    print(f"similarity {similarity(emb[0], emb[1]):.4f}")
    return 0
