"""voxvec: speaker embeddings in PyTorch.

The public API: :func:`load`, :func:`available_models`, :func:`embed`, :func:`similarity`.

>>> import voxvec
>>> embedder = voxvec.load()                        # the default pretrained model
>>> emb = embedder.embed(["a.wav", "b.flac"])       # (2, 256) float32, unit rows
>>> voxvec.similarity(emb[0], emb[1])               # cosine score

Importing voxvec is cheap: torch and the models are imported on first use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from voxvec.pipeline import BaseEmbedder, EmbedInput

from voxvec._version import __version__

__all__ = ["__version__", "available_models", "embed", "load", "similarity"]


def load(
    name_or_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    *,
    num_threads: int | str | None = None,
    **embedder_kwargs: Any,
) -> Any:
    """Load a pretrained model (or a saved bundle) as an :class:`~voxvec.inference.Embedder`,
    or an exported ``.onnx`` graph as a torch-free :class:`~voxvec.onnx_embedder.OnnxEmbedder`.

    Both have the methods of :class:`~voxvec.pipeline.BaseEmbedder` (``embed``,
    ``embed_windows``, ``embed_speaker``, ``verify`` ...) and give the same embeddings within
    1e-4; only the forward pass differs. Loading an ``.onnx`` file imports no torch.

    Args:
        name_or_path: a pretrained name (see :func:`available_models`), a path to a saved
            ``.safetensors`` bundle or released checkpoint, a path ending in ``.onnx``
            (written by ``voxvec export``; needs onnxruntime only), or None for the default
            model.
        device: where to run: ``"auto"`` or None (CUDA when available, else CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:1"`` ...
        num_threads: set torch's CPU threads for this process (every model in it) to this
            many, or ``"auto"`` (:func:`voxvec.runtime.default_num_threads`: the cores not
            already busy, at most 4, or ``OMP_NUM_THREADS``; what the CLI uses); None leaves
            them as they are (torch's default: a thread per core). On a machine that other
            jobs keep busy, 1 thread is many times faster (BENCHMARKS.md). For an ``.onnx``
            model, onnxruntime's threads for this embedder (None: one per physical core).
        **embedder_kwargs: options of :class:`~voxvec.inference.Embedder` (``window_s``,
            ``hop_s``, ``vad``, ``min_speech_s``, ``precision``, ``level_db``).

    Returns:
        An :class:`~voxvec.inference.Embedder` (an
        :class:`~voxvec.onnx_embedder.OnnxEmbedder` for ``.onnx``) ready to embed. (Typed
        ``Any`` because the kind depends on the path's value: callers that need the PyTorch
        model check ``isinstance(e, voxvec.inference.Embedder)``.)

    Raises:
        KeyError: unknown pretrained name (the message lists the valid ones).
        FileNotFoundError: the path does not exist.
        ValueError: a CUDA device is requested without CUDA, ``num_threads`` or an Embedder
            option is out of range, or the weights cannot be loaded (see
            :func:`voxvec.weights.load_model`).
        OSError / RuntimeError: downloading the weights failed.
    """
    if name_or_path is not None and os.fspath(name_or_path).lower().endswith(".onnx"):
        from voxvec.onnx_embedder import OnnxEmbedder

        onnx_device = None if device is None else str(device)
        return OnnxEmbedder(name_or_path, onnx_device, num_threads=num_threads, **embedder_kwargs)
    from voxvec.inference import Embedder
    from voxvec.runtime import resolve_device, set_num_threads
    from voxvec.weights import load_model

    resolved = resolve_device(device)
    if num_threads is not None:
        set_num_threads(num_threads)
    model, card = load_model(name_or_path)
    return Embedder(model, resolved, card, **embedder_kwargs)


def available_models() -> list[str]:
    """Names of the pretrained models :func:`load` accepts, aliases first (``voxvec-default``:
    the current default; ``voxvec models`` shows details)."""
    from voxvec.weights import ALIASES, list_pretrained

    return [*ALIASES, *(spec.name for spec in list_pretrained())]


def embed(
    x: EmbedInput,
    sample_rate: int | None = None,
    *,
    model: str | os.PathLike | BaseEmbedder | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 16,
    **embedder_kwargs: Any,
) -> Any:
    """Embed audio in one call: ``voxvec.load(model).embed(x, sample_rate)``.

    This loads the model on every call (there is no hidden global cache): to embed repeatedly,
    create an Embedder once with :func:`load` and call its ``embed``, or pass it as ``model``.

    Args:
        x: paths, waveforms or a batch, as :meth:`voxvec.inference.Embedder.embed` accepts.
        sample_rate: rate in Hz of the waveforms in ``x`` (required for arrays).
        model: a pretrained name or path (None: the default model), or an existing Embedder
            (an :class:`~voxvec.inference.Embedder` or :class:`~voxvec.onnx_embedder.OnnxEmbedder`).
        device: where to run when loading; None means CUDA when available, else CPU.
        batch_size: inputs or windows per forward pass.
        **embedder_kwargs: Embedder options when loading (``window_s``, ``vad``, ...).

    Returns:
        ``(N, D)`` float32 numpy array of unit-length embeddings.

    Raises:
        As :func:`load` and :meth:`voxvec.inference.Embedder.embed`.
    """
    from voxvec.pipeline import BaseEmbedder

    if isinstance(model, BaseEmbedder):
        if embedder_kwargs or device is not None:
            raise ValueError("device and Embedder options cannot be given with an Embedder")
        embedder = model
    else:
        embedder = load(model, device, **embedder_kwargs)
    return embedder.embed(x, sample_rate, batch_size=batch_size)


def similarity(a: Any, b: Any) -> Any:
    """Cosine similarity of ``(D,)`` or ``(N, D)`` embeddings (numpy or torch).

    Returns a float for two vectors, an ``(N, M)`` array for two matrices (see
    :func:`voxvec.inference.similarity`).

    Raises:
        ValueError: mismatched shapes or a zero vector.
    """
    from voxvec.inference import similarity as _similarity

    return _similarity(a, b)
