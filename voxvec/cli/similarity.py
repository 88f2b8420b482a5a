"""Compare the speakers of two audio files.

Prints the cosine similarity of their embeddings (in [-1, 1]; higher means more alike) and, when
a threshold is known (--threshold, or the model card's), the decision: same speaker when the
score is at or above the threshold.

examples:
  voxvec similarity alice1.wav alice2.flac
  voxvec similarity a.wav b.wav --model convgru-rf5 --threshold 0.7
"""

from __future__ import annotations

import argparse
from pathlib import Path

from voxvec.cli.embed import add_model_arguments, load_embedder

HELP = "cosine similarity (and same/different decision) of the speakers of two files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec similarity``."""
    parser.add_argument("a", type=Path, help="first audio file")
    parser.add_argument("b", type=Path, help="second audio file")
    add_model_arguments(parser)
    parser.add_argument(
        "--threshold",
        default=None,
        help="decision threshold: a cosine score, or an operating point of the model card "
        "(eer, far1 for the default model); default: the card's eer point",
    )


def run(args: argparse.Namespace) -> int:
    """Embed both files and print the score and, when a threshold is known, the decision."""
    from voxvec.inference import similarity

    embedder = load_embedder(args)
    emb = embedder.embed([args.a, args.b])
    score = similarity(emb[0], emb[1])
    print(f"similarity {score:.4f}")
    threshold = None
    if args.threshold is not None:
        try:
            threshold = float(args.threshold)
        except ValueError:
            threshold = embedder.resolve_threshold(args.threshold)
    elif embedder.threshold is not None:
        threshold = embedder.threshold
    if threshold is not None:
        decision = "same speaker" if score >= threshold else "different speakers"
        print(f"decision {decision} (threshold {threshold:.4f})")
    return 0
