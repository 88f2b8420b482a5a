"""Compare the speakers of two audio files.

Prints the cosine similarity of their embeddings (in [-1, 1]; higher means more alike) and, when
a threshold is known (--threshold, or the model card's), the decision with the threshold used and
where it came from: same speaker when the score is at or above the threshold.

examples:
  voxvec similarity alice1.wav alice2.flac
  voxvec similarity a.wav b.wav --threshold far1
  voxvec similarity a.wav b.wav --model convgru-rf5 --threshold 0.7
"""

from __future__ import annotations

import argparse
from pathlib import Path

from voxvec.cli.model_options import add_model_arguments, load_embedder

HELP = "cosine similarity (and same/different decision) of the speakers of two files"


def threshold_value(text: str) -> float | str:
    """A --threshold value: a number (a cosine score), else the name of an operating point."""
    try:
        return float(text)
    except ValueError:
        return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec similarity``."""
    parser.add_argument("a", type=Path, help="first audio file")
    parser.add_argument("b", type=Path, help="second audio file")
    add_model_arguments(parser)
    parser.add_argument(
        "--threshold",
        type=threshold_value,
        default=None,
        help="decision threshold: a cosine score, or an operating point of the model card "
        "(eer, far1 for the default model); default: the card's eer point",
    )


def run(args: argparse.Namespace) -> int:
    """Print the score and, when a threshold is known, the decision and its threshold."""
    embedder = load_embedder(args)
    if args.threshold is None and embedder.threshold is None:
        from voxvec.inference import similarity

        emb = embedder.embed([args.a, args.b])
        print(f"similarity {similarity(emb[0], emb[1]):.4f}")
        print("no decision: the model card has no threshold (give one with --threshold)")
        return 0
    threshold = embedder.resolve_threshold(args.threshold)
    score, same = embedder.verify(args.a, args.b, threshold=threshold)
    decision = "same speaker" if same else "different speakers"
    print(f"similarity {score:.4f}")
    source = embedder.threshold_source(args.threshold)
    print(f"decision {decision} (threshold {threshold:.4f}: {source})")
    return 0
