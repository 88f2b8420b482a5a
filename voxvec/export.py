"""Export a trained model to a file that other programs load.

:data:`EXPORT_FORMATS` names the export formats and the file extension of each;
:func:`export_format` picks the format from the output's extension. Today one format is written:
``"safetensors"``, the inference bundle :func:`voxvec.load` reads (weights, architecture, config
and model card in one file). ``"onnx"`` and ``"torchscript"`` are named so that callers and the
command line already spell them; exporting to them raises :class:`NotImplementedError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

EXPORT_FORMATS: dict[str, str] = {
    "safetensors": ".safetensors",
    "onnx": ".onnx",
    "torchscript": ".ts",
}
"""Export format -> the extension of its files."""

_IMPLEMENTED = ("safetensors",)


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


def export(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    format: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export a training checkpoint (or a run directory's latest one) to ``out``.

    Args:
        source: a ``ckpt_*.pt`` file written by ``voxvec train``, or a run directory (its
            checkpoint with the most steps is exported).
        out: the file to write.
        format: one of :data:`EXPORT_FORMATS`; None infers it from ``out``'s extension.
        metadata: extra JSON-serialisable entries for the model card.

    Returns:
        The file written.

    Raises:
        FileNotFoundError: ``source`` does not exist, or a run directory holds no checkpoint.
        ValueError: see :func:`export_format`, and
            :func:`voxvec.train.checkpoint.export_checkpoint`.
        NotImplementedError: a format that is named but not written yet (ONNX, TorchScript).
    """
    from voxvec.train.checkpoint import export_checkpoint, latest_checkpoint

    chosen = export_format(out, format)
    if chosen not in _IMPLEMENTED:
        raise NotImplementedError(
            f"{chosen} export is not available yet; export a safetensors bundle "
            f"({EXPORT_FORMATS['safetensors']}) instead"
        )
    checkpoint = Path(source)
    if checkpoint.is_dir():
        found = latest_checkpoint(checkpoint)
        if found is None:
            raise FileNotFoundError(f"no checkpoint (ckpt_*.pt) in {checkpoint}")
        checkpoint = found
    return export_checkpoint(checkpoint, out, metadata=metadata)
