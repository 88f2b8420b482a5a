"""Decide whether two sides are the same speaker.

Each side is an audio file, a folder (its audio files, recursively) or several files joined with
commas; the recordings of a side are averaged into one speaker embedding. Prints the cosine score,
the calibrated log-likelihood ratio (with --calibration), the decision and the threshold used with
where it came from: a number (--threshold 0.5), an operating point of the calibration
(--calibration cal.json, default its eer point) or of the model card (eer, far1 for the default
model). `voxvec similarity` prints only the raw score; this command decides.

examples:
  voxvec verify alice1.wav bob.wav
  voxvec verify alice1.wav,alice2.wav alice3.wav --threshold far1
  voxvec verify enrolled/alice/ unknown.wav --calibration calibration.json --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from voxvec.cli.model_options import add_model_arguments, load_embedder

HELP = "same speaker or not: score, decision and its threshold (several files per side)"


def threshold_value(text: str) -> float | str:
    """A --threshold value: a number (a cosine score), else the name of an operating point."""
    try:
        return float(text)
    except ValueError:
        return text


def add_decision_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """Attach --threshold and --calibration (shared by ``verify`` and ``identify``).

    Args:
        parser: the command's parser.
        default: what happens without --threshold, for the help text.
    """
    parser.add_argument(
        "--threshold",
        type=threshold_value,
        default=None,
        help="decision threshold: a cosine score, or an operating point (eer, far1, far0.1 ...) "
        f"of the calibration, else of the model card; default: {default}",
    )
    parser.add_argument(
        "--calibration",
        metavar="FILE",
        help="calibration of this model from `voxvec calibrate` (llrs and operating points)",
    )


def side_files(text: str) -> list[Path]:
    """The recordings of one side: a file, a folder's audio files, or comma-separated files.

    Raises:
        ValueError: a folder without audio files.
    """
    from voxvec.audio.io import AUDIO_EXTENSIONS, find_audio_files

    path = Path(text)
    if path.is_dir():
        found = find_audio_files(path)
        if not found:
            raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {path}")
        return found
    if path.exists() or "," not in text:
        return [path]
    return [Path(part) for part in text.split(",") if part]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec verify``."""
    parser.add_argument("a", help="first side: a file, a folder, or files joined with commas")
    parser.add_argument("b", help="second side, likewise")
    add_model_arguments(parser)
    add_decision_arguments(parser, "the eer point")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Print the score, llr and decision (or a JSON object)."""
    from voxvec.apps.calibration import Calibration
    from voxvec.apps.verify import verify

    a, b = side_files(args.a), side_files(args.b)
    calibration = Calibration.load(args.calibration) if args.calibration else None
    result = verify(load_embedder(args), a, b, threshold=args.threshold, calibration=calibration)
    if args.json:
        document = {"a": [str(p) for p in a], "b": [str(p) for p in b], **result.to_dict()}
        print(json.dumps(document))
        return 0
    print(f"score {result.score:.4f}")
    if result.llr is not None:
        favours = "the same speaker" if result.llr > 0 else "different speakers"
        print(f"llr {result.llr:.3f} (calibrated log-likelihood ratio: favours {favours})")
    if result.same is None:
        print("no decision: the model card has no threshold (give --threshold or --calibration)")
        return 0
    decision = "same speaker" if result.same else "different speakers"
    print(f"decision {decision} (threshold {result.threshold:.4f}: {result.threshold_source})")
    return 0
