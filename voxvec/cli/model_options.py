"""The model options shared by the commands that embed, and the Embedder they describe.

The choices come from the library's own definitions (precisions from :mod:`voxvec.runtime`, VAD
methods from :mod:`voxvec.audio.vad`) and keep their spelling there (device ``auto``, VAD
``off``); :func:`load_embedder` is the one place that turns the options into an
:class:`~voxvec.inference.Embedder`, and it logs what the ``auto`` choices resolved to.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxvec.inference import Embedder

logger = logging.getLogger(__name__)


def threads_value(text: str) -> int | str:
    """A --threads value: ``auto`` or a positive integer."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected auto or a positive integer, got {text!r}")
    return int(text)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Attach --threads (every command that computes has it)."""
    parser.add_argument(
        "--threads",
        type=threads_value,
        default="auto",
        metavar="N",
        help="torch CPU threads (default auto: $OMP_NUM_THREADS when set, else the cores not "
        "already busy by the 1-minute load average, 1 to 4; a busy machine wants 1)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Set the process's torch threads from ``args.threads`` (before any model runs)."""
    from voxvec.runtime import set_num_threads

    set_num_threads(args.threads)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the model and Embedder options (--model, --device, --vad, windows, precision,
    --threads)."""
    from voxvec.audio.vad import METHODS as VAD_METHODS
    from voxvec.runtime import PRECISIONS

    parser.add_argument(
        "--model",
        "-m",
        default=None,
        help="pretrained name, bundle path or exported .onnx file (default: the default model)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:1 ... or auto (cuda if available, else cpu; default)",
    )
    parser.add_argument(
        "--vad",
        choices=VAD_METHODS,
        default="off",
        help="trim non-speech first (auto: silero-vad if installed, else energy); default off",
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
        choices=PRECISIONS,
        default="auto",
        help="model arithmetic (default auto: bfloat16 where the hardware computes it "
        "natively, else float32)",
    )
    parser.add_argument(
        "--min-speech-s",
        type=float,
        default=0.5,
        help="reject inputs with less speech than this (0.5)",
    )
    parser.add_argument(
        "--level-db",
        type=float,
        default=None,
        help="scale every input's speech to this active level in dBFS first, e.g. -20, for "
        "recordings whose levels differ (default: each at its own level)",
    )
    add_threads_argument(parser)


def load_embedder(args: argparse.Namespace) -> Embedder:
    """The Embedder the model options in ``args`` describe, after its threads are set.

    A missing extra (``--vad silero`` without silero-vad) fails here, before any work; one INFO
    line says which model runs and what the ``auto`` options chose (:func:`model_choices`).
    """
    import voxvec
    from voxvec.audio.vad import resolve_method

    resolve_method(args.vad)
    embedder = voxvec.load(
        args.model,
        args.device,
        num_threads=args.threads,  # torch's threads, or onnxruntime's for an .onnx model
        window_s=args.window_s,
        hop_s=args.hop_s,
        vad=args.vad,
        min_speech_s=args.min_speech_s,
        precision=args.precision,
        level_db=args.level_db,
    )
    logger.info("%s", describe_choices(model_choices(embedder, args)))
    return embedder


def model_choices(embedder: Embedder, args: argparse.Namespace) -> dict[str, Any]:
    """What runs, for logs and reports: the model's name, device, precision, VAD, threads.

    The ``auto`` options appear as what they resolved to, followed by ``(auto)``.
    """
    from voxvec.audio.vad import resolve_method
    from voxvec.onnx_embedder import OnnxEmbedder
    from voxvec.weights.pretrained import DEFAULT_MODEL

    def chosen(value: object, option: object) -> str:
        return f"{value} (auto)" if option == "auto" else str(value)

    if isinstance(embedder, OnnxEmbedder):
        threads: object = embedder.num_threads or "onnxruntime's default"
    else:
        import torch

        threads = torch.get_num_threads()
    return {
        "model": DEFAULT_MODEL if args.model is None else str(args.model),
        "device": chosen(embedder.device, args.device),
        "precision": chosen(embedder.precision, args.precision),
        "vad": chosen(resolve_method(args.vad), args.vad),
        "threads": chosen(threads, args.threads),
    }


def describe_choices(choices: dict[str, Any]) -> str:
    """:func:`model_choices` as one log line."""
    return ", ".join(f"{key} {value}" for key, value in choices.items())
