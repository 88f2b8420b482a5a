"""ONNX and TorchScript export of a whole speaker encoder, front-end included.

The model is traced (``torch.jit.trace``; the ONNX file through PyTorch's TorchScript-based
exporter, opset :data:`ONNX_OPSET`) on a right-padded example batch, so the graph keeps the
masked path every model takes for padded batches, which also serves unpadded ones. Both graphs
take ``wav`` ``(batch, samples)`` float32 and ``lengths`` ``(batch,)`` int64 samples and return
``embeddings`` ``(batch, D)``, with the batch and sample axes dynamic. While tracing, the
front-ends use the ops of :mod:`voxvec.audio.traceable` and the input's value checks are skipped
(the graph does not check its input).

Tracing freezes any control flow that depends on the example's sizes or values, so every export
is checked before it is kept: the written file, run on batches of other sizes (padded and not),
must give PyTorch's embeddings within :data:`TOLERANCE`; otherwise :class:`ExportError` says by
how much it differs and the file is removed. The model card travels with the graph: as the ONNX
metadata entry ``voxvec`` and as the TorchScript extra file ``voxvec.json`` (JSON both), with
the ``arch``, ``sample_rate``, ``embed_dim`` and ``min_samples`` of the model added, so that
:class:`voxvec.onnx_embedder.OnnxEmbedder` runs the file with nothing else.

Every registered architecture exports to both formats with its default config. One limit is
PyTorch's: its ONNX exporter fails on a single-layer GRU fed packed sequences (``gru`` or
``convgru`` with ``n_layers=1``), refused with that reason; TorchScript takes it.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from voxvec.models.base import SpeakerEncoder
from voxvec.onnx_embedder import CARD_KEY

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
"""The ONNX opset written (onnxruntime 1.14 and later run it)."""

TOLERANCE = 1e-4
"""Largest difference allowed between an exported graph's embedding and PyTorch's, per value."""

_INPUTS = ("wav", "lengths")
_OUTPUTS = ("embeddings",)
_DYNAMIC_AXES = {
    "wav": {0: "batch", 1: "samples"},
    "lengths": {0: "batch"},
    "embeddings": {0: "batch"},
}

Batch = tuple[Tensor, Tensor]
Runner = Callable[[Tensor, Tensor], np.ndarray]


class ExportError(RuntimeError):
    """A model that cannot be written to an export format; the message says why."""


def _batch(model: SpeakerEncoder, lengths: list[int], seed: int) -> Batch:
    """Noise waveforms ``(len(lengths), max(lengths))``, zero past each item's length."""
    generator = torch.Generator().manual_seed(seed)
    wav = torch.randn(len(lengths), max(lengths), generator=generator) * 0.1
    n = torch.tensor(lengths, dtype=torch.long)
    return wav * (torch.arange(wav.shape[1])[None] < n[:, None]), n


def example_batch(model: SpeakerEncoder) -> Batch:
    """The batch a model is traced on: 2 items of about 2 s, the second one padded."""
    total = max(2 * model.sample_rate, 4 * model.min_samples)
    return _batch(model, [total, total * 2 // 3], seed=0)


def check_batches(model: SpeakerEncoder) -> list[Batch]:
    """Batches an export is checked on: sizes unlike :func:`example_batch`'s, padded or not."""
    total = max(3 * model.sample_rate, 6 * model.min_samples) + 17
    shortest = max(model.min_samples, total // 5)
    return [
        _batch(model, [total // 2 + 1, total, shortest], seed=1),
        _batch(model, [total // 3], seed=2),
    ]


def _trace(model: SpeakerEncoder) -> torch.jit.ScriptModule:
    """The model traced on :func:`example_batch` (in eval mode, without gradients)."""
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warns of every size or value turned into a Python number; the check of the
        # written graph on other batches (see the module docstring) is what decides.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(model, example_batch(model), check_trace=False)


def _vecdot(g: Any, x: Any, y: Any, dim: Any, out: Any = None) -> Any:
    """ONNX form of ``torch.linalg.vecdot`` of real tensors: ``sum(x * y, dim)``."""
    from torch.onnx import symbolic_helper

    axes = g.op("Constant", value_t=torch.tensor([symbolic_helper._get_const(dim, "i", "dim")]))
    return g.op("ReduceSum", g.op("Mul", x, y), axes, keepdims_i=0)


def _name(model: SpeakerEncoder) -> str:
    return f"{model.arch or type(model).__name__} model"


def _single_layer_rnn(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.RNNBase) and module.num_layers == 1


def _write_onnx(model: SpeakerEncoder, out: Path, card: dict[str, Any]) -> Runner:
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            f"ONNX export needs onnx and onnxruntime ({err}): pip install 'voxvec[onnx]'"
        ) from err
    single = [name for name, m in model.named_modules() if _single_layer_rnn(m)]
    if single:
        raise ExportError(
            f"the {_name(model)} cannot be exported to onnx: PyTorch's ONNX exporter fails on a "
            f"single-layer recurrent layer fed packed sequences, as {', '.join(single)} "
            "(num_layers=1) is (its peephole pass raises an index error); configs with 2 or "
            "more layers export, and TorchScript (.ts) exports this one"
        )
    torch.onnx.register_custom_op_symbolic("aten::linalg_vecdot", _vecdot, ONNX_OPSET)
    traced = _trace(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The exporter looks for the argument names of a plain module's forward; ours are given.
        warnings.filterwarnings("ignore", message="no signature found", category=UserWarning)
        # It warns that a GRU traced on a batch of 2 may fail on other batch sizes: the check
        # below runs batches of 3 and 1.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        torch.onnx.export(
            traced,
            example_batch(model),
            str(out),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=list(_INPUTS),
            output_names=list(_OUTPUTS),
            dynamic_axes=_DYNAMIC_AXES,
        )
    graph = onnx.load(str(out))
    graph.metadata_props.add(key=CARD_KEY, value=json.dumps(card, default=str))
    onnx.save(graph, str(out))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])

    def run(wav: Tensor, lengths: Tensor) -> np.ndarray:
        return session.run(None, {"wav": wav.numpy(), "lengths": lengths.numpy()})[0]

    return run


def _write_torchscript(model: SpeakerEncoder, out: Path, card: dict[str, Any]) -> Runner:
    torch.jit.save(
        _trace(model), str(out), _extra_files={f"{CARD_KEY}.json": json.dumps(card, default=str)}
    )
    loaded = torch.jit.load(str(out), map_location="cpu")

    def run(wav: Tensor, lengths: Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(wav, lengths).numpy()

    return run


_WRITERS = {"onnx": _write_onnx, "torchscript": _write_torchscript}
"""Graph format (a key of :data:`voxvec.export.EXPORT_FORMATS`) -> its writer."""


def export_graph(
    model: SpeakerEncoder,
    out: str | os.PathLike[str],
    format: str,
    card: dict[str, Any] | None = None,
) -> float:
    """Write ``model`` as an ONNX or TorchScript graph and check it against PyTorch.

    Args:
        model: the encoder to export (it is put in eval mode).
        out: the file to write (its directory is created).
        format: ``"onnx"`` or ``"torchscript"``.
        card: the model card to store with the graph (JSON-serialisable).

    Returns:
        The largest difference from PyTorch's embeddings over :func:`check_batches`.

    Raises:
        ValueError: ``format`` is not a graph format.
        ImportError: ONNX export without the ``onnx`` extra.
        ExportError: the model cannot be traced or converted (the message names the model and
            PyTorch's reason), or the written graph differs from PyTorch by more than
            :data:`TOLERANCE` on batches of other sizes (it is removed).
    """
    if format not in _WRITERS:
        raise ValueError(f"{format!r} is not a graph export format; known: {sorted(_WRITERS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = _name(model)
    stored = {
        "arch": model.arch,
        "sample_rate": model.sample_rate,
        "embed_dim": model.embed_dim,
        "min_samples": model.min_samples,
    }
    stored.update(card or {})
    try:
        run = _WRITERS[format](model, out, stored)
    except ExportError:
        raise
    except RuntimeError as err:
        out.unlink(missing_ok=True)
        raise ExportError(f"the {name} cannot be exported to {format}: {err}") from err
    worst = 0.0
    for wav, lengths in check_batches(model):
        with torch.no_grad():
            expected = model(wav, lengths).numpy()
        worst = max(worst, float(np.abs(run(wav, lengths) - expected).max()))
    if worst > TOLERANCE:
        out.unlink(missing_ok=True)
        raise ExportError(
            f"the {name} traced into a {format} graph that differs from PyTorch by {worst:.2g} "
            f"(> {TOLERANCE:g}) on batches of other sizes than the one traced: its forward has "
            f"control flow on sizes or values that tracing froze; {out} was not kept"
        )
    logger.info("exported the %s to %s (%s; max difference %.2g)", name, out, format, worst)
    return worst


def quantize_int8(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Dynamic int8 quantisation of an ONNX graph (``onnxruntime.quantization``).

    The weights of convolutions and matrix products become 8-bit integers and their inputs are
    quantised on the fly, batch by batch; the metadata (the model card) is kept. The weights
    are unsigned (``QUInt8``): with signed ones onnxruntime's integer convolution ran the
    default model 2.8x slower than float32 on this project's CPU, with unsigned ones as fast,
    for the same accuracy (cosine 0.999 to float32). The embeddings differ from float32 by
    quantisation noise, not :data:`TOLERANCE`: BENCHMARKS.md gives the change in EER and speed
    for the default model.

    Args:
        source: a float32 ``.onnx`` file (as :func:`export_graph` writes it).
        out: the quantised file to write.

    Raises:
        ImportError: the ``onnx`` extra is not installed.
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as err:
        raise ImportError(
            f"ONNX quantisation needs onnx and onnxruntime ({err}): pip install 'voxvec[onnx]'"
        ) from err
    quantize_dynamic(Path(source), Path(out), weight_type=QuantType.QUInt8)
    logger.info("quantised %s to int8 in %s", source, out)
