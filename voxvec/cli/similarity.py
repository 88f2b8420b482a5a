"""Raw cosine similarity of the speakers of audio files: two files, every pair of many, or a list.

With two files, prints their score (in [-1, 1]; higher means more alike) and nothing else: no
threshold, no decision. With more files, prints (or writes to --matrix) the matrix of every
pair's score as CSV: a header "file,<file 1>,<file 2>...", then one row per file. With
--pairs, scores each pair of a path1,path2 CSV (relative paths are relative to it) and writes
path1,path2,score lines to --out (or prints them). Every file is embedded once; files that
cannot be embedded are reported with the reason and left out (exit code 1). To decide whether
two recordings are the same speaker, use `voxvec verify` (which also takes several files per
side and a calibration).

examples:
  voxvec similarity alice1.wav alice2.flac
  voxvec similarity a.wav b.wav c.wav d.wav --matrix scores.csv
  voxvec similarity --pairs pairs.csv --out scores.csv --model convgru-rf5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from voxvec.cli.model_options import add_model_arguments, load_embedder

if TYPE_CHECKING:
    import numpy as np

HELP = "raw cosine similarity of two files, of every pair of many, or of a pair list"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec similarity``."""
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help="audio files")
    parser.add_argument(
        "--matrix", metavar="CSV", type=Path, help="write the files' score matrix here"
    )
    parser.add_argument("--pairs", metavar="CSV", type=Path, help="path1,path2 CSV of pairs")
    parser.add_argument(
        "--out", "-o", metavar="CSV", type=Path, help="with --pairs: write the scores here"
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--batch-size", type=int, default=16, metavar="N", help="inputs per forward pass (16)"
    )


def run(args: argparse.Namespace) -> int:
    """Print (or write) the score, the matrix or the pair scores; 1 when a file failed."""
    if args.pairs is not None:
        if args.files or args.matrix:
            raise ValueError("give either FILE... or --pairs CSV, not both")
        return _score_pairs(args)
    if args.out is not None:
        raise ValueError("--out goes with --pairs (for a matrix, give --matrix CSV)")
    if len(args.files) < 2:
        raise ValueError(f"give at least two audio files (or --pairs CSV), got {len(args.files)}")
    if len(args.files) == 2 and args.matrix is None:
        from voxvec.inference import similarity

        emb = load_embedder(args).embed(args.files)
        print(f"similarity {similarity(emb[0], emb[1]):.4f}")
        return 0
    return _score_matrix(args)


def _embed(
    args: argparse.Namespace, files: list[Path]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Embed each distinct file once; report each failure on stderr, then a summary.

    Returns:
        As :func:`voxvec.eval.verify.embed_files`: embeddings and failures by path key.
    """
    from voxvec.eval.verify import describe_failures, embed_files

    embeddings, failed = embed_files(
        load_embedder(args), files, batch_size=args.batch_size, progress=sys.stderr.isatty()
    )
    for message in failed.values():
        print(f"voxvec similarity: skipped {message}", file=sys.stderr)
    if failed:
        print(f"voxvec similarity: {describe_failures(failed)}", file=sys.stderr)
    if not embeddings:
        raise ValueError("no file could be embedded")
    return embeddings, failed


def _score_matrix(args: argparse.Namespace) -> int:
    """Every pair's score of the files that could be embedded, as a CSV matrix."""
    import csv

    import numpy as np

    from voxvec.atomic import atomic_open
    from voxvec.eval.verify import path_key

    embeddings, failed = _embed(args, args.files)
    kept = list(dict.fromkeys(f for f in args.files if path_key(f) in embeddings))
    matrix = np.stack([embeddings[path_key(f)] for f in kept]).astype(np.float64)
    scores = matrix @ matrix.T

    def write(f: TextIO) -> None:
        writer = csv.writer(f)
        writer.writerow(["file", *map(str, kept)])
        for name, row in zip(kept, scores, strict=True):
            writer.writerow([str(name), *(f"{value:.4f}" for value in row)])

    if args.matrix is None:
        write(sys.stdout)
    else:
        with atomic_open(args.matrix) as out:
            write(out)
        print(f"{len(kept)} x {len(kept)} score matrix written to {args.matrix}", file=sys.stderr)
    return 1 if failed else 0


def _score_pairs(args: argparse.Namespace) -> int:
    """The score of each pair whose two files could be embedded."""
    from voxvec.eval.trials import read_pairs, write_scores
    from voxvec.eval.verify import path_key, score_pairs

    pairs = read_pairs(args.pairs)
    embeddings, failed = _embed(args, [p for pair in pairs for p in pair])
    kept = [pair for pair in pairs if all(path_key(p) in embeddings for p in pair)]
    if len(kept) < len(pairs):
        print(
            f"voxvec similarity: left out {len(pairs) - len(kept)} of {len(pairs)} pairs with "
            "a file that failed",
            file=sys.stderr,
        )
    write_scores(
        sys.stdout if args.out is None else args.out, kept, {"score": score_pairs(embeddings, kept)}
    )
    if args.out is not None:
        print(f"{len(kept)} pair scores written to {args.out}", file=sys.stderr)
    return 1 if failed else 0
