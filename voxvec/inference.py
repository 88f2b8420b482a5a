"""Inference: files, arrays and batches in, speaker embeddings out.

:class:`Embedder` wraps any registered :class:`~voxvec.models.base.SpeakerEncoder` and does what
sits between raw audio and the model: decoding, resampling to the model's rate, the model's
front-end (log-mel or waveform), silence trimming, sliding windows over long recordings, and
batching of variable-length inputs with padding and lengths. Whichever way the inputs are batched,
each gets the embedding it would get alone (within float tolerance).

Long recordings. The original models degrade on utterances over about 30 s (they were trained on
a few seconds). An input longer than ``window_s`` (default 20 s) is cut into windows of
``window_s`` every ``hop_s`` (default ``window_s``: side by side; the last window ends at the end
of the input, so it may overlap the one before); each window is embedded and the window
embeddings are averaged and re-normalised. Windows of all inputs go through the same batches, so
memory is bounded by ``batch_size`` windows, not by the length of the longest input. (On the
validation split, 20 s windows without overlap scored the same EER as 10 s windows every 5 s, for
half the compute; see BENCHMARKS.md.)

Precision. Where the hardware computes bfloat16 natively (CPUs with AMX or AVX512-BF16, recent
GPUs) the model runs under bfloat16 autocast by default (``precision="auto"``): about twice as
fast on such CPUs; the default model's embeddings stay within 0.0001 cosine of float32 on real
speech (random-input worst case 0.003), and batching changes them by less than that (rounding
depends on the batch shape). ``precision="float32"`` gives float32 results everywhere.

Silence. With ``vad`` set, non-speech is removed first (:func:`voxvec.audio.vad.trim_silence`:
silero-vad from the ``vad`` extra, or an energy detector). An input with less than
``min_speech_s`` of speech (after trimming when ``vad`` is on, else its whole duration) raises a
:class:`ValueError` naming it, rather than returning a meaningless vector.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from voxvec.audio import io
from voxvec.audio.features import log_mel
from voxvec.audio.vad import trim_silence
from voxvec.audio.windows import pad_batch, window_starts
from voxvec.models.base import SpeakerEncoder

logger = logging.getLogger(__name__)

PathLike: TypeAlias = str | os.PathLike
AudioLike: TypeAlias = PathLike | np.ndarray | Tensor
EmbedInput: TypeAlias = AudioLike | Sequence[AudioLike]

VAD_METHODS = ("energy", "silero", "auto")
PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (so autocast to it is faster, not slower).

    CUDA: :func:`torch.cuda.is_bf16_supported` without emulation (Ampere and later). CPU: AMX or
    AVX512-BF16 instructions (recent Intel Xeons, AMD Zen 4 and later). Elsewhere bfloat16 is
    emulated and slower than float32.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type != "cpu":
        return False
    try:  # private helpers of torch.cpu (torch >= 2.3); absent means "do not know": no
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False


@dataclass(frozen=True)
class EmbedResult:
    """The outcome of embedding one input with :meth:`Embedder.iter_embed`.

    Attributes:
        index: position of the input in the sequence given.
        source: the input's name: its path, or ``input[i]`` for an array.
        embedding: ``(D,)`` float32 unit vector, or None when the input failed.
        error: why the input failed (an :class:`OSError` or :class:`ValueError` naming it), or None.
    """

    index: int
    source: str
    embedding: np.ndarray | None
    error: Exception | None


@dataclass(frozen=True)
class _Item:
    """One input before decoding: a file path or a waveform at ``sample_rate``."""

    source: str
    path: Path | None = None
    wave: np.ndarray | None = None
    sample_rate: int | None = None


def _resolve_vad(vad: bool | str | None) -> str | None:
    if vad is None or vad is False:
        return None
    if vad is True:
        return "auto"
    if isinstance(vad, str) and vad in VAD_METHODS:
        return vad
    raise ValueError(f"vad must be False, True or one of {VAD_METHODS}, got {vad!r}")


def _to_numpy(x: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _is_array(x: object) -> bool:
    return isinstance(x, (np.ndarray, Tensor))


class Embedder:
    """Speaker embeddings from files, arrays and batches with one model.

    Args:
        model: any :class:`SpeakerEncoder`; it is put in eval mode (and moved to ``device``).
        device: where to run the model; None keeps it where it is. (``voxvec.load`` resolves
            None to CUDA when available, else CPU.)
        card: the model card / metadata (as :func:`voxvec.pretrained.load_model` returns it);
            its ``thresholds`` give :meth:`verify` its default decision threshold.
        window_s: inputs longer than this many seconds are embedded as the re-normalised mean of
            sliding windows of this length; None embeds every input whole (the original
            behaviour, which degrades past about 30 s).
        hop_s: seconds between window starts (<= ``window_s``); None means ``window_s`` (windows
            side by side, the last one ending at the end of the input).
        vad: trim non-speech before embedding: False (off), True (``"auto"``), ``"energy"``,
            ``"silero"`` (needs ``pip install 'voxvec[vad]'``) or ``"auto"`` (silero when
            installed, else energy).
        min_speech_s: inputs with less speech than this many seconds (after trimming when
            ``vad`` is on, else their whole duration) raise a :class:`ValueError`; 0 accepts
            anything the model can take (at least ``model.min_samples``).
        precision: arithmetic of the model's forward pass (features are always float32):
            ``"float32"``; ``"bfloat16"`` (autocast: about 2x faster on CPUs with AMX or
            AVX512-BF16, embeddings within 0.0001 cosine of float32 on real speech, no
            measurable change in EER); ``"auto"`` (bfloat16 where the device computes it
            natively, else float32).

    Attributes:
        model: the wrapped model (eval mode).
        card: the model card (a copy; empty when none was given).
        window: window length in samples at :attr:`sample_rate`, or None (no windows).
        hop: hop between windows in samples, or None.
        vad: the VAD method (``"energy"``, ``"silero"``, ``"auto"``), or None when off.
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
        vad: bool | str = False,
        min_speech_s: float = 0.5,
        precision: str = "auto",
    ) -> None:
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "auto":
            precision = "bfloat16" if native_bfloat16(self.device) else "float32"
        self.precision = precision
        self.card: dict[str, Any] = dict(card or {})
        self.vad = _resolve_vad(vad)
        if min_speech_s < 0:
            raise ValueError(f"min_speech_s must be >= 0, got {min_speech_s}")
        self.min_speech_s = float(min_speech_s)
        self.window: int | None = None
        self.hop: int | None = None
        if window_s is not None:
            hop_s = window_s if hop_s is None else hop_s
            if not 0 < hop_s <= window_s:
                raise ValueError(
                    f"need 0 < hop_s <= window_s, got window_s={window_s}, hop_s={hop_s}"
                )
            self.window = round(window_s * self.sample_rate)
            self.hop = max(1, round(hop_s * self.sample_rate))
            if self.window < model.min_samples:
                raise ValueError(
                    f"window_s={window_s} is shorter than the model's minimum input "
                    f"({model.min_samples} samples at {self.sample_rate} Hz)"
                )
        elif hop_s is not None:
            raise ValueError("hop_s needs window_s")

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
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def threshold(self) -> float | None:
        """The model card's default decision threshold (its ``"eer"`` operating point), or None."""
        value = (self.card.get("thresholds") or {}).get("eer")
        return None if value is None else float(value)

    def resolve_threshold(self, threshold: float | str | None = None) -> float:
        """A decision threshold: a number as given, or an operating point of the model card.

        Args:
            threshold: a cosine score; a name from the card's ``thresholds`` (for the default
                model ``"eer"``, the equal-error point, and ``"far1"``, 1% false accepts, both
                chosen on held-out validation speakers); None for ``"eer"``.

        Raises:
            ValueError: a name the card does not have, or no threshold at all.
        """
        if isinstance(threshold, (int, float)):
            return float(threshold)
        points = self.card.get("thresholds") or {}
        name = "eer" if threshold is None else threshold
        if name not in points:
            raise ValueError(
                f"no decision threshold {name!r}: the model card has {sorted(points) or 'none'} "
                "(calibrate one on your data with `voxvec eval`) - pass a number instead"
            )
        return float(points[name])

    def __repr__(self) -> str:
        name = self.card.get("name") or type(self.model).__name__
        return (
            f"Embedder({name}, {self.sample_rate} Hz {self.model.input_kind}, "
            f"D={self.embed_dim}, device={self.device}, precision={self.precision})"
        )

    # ------------------------------------------------------------------ inputs

    def _items(
        self, x: EmbedInput, sample_rate: int | None, lengths: np.ndarray | Tensor | None
    ) -> list[_Item]:
        """Normalise any accepted input into a list of items (nothing decoded yet)."""
        if isinstance(x, (str, os.PathLike)):
            if lengths is not None:
                raise ValueError("lengths is only valid with a (B, T) batch")
            return [_Item(source=os.fspath(x), path=Path(x))]
        if _is_array(x):
            arr = _to_numpy(x)  # type: ignore[arg-type]
            sr = self._need_rate(sample_rate)
            if arr.ndim == 1:
                if lengths is not None:
                    raise ValueError("lengths is only valid with a (B, T) batch")
                return [_Item(source="input", wave=arr, sample_rate=sr)]
            if arr.ndim != 2:
                raise ValueError(f"expected a (T,) waveform or (B, T) batch, got shape {arr.shape}")
            lens = self._batch_lengths(arr, lengths)
            return [
                _Item(source=f"input[{i}]", wave=arr[i, : lens[i]], sample_rate=sr)
                for i in range(arr.shape[0])
            ]
        if isinstance(x, Sequence):
            if lengths is not None:
                raise ValueError("lengths is only valid with a (B, T) batch")
            items = []
            for i, elem in enumerate(x):
                if isinstance(elem, (str, os.PathLike)):
                    items.append(_Item(source=os.fspath(elem), path=Path(elem)))
                elif _is_array(elem):
                    arr = _to_numpy(elem)  # type: ignore[arg-type]
                    if arr.ndim != 1:
                        raise ValueError(
                            f"input[{i}]: list elements must be paths or 1-D waveforms, got an "
                            f"array of shape {arr.shape} (pass a (B, T) batch on its own)"
                        )
                    items.append(
                        _Item(
                            source=f"input[{i}]", wave=arr, sample_rate=self._need_rate(sample_rate)
                        )
                    )
                else:
                    raise TypeError(
                        f"input[{i}]: expected a path, numpy array or tensor, "
                        f"got {type(elem).__name__}"
                    )
            return items
        raise TypeError(
            "expected a path, a 1-D or (B, T) numpy array or tensor, or a list of paths and 1-D "
            f"arrays, got {type(x).__name__}"
        )

    def _need_rate(self, sample_rate: int | None) -> int:
        if sample_rate is None:
            raise ValueError(
                "sample_rate is required for array input (the rate of the samples given; they are "
                f"resampled to the model's {self.sample_rate} Hz)"
            )
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        return int(sample_rate)

    @staticmethod
    def _batch_lengths(batch: np.ndarray, lengths: np.ndarray | Tensor | None) -> list[int]:
        n, total = batch.shape
        if lengths is None:
            return [total] * n
        lens = _to_numpy(lengths)
        if lens.shape != (n,):
            raise ValueError(f"lengths must have shape ({n},) for a batch of {n}, got {lens.shape}")
        if not np.issubdtype(lens.dtype, np.integer) or (lens < 1).any() or (lens > total).any():
            raise ValueError(f"lengths must be integers in [1, {total}], got {lens.tolist()}")
        return [int(v) for v in lens]

    def _decode(self, item: _Item) -> np.ndarray:
        """The item's waveform at the model's rate, silence-trimmed, validated: (T,) float32."""
        if item.path is not None:
            wav = io.load(item.path, self.sample_rate)
        else:
            assert item.wave is not None and item.sample_rate is not None
            wav = io.check_waveform(item.wave, item.source)
            if item.sample_rate != self.sample_rate:
                wav = io.resample(wav, item.sample_rate, self.sample_rate)
        duration_s = len(wav) / self.sample_rate
        if self.vad is not None:
            wav = trim_silence(wav, self.sample_rate, method=self.vad)
        speech_s = len(wav) / self.sample_rate
        if speech_s < self.min_speech_s:
            what = (
                f"speech found by VAD (of {duration_s:.2f} s)" if self.vad is not None else "audio"
            )
            raise ValueError(
                f"{item.source}: {speech_s:.2f} s of {what} is below "
                f"min_speech_s={self.min_speech_s:g}; an embedding of it would be meaningless "
                "(give a longer recording, or lower min_speech_s)"
            )
        if len(wav) < self.model.min_samples:
            raise ValueError(
                f"{item.source}: {len(wav)} samples at {self.sample_rate} Hz is shorter than the "
                f"model's minimum input of {self.model.min_samples} samples"
            )
        return wav

    def _segments(self, wav: np.ndarray) -> list[np.ndarray]:
        """The waveform itself, or its sliding windows when it is longer than one window."""
        if self.window is None or self.hop is None or len(wav) <= self.window:
            return [wav]
        return [wav[s : s + self.window] for s in window_starts(len(wav), self.window, self.hop)]

    # ------------------------------------------------------------------ model

    def _forward(self, wav: Tensor, lengths: Tensor) -> Tensor:
        """Model input from a padded waveform batch (B, T) -> embeddings (B, D)."""
        x, x_lengths = wav, lengths
        if self.model.input_kind == "logmel":
            assert self.model.mel_config is not None
            x, x_lengths = log_mel(wav, self.model.mel_config, lengths)  # always in float32
        with torch.autocast(
            wav.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"
        ):
            return self.model(x, x_lengths).float()

    def _embed_segments(self, segments: list[np.ndarray], batch_size: int) -> Tensor:
        """Embed waveforms (each at the model rate) in length-sorted batches: (S, D) on CPU."""
        out = torch.empty(len(segments), self.embed_dim)
        order = sorted(range(len(segments)), key=lambda i: -len(segments[i]))
        device = self.device
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                wav, lengths = pad_batch([segments[i] for i in idx])
                emb = self._forward(wav.to(device), lengths.to(device))
                out[idx] = emb.float().cpu()
        return out

    # ------------------------------------------------------------------ public

    def iter_embed(
        self,
        x: EmbedInput,
        sample_rate: int | None = None,
        *,
        lengths: np.ndarray | Tensor | None = None,
        batch_size: int = 16,
        chunk_size: int = 64,
    ) -> Iterator[EmbedResult]:
        """Embed inputs chunk by chunk, yielding one :class:`EmbedResult` per input, in order.

        Unlike :meth:`embed`, an input that cannot be read or is too short does not stop the
        others: its result carries the error. At most ``chunk_size`` inputs are decoded at a
        time, so many files can be embedded in bounded memory.

        Args:
            x, sample_rate, lengths, batch_size: as in :meth:`embed`.
            chunk_size: inputs decoded (and then embedded together) at a time.

        Yields:
            :class:`EmbedResult` for each input in the order given.

        Raises:
            ValueError / TypeError: the input as a whole is malformed (see :meth:`embed`).
        """
        if batch_size < 1 or chunk_size < 1:
            raise ValueError(
                f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}"
            )
        items = self._items(x, sample_rate, lengths)
        for first in range(0, len(items), chunk_size):
            chunk = items[first : first + chunk_size]
            errors: dict[int, Exception] = {}
            owners: list[int] = []
            segments: list[np.ndarray] = []
            for k, item in enumerate(chunk):
                try:
                    segs = self._segments(self._decode(item))
                except (OSError, ValueError) as err:
                    errors[k] = err
                    continue
                owners.extend([k] * len(segs))
                segments.extend(segs)
            emb = self._embed_segments(segments, batch_size) if segments else None
            owner_t = torch.tensor(owners, dtype=torch.long)
            for k, item in enumerate(chunk):
                if k in errors:
                    yield EmbedResult(first + k, item.source, None, errors[k])
                    continue
                assert emb is not None
                mean = emb[owner_t == k].mean(0)
                vec = F.normalize(mean, dim=0).numpy().astype(np.float32)
                yield EmbedResult(first + k, item.source, vec, None)

    def embed(
        self,
        x: EmbedInput,
        sample_rate: int | None = None,
        *,
        lengths: np.ndarray | Tensor | None = None,
        batch_size: int = 16,
        return_tensors: Literal["np", "pt"] = "np",
    ) -> Any:
        """Speaker embeddings of one or many inputs.

        Args:
            x: a path; a 1-D waveform (numpy array or tensor); a list mixing paths and 1-D
                waveforms; or a ``(B, T)`` batch of waveforms (with ``lengths`` when padded).
                Files are decoded with :func:`voxvec.audio.io.load`; waveforms are float in
                [-1, 1].
            sample_rate: rate in Hz of the waveforms in ``x``; required when ``x`` holds any
                array (there is no guessing). Files carry their own rate. Everything is
                resampled to :attr:`sample_rate`.
            lengths: ``(B,)`` valid samples per row of a ``(B, T)`` batch.
            batch_size: inputs (or windows of long inputs) per forward pass; the batch's
                memory is the bound on peak memory.
            return_tensors: ``"np"`` for a numpy array, ``"pt"`` for a CPU torch tensor.

        Returns:
            ``(N, D)`` float32 L2-normalised embeddings, one row per input (N = 1 for a single
            path or 1-D waveform, B for a batch).

        Raises:
            FileNotFoundError: a file does not exist.
            voxvec.audio.io.AudioError: a file or waveform is unreadable, empty or non-finite.
            ValueError: an input has less than ``min_speech_s`` of speech or is shorter than
                the model's minimum; ``sample_rate`` is missing for arrays; ``lengths`` is
                invalid. Each message names the input (its path or ``input[i]``).
            TypeError: ``x`` is not one of the accepted kinds.
        """
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors must be 'np' or 'pt', got {return_tensors!r}")
        rows: list[np.ndarray] = []
        for result in self.iter_embed(x, sample_rate, lengths=lengths, batch_size=batch_size):
            if result.error is not None:
                raise result.error
            assert result.embedding is not None
            rows.append(result.embedding)
        out = np.stack(rows) if rows else np.zeros((0, self.embed_dim), dtype=np.float32)
        return torch.from_numpy(out) if return_tensors == "pt" else out

    def embed_speaker(
        self,
        x: EmbedInput,
        sample_rate: int | None = None,
        *,
        lengths: np.ndarray | Tensor | None = None,
        batch_size: int = 16,
    ) -> np.ndarray:
        """One embedding for a speaker from several recordings: the re-normalised mean.

        Args:
            x, sample_rate, lengths, batch_size: as in :meth:`embed`.

        Returns:
            ``(D,)`` float32 unit vector.

        Raises:
            ValueError: ``x`` holds no input; otherwise as :meth:`embed`.
        """
        emb = self.embed(x, sample_rate, lengths=lengths, batch_size=batch_size)
        if len(emb) == 0:
            raise ValueError("embed_speaker needs at least one recording")
        mean = emb.mean(0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)

    def verify(
        self,
        a: EmbedInput,
        b: EmbedInput,
        *,
        sample_rate: int | None = None,
        threshold: float | str | None = None,
    ) -> tuple[float, bool]:
        """Whether ``a`` and ``b`` are the same speaker.

        Each side may be several recordings of one speaker (see :meth:`embed_speaker`).

        Args:
            a, b: inputs as accepted by :meth:`embed`.
            sample_rate: rate in Hz of any waveforms given.
            threshold: decide "same" when the cosine score is >= this: a number, or an
                operating point of the model card (see :meth:`resolve_threshold`); None uses
                the card's ``"eer"`` point.

        Returns:
            ``(score, same)``: the cosine similarity in [-1, 1] and the decision.

        Raises:
            ValueError: no threshold was given and the model card has none; otherwise as
                :meth:`embed`.
        """
        value = self.resolve_threshold(threshold)
        score = similarity(self.embed_speaker(a, sample_rate), self.embed_speaker(b, sample_rate))
        return float(score), bool(score >= value)


def similarity(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> Any:
    """Cosine similarity of embeddings.

    Args:
        a: ``(D,)`` or ``(N, D)`` embeddings (numpy or torch; need not be unit length).
        b: ``(D,)`` or ``(M, D)`` embeddings.

    Returns:
        A float for two vectors; ``(N, M)`` float32 numpy scores for two matrices; ``(M,)`` or
        ``(N,)`` when one side is a vector.

    Raises:
        ValueError: shapes are not 1-D/2-D with the same D, or a vector has zero norm.
    """
    x = _to_numpy(a).astype(np.float64)
    y = _to_numpy(b).astype(np.float64)
    if x.ndim not in (1, 2) or y.ndim not in (1, 2) or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            "expected (D,) or (N, D) embeddings with the same D, "
            f"got shapes {x.shape} and {y.shape}"
        )
    nx = np.linalg.norm(x, axis=-1, keepdims=True)
    ny = np.linalg.norm(y, axis=-1, keepdims=True)
    if (nx == 0).any() or (ny == 0).any():
        raise ValueError("cannot compute the cosine similarity of a zero vector")
    scores = (x / nx) @ (y / ny).T
    if x.ndim == 1 and y.ndim == 1:
        return float(scores)
    return scores.astype(np.float32)
