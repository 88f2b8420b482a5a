"""The model options shared by ``voxvec embed``, ``similarity`` and ``eval``, and the Embedder
they describe.

The choices come from the library's own definitions (precisions from :mod:`voxvec.runtime`, VAD
methods from :mod:`voxvec.audio.vad`) and keep their spelling there (device ``auto``, VAD
``off``); :func:`load_embedder` is the one place that turns the options into an
:class:`~voxvec.inference.Embedder`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxvec.inference import Embedder


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the model and Embedder options (--model, --device, --vad, windows, precision)."""
    from voxvec.audio.vad import METHODS as VAD_METHODS
    from voxvec.runtime import PRECISIONS

    parser.add_argument(
        "--model",
        "-m",
        default=None,
        help="pretrained name or bundle path (default: the default model)",
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


def load_embedder(args: argparse.Namespace) -> Embedder:
    """The Embedder the model options in ``args`` describe."""
    import voxvec

    return voxvec.load(
        args.model,
        args.device,
        window_s=args.window_s,
        hop_s=args.hop_s,
        vad=args.vad,
        min_speech_s=args.min_speech_s,
        precision=args.precision,
    )
