"""Embed audio files and write the embeddings to a file.

Inputs are audio files, folders (searched recursively for audio files) and manifest CSVs
(path,speaker rows, paths relative to the CSV). The output format follows the extension of --out:

  .npy   the (N, D) float32 matrix, rows in input order (failed files are left out)
  .npz   arrays "embeddings" (N, D), "ids" (N,) file paths, and "speakers" (N,) when any
         input is a manifest
  .csv   one row per file: id[,speaker],e0,...,e{D-1}

Files that cannot be embedded are reported on stderr with the reason and skipped; the rest are
written (atomically: an interrupted run leaves no partial file). The exit code is 1 when any file
failed, 0 otherwise. voxvec.embedding_files.read_embeddings reads the output back.

examples:
  voxvec embed recordings/ --out emb.npz
  voxvec embed a.wav b.flac --model convgru-rf5 --out emb.csv
  voxvec embed data/manifest.csv --out emb.npz --vad auto --batch-size 32
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from voxvec.cli.model_options import add_model_arguments, load_embedder

HELP = "embed audio files, folders or manifests into a .npy / .npz / .csv file"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec embed``."""
    from voxvec.embedding_files import OUTPUT_FORMATS

    parser.add_argument(
        "inputs", nargs="+", metavar="PATH", help="audio files, folders or manifest CSVs"
    )
    parser.add_argument(
        "--out", "-o", required=True, type=Path, help=f"output file: {', '.join(OUTPUT_FORMATS)}"
    )
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="inputs per forward pass (16)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Embed every input, report failures, write the rest; 1 when any failed."""
    from tqdm import tqdm

    from voxvec.embedding_files import FailedInput, check_output, collect_inputs, embed_to_file

    inputs = collect_inputs(args.inputs)
    check_output(args.out, inputs)  # before the model loads
    embedder = load_embedder(args)
    logger.info("embedding %d files with %r", len(inputs.paths), embedder)

    def report(failure: FailedInput) -> None:
        tqdm.write(failure.message, file=sys.stderr)

    result = embed_to_file(
        embedder,
        inputs,
        args.out,
        batch_size=args.batch_size,
        progress=not args.quiet and sys.stderr.isatty(),
        on_failure=report,
    )
    summary = f"embedded {result.n_embedded} files, {len(result.failures)} failed"
    written = f" -> {result.out}" if result.out is not None else " (nothing written)"
    print(summary + written, file=sys.stderr)
    return 1 if result.failures else 0
