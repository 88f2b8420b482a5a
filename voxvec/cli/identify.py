"""Who is speaking? Open-set identification of audio files against a speaker store.

A file gets a name only if its best score clears the threshold and beats the runner-up by
--margin; otherwise it is unknown, and the best --top-k candidates are still shown. The
threshold is --threshold (a cosine score, or an operating point of the calibration or model
card), else, with --calibration, the one that keeps the share of strangers given a name at --far
with this many enrolled speakers, else the model card's far1 point. Inputs are files, folders and
path,speaker CSVs. With --json, one JSON object per input file on its own line: file, speaker
(null when unknown), score, decision, candidates ([{speaker, score}]); a file that fails gets
its error (exit code 1).

examples:
  voxvec identify call.wav --store speakers/
  voxvec identify calls/ --store speakers/ --calibration cal.json --far 0.01 --top-k 3 --json
"""

from __future__ import annotations

import argparse
import json
import sys

from voxvec.cli.enroll import add_store_argument, store_and_embedder
from voxvec.cli.model_options import add_model_arguments
from voxvec.cli.verify import add_decision_arguments

HELP = "open-set identification of files against a speaker store (name or unknown)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec identify``."""
    from voxvec.apps.index import INDEXES

    parser.add_argument("files", nargs="+", help="audio files, folders or path,speaker CSVs")
    add_store_argument(parser)
    parser.add_argument("--top-k", type=int, default=5, metavar="K", help="candidates shown (5)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file per line")
    add_decision_arguments(parser, "see above")
    parser.add_argument(
        "--far",
        type=float,
        default=0.01,
        metavar="RATE",
        help="with --calibration: share of strangers given a name (default 0.01)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.05,
        metavar="M",
        help="least lead over the runner-up, in cosine (default 0.05)",
    )
    parser.add_argument(
        "--index",
        choices=INDEXES,
        default="exact",
        help="search: exact (default) or faiss (approximate, pip install 'voxvec[index]')",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--batch-size", type=int, default=16, metavar="N", help="inputs per forward pass (16)"
    )


def run(args: argparse.Namespace) -> int:
    """Identify each file; print a line (or a JSON object) per file."""
    from voxvec.apps.calibration import Calibration, identification_threshold
    from voxvec.apps.identify import identify_files
    from voxvec.embedding_files import collect_inputs

    files = collect_inputs(args.files).paths
    store, embedder = store_and_embedder(args, create=False)
    calibration = Calibration.load(args.calibration) if args.calibration else None
    threshold = identification_threshold(
        args.threshold, embedder, len(store), calibration=calibration, open_set_far=args.far
    )
    if threshold is None:
        raise ValueError(
            "no threshold: the model card has no far1 point; give --threshold or --calibration"
        )
    print(
        f"threshold {threshold.value:.4f} ({threshold.source}); margin {args.margin:g}; "
        f"{len(store)} speaker(s) in {store.path}",
        file=sys.stderr,
    )
    failed = 0
    for result in identify_files(
        store,
        embedder,
        files,
        threshold=threshold.value,
        margin=args.margin,
        top_k=args.top_k,
        batch_size=args.batch_size,
    ):
        failed += result.match is None
        if args.json:
            print(json.dumps({**result.to_dict(), "threshold": threshold.value}), flush=True)
        elif result.match is None:
            print(f"{result.file}\terror\t{result.error}")
        else:
            match = result.match
            shown = ", ".join(f"{c.speaker} {c.score:.3f}" for c in match.candidates)
            name = "unknown" if match.speaker is None else match.speaker
            print(f"{result.file}\t{name}\t{match.score:.4f}\t{match.decision}\t[{shown}]")
    return 1 if failed else 0
