"""Torch-free inference: an exported ``.onnx`` model run by onnxruntime.

:class:`OnnxEmbedder` is the :class:`~voxvec.pipeline.BaseEmbedder` of a graph written by
``voxvec export --out model.onnx``: files, arrays, padded batches, long-audio windows, VAD,
speaker means and verification are the shared code of :mod:`voxvec.pipeline`; only the forward
pass runs on onnxruntime instead of PyTorch. Importing it, loading a file and embedding import
no torch (the ``silero`` VAD, ``return_tensors="pt"`` and torch-tensor inputs are the exceptions:
they are torch's by nature), so a deployment needs numpy, soundfile, soxr and onnxruntime only.
:func:`voxvec.load` returns one for a path ending in ``.onnx``.

The model card travels inside the graph (ONNX metadata entry :data:`CARD_KEY`, JSON): its
``sample_rate``, ``embed_dim`` and ``min_samples`` say what the graph takes, its
``thresholds`` give :meth:`~voxvec.pipeline.BaseEmbedder.verify` its operating points, and
``quantization`` (``"int8"`` for ``voxvec export --quantize int8``) what arithmetic it runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxvec.audio.windows import batch_bound, length_batches
from voxvec.pipeline import BaseEmbedder
from voxvec.runtime import AUTO, default_num_threads

CARD_KEY = "voxvec"
"""ONNX metadata key of the model card; the TorchScript extra file is ``CARD_KEY + ".json"``."""

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            f"running an .onnx model needs onnxruntime ({err}): pip install onnxruntime "
            "(or 'voxvec[onnx]', which also installs the exporter)"
        ) from err
    return onnxruntime


def onnx_providers(device: str | None, available: Sequence[str]) -> list[Any]:
    """onnxruntime execution providers for a voxvec device name.

    Args:
        device: ``"auto"`` or None (CUDA when onnxruntime has it, else the CPU), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``.
        available: the providers this onnxruntime build has
            (``onnxruntime.get_available_providers()``).

    Returns:
        The providers to give ``InferenceSession``, best first (the CPU last, for any operator
        the GPU provider lacks).

    Raises:
        ValueError: an unknown device, or CUDA asked of an onnxruntime build without it.
    """
    if device is None or device == "auto":
        return ([_CUDA] if _CUDA in available else []) + [_CPU]
    kind, sep, index = device.partition(":")
    if device == "cpu":
        return [_CPU]
    if kind == "cuda" and (not sep or index.isdigit()):
        if _CUDA not in available:
            raise ValueError(
                f"device {device!r} requested but this onnxruntime has no CUDA provider (it has "
                f"{', '.join(available)}): pip install onnxruntime-gpu, or use 'cpu'"
            )
        return [(_CUDA, {"device_id": int(index or 0)}), _CPU]
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def read_card(session: Any, path: Path) -> dict[str, Any]:
    """The model card of a loaded graph, checked for what inference needs.

    Raises:
        ValueError: the graph has no voxvec card, or the card lacks ``sample_rate``,
            ``embed_dim`` or ``min_samples``.
    """
    metadata = session.get_modelmeta().custom_metadata_map
    if CARD_KEY not in metadata:
        raise ValueError(
            f"{path} has no voxvec model card (ONNX metadata {CARD_KEY!r}): export it with "
            "`voxvec export MODEL --out model.onnx`"
        )
    card = json.loads(metadata[CARD_KEY])
    missing = [key for key in ("sample_rate", "embed_dim", "min_samples") if key not in card]
    if missing:
        raise ValueError(
            f"the model card of {path} lacks {', '.join(missing)} (it was exported by an older "
            "voxvec): export it again with `voxvec export`"
        )
    return card


class OnnxEmbedder(BaseEmbedder):
    """Speaker embeddings from files, arrays and batches with an exported ONNX graph.

    The same methods and options as :class:`voxvec.inference.Embedder` (``embed``,
    ``embed_windows``, ``iter_embed``, ``embed_speaker``, ``verify``, thresholds), without torch.

    Args:
        path: an ``.onnx`` file written by ``voxvec export``.
        device: ``"auto"`` or None (CUDA when this onnxruntime has it, else the CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``.
        window_s, hop_s, vad, min_speech_s, level_db: as :class:`voxvec.inference.Embedder`.
        precision: ``"auto"`` or ``"float32"``: the graph runs in the arithmetic it was
            exported with (float32, or int8 weights for a quantised export; see
            :attr:`precision`).
        num_threads: onnxruntime's threads for one forward pass; ``"auto"`` for
            :func:`voxvec.runtime.default_num_threads` (what the CLI uses); None for
            onnxruntime's default (one per physical core).

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        path: the file.
        precision: what the graph computes in: ``"float32"``, or ``"int8"`` for a dynamically
            quantised export.
        num_threads: onnxruntime's threads (``"auto"`` resolved), or None for its default.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImportError: onnxruntime is not installed.
        ValueError: the file is not a voxvec export (see :func:`read_card`), an unknown device
            or precision, or an option out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str | None = None,
        *,
        window_s: float | None = 20.0,
        hop_s: float | None = None,
        vad: str = "off",
        min_speech_s: float = 0.5,
        precision: str = "auto",
        num_threads: int | str | None = None,
        level_db: float | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"model file not found: '{self.path}'")
        if precision not in ("auto", "float32"):
            raise ValueError(
                f"precision must be 'auto' or 'float32' for an ONNX model (it runs in the "
                f"arithmetic it was exported with), got {precision!r}"
            )
        threads = default_num_threads() if num_threads == AUTO else num_threads
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(f"num_threads must be 'auto' or a positive integer, got {threads!r}")
        self.num_threads: int | None = threads
        ort = _onnxruntime()
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = onnx_providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=providers
            )
        except Exception as err:  # onnxruntime raises its own exception types, not exported
            raise ValueError(f"{self.path} is not an ONNX model onnxruntime runs: {err}") from err
        card = read_card(self.session, self.path)
        self._sample_rate = int(card["sample_rate"])
        self._embed_dim = int(card["embed_dim"])
        self._min_samples = int(card["min_samples"])
        self.precision = "int8" if card.get("quantization") == "int8" else "float32"
        super().__init__(
            {"source": str(self.path), **card},
            window_s=window_s,
            hop_s=hop_s,
            vad=vad,
            min_speech_s=min_speech_s,
            level_db=level_db,
        )

    @property
    def sample_rate(self) -> int:
        """The sample rate in Hz every input is resampled to."""
        return self._sample_rate

    @property
    def embed_dim(self) -> int:
        """Size D of the embeddings."""
        return self._embed_dim

    @property
    def min_samples(self) -> int:
        """The shortest input, in samples at :attr:`sample_rate`, the graph takes."""
        return self._min_samples

    @property
    def device(self) -> str:
        """Where the graph runs, as a device name: ``"cuda:N"`` or ``"cpu"``."""
        if _CUDA in self.providers:
            options = self.session.get_provider_options().get(_CUDA, {})
            return f"cuda:{options.get('device_id', 0)}"
        return "cpu"

    @property
    def providers(self) -> list[str]:
        """The onnxruntime execution providers the session runs on, best first."""
        return list(self.session.get_providers())

    def __repr__(self) -> str:
        name = self.card.get("name") or self.path.name
        return (
            f"OnnxEmbedder({name}, {self.sample_rate} Hz, D={self.embed_dim}, "
            f"providers={self.providers}, precision={self.precision})"
        )

    def embed_waveforms(self, waves: Sequence[np.ndarray], *, batch_size: int = 16) -> np.ndarray:
        """Embeddings of decoded, checked waveforms by the graph, in length-sorted, right-padded
        batches (as :func:`voxvec.runtime.embed_waveforms`; see
        :meth:`BaseEmbedder.embed_waveforms`)."""
        out = np.empty((len(waves), self.embed_dim), dtype=np.float32)
        bound = batch_bound(self.sample_rate, self.device == "cpu")
        for idx in length_batches([len(w) for w in waves], batch_size, bound):
            lengths = np.array([len(waves[i]) for i in idx], dtype=np.int64)
            batch = np.zeros((len(idx), int(lengths.max())), dtype=np.float32)
            for row, i in enumerate(idx):
                batch[row, : lengths[row]] = waves[i]
            out[idx] = self.session.run(None, {"wav": batch, "lengths": lengths})[0]
        return out
