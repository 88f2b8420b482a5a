"""Inference: files, arrays and batches in, speaker embeddings out.

:class:`Embedder` wraps any registered :class:`~voxvec.models.base.SpeakerEncoder` and does what
sits between raw audio and the model: decoding, resampling to the model's rate, silence trimming,
sliding windows over long recordings, and batching (through :func:`voxvec.runtime.embed_waveforms`,
the one batched primitive; the model computes its own front-end). All of it but the forward pass
is :class:`voxvec.pipeline.BaseEmbedder`, shared with the onnxruntime backend
(:class:`voxvec.onnx_embedder.OnnxEmbedder`). Whichever way the inputs are
batched, each gets the embedding it would get alone (within float tolerance).

Window embeddings. :meth:`Embedder.embed_windows` returns, per input, the embedding of each window
with its start and end in seconds of the original audio (also when VAD removed silence);
:meth:`Embedder.embed` is their re-normalised mean.

Long recordings. The original models degrade on utterances over about 30 s (they were trained on
a few seconds). An input longer than ``window_s`` (default 20 s) is cut into windows of
``window_s`` every ``hop_s`` (default ``window_s``: side by side; the last window ends at the end
of the input, so it may overlap the one before); each window is embedded and the window
embeddings are averaged and re-normalised. Windows of all inputs go through the same batches, so
memory is bounded by ``batch_size`` windows, not by the length of the longest input. (On the
validation split, 20 s windows without overlap scored the same EER as 10 s windows every 5 s, for
half the compute; see BENCHMARKS.md.)

Precision. Where the hardware computes bfloat16 natively (CPUs with AMX, recent GPUs) the model
runs under bfloat16 autocast by default (``precision="auto"``): about twice as fast on such
CPUs; the default model's embeddings stay within 0.0001 cosine of float32 on real
speech (random-input worst case 0.003), and batching changes them by less than that (rounding
depends on the batch shape). ``precision="float32"`` gives float32 results everywhere.

Silence. With ``vad`` other than ``"off"``, non-speech is removed first
(:func:`voxvec.audio.vad.speech_segments`: silero-vad from the ``vad`` extra, or an energy
detector). An input with less than ``min_speech_s`` of speech (after trimming when ``vad`` is on,
else its whole duration) raises a :class:`ValueError` naming it, rather than returning a
meaningless vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from voxvec.models.base import SpeakerEncoder
from voxvec.pipeline import (
    AudioLike,
    BaseEmbedder,
    EmbedInput,
    EmbedResult,
    PathLike,
    WindowEmbeddings,
    similarity,
)
from voxvec.runtime import embed_waveforms, model_device, resolve_device, resolve_precision

__all__ = [
    "AudioLike",
    "EmbedInput",
    "EmbedResult",
    "Embedder",
    "PathLike",
    "WindowEmbeddings",
    "similarity",
]


class Embedder(BaseEmbedder):
    """Speaker embeddings from files, arrays and batches with one model.

    Args:
        model: any :class:`SpeakerEncoder`; it is put in eval mode (and moved to ``device``).
        device: where to run the model (``"auto"``, ``"cpu"``, ``"cuda:1"`` ...); None keeps it
            where it is. (``voxvec.load`` resolves None to ``"auto"``: CUDA when available.)
        card: the model card (as :func:`voxvec.weights.load_model` returns it);
            its ``thresholds`` give :meth:`verify` its default decision threshold.
        window_s: inputs longer than this many seconds are embedded as the re-normalised mean of
            sliding windows of this length; None embeds every input whole (the original
            behaviour, which degrades past about 30 s).
        hop_s: seconds between window starts (<= ``window_s``); None means ``window_s`` (windows
            side by side, the last one ending at the end of the input).
        vad: trim non-speech before embedding: ``"off"``, ``"energy"``, ``"silero"`` (needs
            ``pip install 'voxvec[vad]'``) or ``"auto"`` (silero when installed, else energy);
            see :data:`voxvec.audio.vad.METHODS`.
        min_speech_s: inputs with less speech than this many seconds (after trimming when
            ``vad`` is on, else their whole duration) raise a :class:`ValueError`, and so do
            inputs that cannot be speech (silence, tones, steady noise: see
            :func:`voxvec.audio.vad.non_speech_reason`); 0 accepts anything the model can take
            (at least ``model.min_samples``).
        precision: arithmetic of the model's forward pass (features are always float32):
            ``"float32"``; ``"bfloat16"`` (autocast: about 2x faster on CPUs with AMX,
            slower without; embeddings within 0.0001 cosine of float32 on real speech, no
            measurable change in EER); ``"auto"`` (bfloat16 where the device computes it
            natively, else float32).
        level_db: None (the default) embeds each input at its own level; a level in dBFS
            (e.g. -20, about the training data's median for voxvec-default) scales each input's
            speech to that active level (:func:`voxvec.audio.vad.active_level_db`) first, so
            the same voice recorded louder or quieter gets the same embedding. voxvec-default is
            not level-invariant without it (its log-mel floor), but on normal-level validation
            audio it cost about 0.1 EER points on average (BENCHMARKS.md, "Level").

    Attributes:
        model: the wrapped model (eval mode).
        card: the model card (a copy; empty when none was given).
        window: window length in samples at :attr:`sample_rate`, or None (no windows).
        hop: hop between windows in samples, or None.
        vad: the VAD method, one of :data:`voxvec.audio.vad.METHODS`.
        min_speech_s: the least speech, in seconds, an input must hold.
        precision: the resolved precision, ``"float32"`` or ``"bfloat16"``.

    Raises:
        ValueError: an option is out of range.
    """

    def __init__(
        self,
        model: SpeakerEncoder,
        device: str | torch.device | None = None,
        card: dict[str, Any] | None = None,
        *,
        window_s: float | None = 20.0,
        hop_s: float | None = None,
        vad: str = "off",
        min_speech_s: float = 0.5,
        precision: str = "auto",
        level_db: float | None = None,
    ) -> None:
        if device is not None:
            model = model.to(resolve_device(device))
        self.model = model.eval()
        self.precision = resolve_precision(precision, self.device, self.model)
        super().__init__(
            card,
            window_s=window_s,
            hop_s=hop_s,
            vad=vad,
            min_speech_s=min_speech_s,
            level_db=level_db,
        )

    @property
    def sample_rate(self) -> int:
        """The sample rate in Hz every input is resampled to."""
        return self.model.sample_rate

    @property
    def embed_dim(self) -> int:
        """Size D of the embeddings."""
        return self.model.embed_dim

    @property
    def device(self) -> torch.device:
        """The device the model runs on."""
        return model_device(self.model)

    @property
    def min_samples(self) -> int:
        """The shortest input, in samples at :attr:`sample_rate`, the model takes."""
        return self.model.min_samples

    def __repr__(self) -> str:
        name = self.card.get("name") or type(self.model).__name__
        return (
            f"Embedder({name}, {self.sample_rate} Hz {self.model.frontend.kind}, "
            f"D={self.embed_dim}, device={self.device}, precision={self.precision})"
        )

    def embed_waveforms(self, waves: Sequence[np.ndarray], *, batch_size: int = 16) -> np.ndarray:
        """Embeddings of decoded, checked waveforms by the PyTorch model, at :attr:`precision`
        (:func:`voxvec.runtime.embed_waveforms`; see :meth:`BaseEmbedder.embed_waveforms`)."""
        return embed_waveforms(
            self.model, waves, batch_size=batch_size, precision=self.precision
        ).numpy()
