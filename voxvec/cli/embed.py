"""Embed audio files and write the embeddings to a file.

Inputs are audio files, folders (searched recursively for .wav .flac .ogg .opus .mp3 files) and
manifest CSVs (path,speaker rows, paths relative to the CSV). The output format follows the
extension of --out:

  .npy   the (N, D) float32 matrix, rows in input order (failed files are left out)
  .npz   arrays "embeddings" (N, D), "ids" (N,) file paths, and "speakers" (N,) when any
         input is a manifest
  .csv   one row per file: id[,speaker],e0,...,e{D-1}

Files that cannot be embedded are reported on stderr with the reason and skipped; the rest are
written. The exit code is 1 when any file failed, 0 otherwise.

examples:
  voxvec embed recordings/ --out emb.npz
  voxvec embed a.wav b.flac --model convgru-rf5 --out emb.csv
  voxvec embed data/manifest.csv --out emb.npz --vad auto --batch-size 32
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from voxvec.inference import Embedder

HELP = "embed audio files, folders or manifests into a .npy / .npz / .csv file"

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")
OUTPUT_FORMATS = (".npy", ".npz", ".csv")

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec embed``."""
    parser.add_argument(
        "inputs", nargs="+", metavar="PATH", help="audio files, folders or manifest CSVs"
    )
    parser.add_argument("--out", "-o", required=True, type=Path, help="output .npy, .npz or .csv")
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16, help="inputs per forward pass (16)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model and Embedder options shared by ``embed`` and ``similarity``."""
    parser.add_argument(
        "--model",
        "-m",
        default=None,
        help="pretrained name or bundle path (default: the default model)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)"
    )
    parser.add_argument(
        "--vad",
        choices=("none", "energy", "silero", "auto"),
        default="none",
        help="trim non-speech first (auto: silero-vad if installed, else energy); default none",
    )
    parser.add_argument(
        "--window-s",
        type=float,
        default=20.0,
        help="embed longer inputs in windows of this many seconds (20)",
    )
    parser.add_argument(
        "--hop-s", type=float, default=None, help="seconds between windows (default: window-s)"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="model arithmetic: auto (bfloat16 where the hardware has it natively, else "
        "float32), float32, bfloat16",
    )
    parser.add_argument(
        "--min-speech-s",
        type=float,
        default=0.5,
        help="reject inputs with less speech than this (0.5)",
    )


def load_embedder(args: argparse.Namespace) -> Embedder:
    """The Embedder the model options describe."""
    import voxvec

    return voxvec.load(
        args.model,
        args.device,
        window_s=args.window_s,
        hop_s=args.hop_s,
        vad=False if args.vad == "none" else args.vad,
        min_speech_s=args.min_speech_s,
        precision=args.precision,
    )


def collect_inputs(inputs: list[str]) -> tuple[list[Path], list[str] | None]:
    """Expand folders and manifests into a file list.

    Returns:
        ``(paths, speakers)``: speakers is None unless a manifest was given (then files not from
        a manifest get an empty speaker).

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: a folder holds no audio files, or a manifest is malformed.
    """
    from voxvec.data.manifest import read_manifest

    paths: list[Path] = []
    speakers: list[str] = []
    any_manifest = False
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
            )
            if not found:
                raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {path}")
            paths.extend(found)
            speakers.extend([""] * len(found))
        elif path.suffix.lower() == ".csv":
            items = read_manifest(path)
            any_manifest = True
            paths.extend(item.path for item in items)
            speakers.extend(item.speaker for item in items)
        else:
            paths.append(path)
            speakers.append("")
    return paths, (speakers if any_manifest else None)


def write_embeddings(
    out: Path, embeddings: np.ndarray, ids: list[str], speakers: list[str] | None
) -> None:
    """Write embeddings in the format of ``out``'s extension (see the module docstring)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".npy":
        np.save(out, embeddings)
    elif suffix == ".npz":
        arrays: dict[str, Any] = {"embeddings": embeddings, "ids": np.array(ids, dtype=str)}
        if speakers is not None:
            arrays["speakers"] = np.array(speakers, dtype=str)
        np.savez(out, **arrays)
    else:
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            header = ["id"] + (["speaker"] if speakers is not None else [])
            writer.writerow(header + [f"e{i}" for i in range(embeddings.shape[1])])
            for k, (id_, row) in enumerate(zip(ids, embeddings, strict=True)):
                prefix = [id_] + ([speakers[k]] if speakers is not None else [])
                writer.writerow(prefix + [f"{v:.7g}" for v in row])


def run(args: argparse.Namespace) -> int:
    """Embed every input, report failures, write the rest; 1 when any failed."""
    from tqdm import tqdm

    if args.out.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"--out must end in one of {OUTPUT_FORMATS}, got {args.out}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths, speakers = collect_inputs(args.inputs)
    embedder = load_embedder(args)
    logger.info("embedding %d files with %r", len(paths), embedder)

    rows: list[np.ndarray] = []
    ids: list[str] = []
    kept_speakers: list[str] = []
    failed = 0
    show = not args.quiet and sys.stderr.isatty()
    with tqdm(total=len(paths), unit="file", disable=not show) as bar:
        for result in embedder.iter_embed(paths, batch_size=args.batch_size):
            bar.update(1)
            if result.error is not None:
                failed += 1
                message = str(result.error)
                if result.source not in message:
                    message = f"{result.source}: {message}"
                tqdm.write(message, file=sys.stderr)
                continue
            assert result.embedding is not None
            rows.append(result.embedding)
            ids.append(result.source)
            if speakers is not None:
                kept_speakers.append(speakers[result.index])
    if rows:
        write_embeddings(
            args.out, np.stack(rows), ids, kept_speakers if speakers is not None else None
        )
    summary = f"embedded {len(rows)} files, {failed} failed"
    print(summary + (f" -> {args.out}" if rows else " (nothing written)"), file=sys.stderr)
    return 1 if failed else 0
