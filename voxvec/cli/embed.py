"""Embed audio files and write the embeddings to a file.

Inputs are audio files, folders (searched recursively for audio files) and manifest CSVs
(path,speaker rows, paths relative to the CSV). The output format follows the extension of --out:

  .npy   the (N, D) float32 matrix, rows in input order (failed files are left out)
  .npz   arrays "embeddings" (N, D), "ids" (N,) file paths, and "speakers" (N,) when any
         input is a manifest
  .csv   one row per file: id[,speaker],e0,...,e{D-1}

Files that cannot be embedded are reported on stderr with the reason and skipped, and listed in
OUT.failed.csv (index,path,reason); the rest are written. The exit code is 1 when any file
failed, 0 otherwise. voxvec.embedding_files.read_embeddings reads the output back.

Nothing done is lost: each finished chunk of inputs (--chunk-size) goes to a journal,
OUT.partial, and a killed run continues where it stopped with --resume (the output is the same
as an uninterrupted run's).
OUT itself is written only at the end, atomically, so it is never half-written; OUT.lock keeps
a second run from writing the same OUT at the same time (it is refused). When every input fails,
an earlier OUT is removed, so it is not taken for this run's result.

Under torchrun the inputs are shared out by chunks: each process embeds every WORLD_SIZE-th
chunk into its own part, OUT.parts/rank-RRRRR<ext> (journaled, --resume works per process),
on cuda:LOCAL_RANK when CUDA is available (else the CPU, its cores shared by the processes of
each machine); when all are done rank 0 merges the parts into OUT, the file a single process
writes, with one OUT.failed.csv. OUT's folder must be one that every machine sees. A process
that fails leaves the other parts in place and the merge names the missing one.

examples:
  voxvec embed recordings/ --out emb.npz
  voxvec embed a.wav b.flac --model convgru-rf5 --out emb.csv
  voxvec embed data/manifest.csv --out emb.npz --vad auto --batch-size 32
  torchrun --nproc-per-node 4 -m voxvec embed big.csv --out /shared/emb.npz
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import timedelta
from pathlib import Path

from voxvec.cli.model_options import add_model_arguments, load_embedder

HELP = "embed audio files, folders or manifests into a .npy / .npz / .csv file"

logger = logging.getLogger(__name__)

PARTS_TIMEOUT = timedelta(hours=24)
"""How long, under torchrun, the processes that finished their parts wait for the slowest one
(a process that dies ends the job at once: torchrun stops the others)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec embed``."""
    from voxvec.embedding_files import CHUNK_SIZE, OUTPUT_FORMATS

    parser.add_argument(
        "inputs", nargs="+", metavar="PATH", help="audio files, folders or manifest CSVs"
    )
    parser.add_argument(
        "--out", "-o", required=True, type=Path, help=f"output file: {', '.join(OUTPUT_FORMATS)}"
    )
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="inputs per forward pass (16)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from OUT.partial (the same inputs and options; "
        "under torchrun, each process from its part in OUT.parts/)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=CHUNK_SIZE,
        help=f"inputs embedded, then saved to OUT.partial, together ({CHUNK_SIZE})",
    )


def run(args: argparse.Namespace) -> int:
    """Embed every input, report failures, write the rest; 1 when any failed.

    Under torchrun every process runs this; each embeds its share, rank 0 merges and prints.
    """
    from tqdm import tqdm

    from voxvec.distributed import (
        all_gather_objects,
        cleanup,
        cpu_threads_per_process,
        init_distributed,
    )
    from voxvec.embedding_files import (
        FailedInput,
        check_output,
        collect_inputs,
        embed_sharded,
        embed_to_file,
    )
    from voxvec.eval.verify import failure_reasons

    inputs = collect_inputs(args.inputs)
    check_output(args.out, inputs)  # before the model loads
    info = init_distributed(args.device, backend="gloo", timeout=PARTS_TIMEOUT)
    try:
        if info.distributed:
            args.device = str(info.device)
            if info.device.type == "cpu" and args.threads == "auto":
                args.threads = cpu_threads_per_process(info)
        embedder = load_embedder(args)
        where = f"rank {info.rank}/{info.world_size}: " if info.distributed else ""
        logger.info("%sembedding %d files with %r", where, len(inputs.paths), embedder)

        def report(failure: FailedInput) -> None:
            tqdm.write(failure.message, file=sys.stderr)

        options = {
            "batch_size": args.batch_size,
            "progress": not args.quiet and sys.stderr.isatty() and info.is_main,
            "on_failure": report,
            "resume": args.resume,
            "chunk_size": args.chunk_size,
            "job": (
                f"model={args.model} window_s={args.window_s} hop_s={args.hop_s} vad={args.vad} "
                f"min_speech_s={args.min_speech_s} precision={embedder.precision}"
            ),
        }
        if info.distributed:
            result = embed_sharded(
                embedder,
                inputs,
                args.out,
                rank=info.rank,
                world_size=info.world_size,
                gather=lambda obj: all_gather_objects(obj, info),
                **options,
            )
        else:
            result = embed_to_file(embedder, inputs, args.out, **options)
    finally:
        cleanup(info)
    if info.is_main:
        summary = f"embedded {result.n_embedded} files, {len(result.failures)} failed"
        if result.failures:
            by_reason = failure_reasons({f.source: f.reason for f in result.failures})
            summary += f" ({'; '.join(f'{n} {reason}' for reason, n in by_reason.items())})"
        written = f" -> {result.out}" if result.out is not None else " (nothing written)"
        resumed = f" ({result.n_resumed} from the interrupted run)" if result.n_resumed else ""
        failed = f"; failures listed in {result.report}" if result.report is not None else ""
        print(summary + resumed + written + failed, file=sys.stderr)
    return 1 if result.failures else 0
