"""Export a trained model to a file that other programs load.

:data:`EXPORT_FORMATS` names the export formats and the file extension of each;
:func:`export_format` picks the format from the output's extension:

- ``"safetensors"``: the inference bundle :func:`voxvec.load` reads (weights, architecture,
  config and model card in one file), from a training checkpoint or run;
- ``"onnx"`` and ``"torchscript"``: the whole model, front-end included, as a graph from
  waveforms and lengths to embeddings with dynamic batch and length axes (see
  :mod:`voxvec.export_graph`), from a checkpoint, a run, a pretrained name or a model file.
  An ONNX export may be quantised (:data:`QUANTIZATIONS`): ``"int8"`` is onnxruntime's dynamic
  quantisation (int8 weights, activations quantised on the fly; about a quarter of the size).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxvec.models.base import SpeakerEncoder

EXPORT_FORMATS: dict[str, str] = {
    "safetensors": ".safetensors",
    "onnx": ".onnx",
    "torchscript": ".ts",
}
"""Export format -> the extension of its files."""

QUANTIZATIONS = ("int8",)
"""What ``quantize=`` (``voxvec export --quantize``) accepts, for ONNX exports."""


def export_format(out: str | os.PathLike[str], format: str | None = None) -> str:
    """The export format for ``out``: ``format`` when given, else the one of its extension.

    Args:
        out: the file to write.
        format: one of :data:`EXPORT_FORMATS`, or None to infer it from ``out``.

    Returns:
        A key of :data:`EXPORT_FORMATS`.

    Raises:
        ValueError: ``format`` is unknown, or does not match ``out``'s extension, or (with no
            ``format``) the extension is none of the formats'.
    """
    suffix = Path(out).suffix.lower()
    if format is None:
        by_suffix = {ext: name for name, ext in EXPORT_FORMATS.items()}
        if suffix not in by_suffix:
            raise ValueError(
                f"cannot tell the export format of {out}: name it with one of "
                f"{sorted(by_suffix)} or give the format ({', '.join(EXPORT_FORMATS)})"
            )
        return by_suffix[suffix]
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; known: {', '.join(EXPORT_FORMATS)}")
    if suffix != EXPORT_FORMATS[format]:
        raise ValueError(
            f"{format} files end in {EXPORT_FORMATS[format]}, got {out}; rename the output"
        )
    return format


def _latest(source: str | os.PathLike[str]) -> Path:
    """``source`` itself, or a run directory's checkpoint with the most steps."""
    from voxvec.train.checkpoint import latest_checkpoint

    checkpoint = Path(source)
    if checkpoint.is_dir():
        found = latest_checkpoint(checkpoint)
        if found is None:
            raise FileNotFoundError(f"no checkpoint (ckpt_*.pt) in {checkpoint}")
        checkpoint = found
    return checkpoint


def _load(source: str | os.PathLike[str]) -> tuple[SpeakerEncoder, dict[str, Any]]:
    """The model and card of a run, a ``ckpt_*.pt``, a pretrained name or a model file."""
    from voxvec.weights import load_model

    path = Path(source)
    if not (path.is_dir() or (path.name.startswith("ckpt_") and path.suffix == ".pt")):
        return load_model(source)
    from voxvec.models import create_model
    from voxvec.train.checkpoint import load_checkpoint

    checkpoint = _latest(path)
    state = load_checkpoint(checkpoint)
    model = create_model(state["arch"], state["model_config"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"weights in {checkpoint} do not fit {state['arch']}: {err}") from err
    return model, {"steps": int(state["step"]), "source_checkpoint": checkpoint.name}


def export(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    format: str | None = None,
    metadata: dict[str, Any] | None = None,
    quantize: str | None = None,
) -> Path:
    """Export a model to ``out``.

    Args:
        source: a ``ckpt_*.pt`` file written by ``voxvec train``, or a run directory (its
            checkpoint with the most steps is exported); for ``onnx`` and ``torchscript`` also
            a pretrained name, a ``.safetensors`` bundle or an original release file (anything
            :func:`voxvec.weights.load_model` reads).
        out: the file to write.
        format: one of :data:`EXPORT_FORMATS`; None infers it from ``out``'s extension.
        metadata: extra JSON-serialisable entries for the model card.
        quantize: None, or one of :data:`QUANTIZATIONS` for an ONNX export: the float32 graph
            is checked against PyTorch as always, then quantised (the card records
            ``"quantization"``).

    Returns:
        The file written.

    Raises:
        FileNotFoundError: ``source`` does not exist, or a run directory holds no checkpoint.
        KeyError: an unknown pretrained name.
        ValueError: an unknown ``quantize``, or one for another format than ONNX; see
            :func:`export_format`, :func:`voxvec.weights.load_model` and
            :func:`voxvec.train.checkpoint.export_checkpoint`.
        ImportError: ONNX export without the ``onnx`` extra.
        voxvec.export_graph.ExportError: the model cannot be exported to the graph format
            (the message says why).
    """
    chosen = export_format(out, format)
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantize!r}; known: {', '.join(QUANTIZATIONS)}")
    if quantize is not None and chosen != "onnx":
        raise ValueError(f"quantization is for onnx exports (onnxruntime's), not {chosen}")
    if chosen == "safetensors":
        from voxvec.train.checkpoint import export_checkpoint

        return export_checkpoint(_latest(source), out, metadata=metadata)
    from voxvec.export_graph import export_graph, quantize_int8

    model, card = _load(source)
    card = {**card, **(metadata or {})}
    out = Path(out)
    if quantize is None:
        export_graph(model, out, chosen, card)
        return out
    float32 = out.with_name(f".{out.stem}.float32{out.suffix}")
    try:
        export_graph(model, float32, chosen, {**card, "quantization": quantize})
        quantize_int8(float32, out)
    finally:
        float32.unlink(missing_ok=True)
    return out
