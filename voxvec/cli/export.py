"""Export a model for inference.

Strips the optimiser, loss head and RNG state from a ckpt_*.pt written by `voxvec train`; given
a run directory, its latest checkpoint is exported. The format follows --format or, by default,
the extension of --out:

  safetensors (.safetensors)   one file with the weights, the architecture, its config and the
                               model card (training steps, data summary, --meta entries); what
                               voxvec.load and --model read
  onnx (.onnx), torchscript (.ts)
                               the whole model, front-end included: wav (batch, samples) float32
                               and lengths (batch,) int64 in, embeddings (batch, D) out, any
                               batch size and length; checked against PyTorch before it is kept.
                               Also from a pretrained name or a model file (ONNX needs
                               pip install 'voxvec[onnx]')

examples:
  voxvec export runs/convgru/ckpt_00700000.pt --out convgru.safetensors
  voxvec export runs/convgru --out model.safetensors --meta name=my-model --meta licence=CC-BY-4.0
  python -c "import voxvec; print(voxvec.load('model.safetensors'))"
  voxvec export voxvec-default --out voxvec-default.onnx
  voxvec export voxvec-default --out voxvec-default-int8.onnx --quantize int8
  python -c "import voxvec; print(voxvec.load('voxvec-default.onnx'))"   # onnxruntime, no torch
  voxvec export runs/convgru --out convgru.ts
"""

from __future__ import annotations

import argparse

from voxvec.cli.model_options import add_threads_argument, apply_threads

HELP = "export a checkpoint, run or model to a .safetensors bundle, ONNX or TorchScript"


def metadata_entry(text: str) -> tuple[str, str]:
    """A --meta value: ``KEY=VALUE`` as ``(key, value)``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the options of ``voxvec export``."""
    from voxvec.export import EXPORT_FORMATS, QUANTIZATIONS

    parser.add_argument(
        "source",
        metavar="RUN_OR_CHECKPOINT",
        help="ckpt_*.pt file or run directory; for onnx and torchscript also a pretrained name "
        "or a model file",
    )
    parser.add_argument("--out", "-o", required=True, help="the file to write")
    parser.add_argument(
        "--format",
        choices=tuple(EXPORT_FORMATS),
        default=None,
        help="export format (default: from the extension of --out)",
    )
    parser.add_argument(
        "--meta",
        action="append",
        type=metadata_entry,
        default=[],
        metavar="KEY=VALUE",
        help="extra entry for the model card (repeatable)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default=None,
        help="onnx only: onnxruntime's dynamic quantisation (int8 weights, about a quarter of "
        "the size; its EER and speed in BENCHMARKS.md)",
    )
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Export and print the path written."""
    import importlib.util

    from voxvec.export import export, export_format

    if export_format(args.out, args.format) == "onnx":
        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise ImportError(f"ONNX export needs {' and '.join(missing)}: pip install '.[onnx]'")
    apply_threads(args)
    print(
        export(
            args.source,
            args.out,
            format=args.format,
            metadata=dict(args.meta),
            quantize=args.quantize,
        )
    )
    return 0
