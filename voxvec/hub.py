"""torch.hub entry points with the original "simple speaker embeddings" contracts.

``hubconf.py`` at the repository root re-exports the public functions here, so

>>> model = torch.hub.load("<owner>/voxvec", "convgru_embedder")       # or a local checkout:
>>> model = torch.hub.load("/path/to/voxvec", "gru_embedder", source="local")

gives the original's modules: :class:`GRUEmbedder` (log-mels ``(B, frames, 80)`` ->
``(B, 256)``, with ``melspec_from_file``, ``melspec_from_array``, ``hparams`` (an object with the
original's attributes, ``model.hparams.sampling_rate`` ...) and ``print_hparams``) and
:class:`ConvGRUEmbedder` (16 kHz waveforms ``(B, samples)`` ->
``(B, 256)``). Each wraps a voxvec model as ``.model`` (usable with
:class:`voxvec.inference.Embedder`), so the wrappers' parameter names are the original ones
(``model.rnn_stack.*`` ...). Both also take an optional ``lengths`` for padded batches.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from voxvec.audio import io
from voxvec.config import config_to_dict
from voxvec.inference import Embedder
from voxvec.models import SpeakerEncoder, create_model
from voxvec.models.convgru import ConvGRUEncoder
from voxvec.models.gru import MIN_LOG_VALUE, GRUEncoder
from voxvec.runtime import model_device, resolve_device
from voxvec.weights import DEFAULT_MODEL, load_model, load_state_dict_strict

__all__ = [
    "ConvGRUEmbedder",
    "GRUEmbedder",
    "convgru_embedder",
    "convgru_embedder_sc09",
    "gru_embedder",
    "voxvec_default",
]


def _print_mapping(values: dict[str, Any]) -> None:
    # The original API prints its hyper-parameters; this is voxvec's only print.
    for key, value in values.items():
        print(key, ":", value)


@dataclass(frozen=True)
class GRUHParams:
    """The original ``gru_embedder``'s ``hparams``: its audio settings under their original names.

    Attributes:
        filter_length, hop_length, win_length: STFT size, hop and window in samples.
        n_mel_channels: mel bands.
        sampling_rate: Hz.
        mel_fmin, mel_fmax: mel filter range in Hz.
        max_wav_value: full scale of 16-bit integer audio.
        min_log_value, max_log_value: the log-mel range the model's input scaling assumes.
        silence_threshold_db: the original's silence-trimming level (unused by voxvec).
    """

    filter_length: int
    hop_length: int
    win_length: int
    n_mel_channels: int
    sampling_rate: int
    mel_fmin: float
    mel_fmax: float
    max_wav_value: float = 32768.0
    min_log_value: float = MIN_LOG_VALUE
    max_log_value: float = 1.2
    silence_threshold_db: float = -10.0


class GRUEmbedder(nn.Module):
    """The original ``gru_embedder`` module: Tacotron log-mels in, speaker embeddings out.

    Args:
        model: the voxvec GRU encoder it wraps (``self.model``).
    """

    def __init__(self, model: SpeakerEncoder) -> None:
        super().__init__()
        if not isinstance(model, GRUEncoder):
            raise TypeError(f"GRUEmbedder wraps a GRUEncoder, got {type(model).__name__}")
        self.model: GRUEncoder = model

    @property
    def hparams(self) -> GRUHParams:
        """The spectrogram settings as the original's ``hparams`` object (attributes)."""
        mel = self.model.config.frontend
        return GRUHParams(
            filter_length=mel.n_fft,
            hop_length=mel.hop_length,
            win_length=mel.win_length,
            n_mel_channels=mel.n_mels,
            sampling_rate=mel.sample_rate,
            mel_fmin=mel.f_min,
            mel_fmax=mel.f_max,
        )

    def print_hparams(self) -> None:
        """Print :attr:`hparams` to stdout, one ``name : value`` per line (as the original)."""
        _print_mapping(dataclasses.asdict(self.hparams))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Embed log-mel spectrograms (moved to the model's device).

        Args:
            x: ``(B, frames, 80)`` log-mels, e.g. ``melspec_from_file(path)[None]``.
            lengths: ``(B,)`` valid frames per item of a padded batch; None: all valid.

        Returns:
            ``(B, 256)`` unit-length embeddings.
        """
        device = model_device(self.model)
        return self.model.encode(x.to(device), None if lengths is None else lengths.to(device))

    def melspec_from_array(self, x: np.ndarray | Tensor, sample_rate: int | None = None) -> Tensor:
        """Log-mel spectrogram of a mono waveform.

        Args:
            x: ``(samples,)`` waveform in [-1, 1] (numpy or torch; clamped to [-1, 1]).
            sample_rate: its rate in Hz, resampled to 22050 Hz when different; None: already
                at 22050 Hz.

        Returns:
            ``(frames, 80)`` float32 CPU tensor of natural-log mels (unscaled: the model scales).

        Raises:
            ValueError: ``x`` is not a 1-D finite waveform.
        """
        if isinstance(x, Tensor):
            x = x.detach().cpu().numpy()
        wav = io.check_waveform(np.asarray(x), "melspec_from_array input")
        frontend = self.model.frontend
        rate = frontend.sample_rate if sample_rate is None else sample_rate
        wav = np.clip(io.resample(wav, rate, frontend.sample_rate), -1.0, 1.0)
        wave = torch.from_numpy(wav)[None]
        feats, _ = frontend(wave, torch.tensor([wave.shape[1]]))
        return feats[0]

    def melspec_from_file(self, path: str | os.PathLike) -> Tensor:
        """Log-mel spectrogram ``(frames, 80)`` of an audio file (any rate, resampled).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            voxvec.audio.io.AudioError: the file cannot be decoded or holds no audio.
        """
        rate = self.model.sample_rate
        return self.melspec_from_array(io.load(path, rate), rate)


class ConvGRUEmbedder(nn.Module):
    """The original ``convgru_embedder`` module: 16 kHz waveforms in, speaker embeddings out.

    Args:
        model: the voxvec ConvGRU encoder it wraps (``self.model``).
    """

    def __init__(self, model: SpeakerEncoder) -> None:
        super().__init__()
        if not isinstance(model, ConvGRUEncoder):
            raise TypeError(f"ConvGRUEmbedder wraps a ConvGRUEncoder, got {type(model).__name__}")
        self.model: ConvGRUEncoder = model

    @property
    def hparams(self) -> dict[str, Any]:
        """The model's config fields."""
        return config_to_dict(self.model.config)

    def print_hparams(self) -> None:
        """Print :attr:`hparams` to stdout, one ``name : value`` per line."""
        _print_mapping(self.hparams)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Embed waveforms (clamped to [-1, 1] and moved to the model's device).

        Args:
            x: ``(B, samples)`` 16 kHz waveforms, at least 400 samples each.
            lengths: ``(B,)`` valid samples per item of a padded batch; None: all valid.

        Returns:
            ``(B, 256)`` unit-length embeddings.
        """
        device = model_device(self.model)
        x = x.to(device).clamp(-1.0, 1.0)
        return self.model(x, None if lengths is None else lengths.to(device))


def gru_embedder(
    pretrained: bool = True, progress: bool = True, normalize: bool = True, **kwargs: Any
) -> GRUEmbedder:
    """GRU embedder of the original project (VCTK, CommonVoice, LibriSpeech, VCC 2018).

    Input: log-mels ``(B, frames, 80)`` of 22.05 kHz audio (``model.melspec_from_file(path)``
    gives one ``(frames, 80)``); output: ``(B, 256)`` unit-length embeddings.

    Args:
        pretrained: load the released weights (``gru-rf5``, downloaded once).
        progress: show a progress bar while downloading.
        normalize: scale input log-mels inside the model (``(x + 5.76) / 5.76``); False when
            the inputs are already scaled.
        **kwargs: other :class:`~voxvec.models.gru.GRUConfig` fields (e.g. ``dropout``); ones
            that change parameter shapes cannot be combined with ``pretrained=True``. (The
            original passed these to its spectrogram loader instead.)

    Returns:
        A :class:`GRUEmbedder` in eval mode on the CPU.

    Raises:
        ValueError: an unknown config field, or one that does not fit the pretrained weights.
    """
    overrides = {"normalize": normalize, **kwargs}
    if not pretrained:
        return GRUEmbedder(create_model("gru", **overrides).eval())
    loaded, _ = load_model("gru-rf5", progress=progress)
    model = create_model("gru", loaded.config, **overrides)
    load_state_dict_strict(model, loaded.state_dict(), f"gru-rf5 with {overrides}")
    return GRUEmbedder(model.eval())


def _convgru(
    name: str, pretrained: bool, progress: bool, device: str | torch.device | None
) -> ConvGRUEmbedder:
    model = load_model(name, progress=progress)[0] if pretrained else create_model("convgru")
    return ConvGRUEmbedder(model).to(resolve_device(device)).eval()


def convgru_embedder(
    pretrained: bool = True, progress: bool = True, device: str | torch.device | None = None
) -> ConvGRUEmbedder:
    """ConvGRU embedder of the original project (VCTK, LibriSpeech, VoxCeleb 1 & 2).

    Input: 16 kHz waveforms ``(B, samples)`` in [-1, 1]; output: ``(B, 256)`` unit-length
    embeddings.

    Args:
        pretrained: load the released weights (``convgru-rf5``, downloaded once).
        progress: show a progress bar while downloading.
        device: where to put the model; None means CUDA when available, else CPU.

    Returns:
        A :class:`ConvGRUEmbedder` in eval mode on ``device``.
    """
    return _convgru("convgru-rf5", pretrained, progress, device)


def convgru_embedder_sc09(
    pretrained: bool = True, progress: bool = True, device: str | torch.device | None = None
) -> ConvGRUEmbedder:
    """ConvGRU embedder of the original project trained on Speech Commands digits (SC09).

    Input: 16 kHz waveforms ``(B, samples)`` in [-1, 1]; output: ``(B, 256)`` unit-length
    embeddings.

    Args:
        pretrained: load the released weights (``convgru-rf5-sc09``, downloaded once).
        progress: show a progress bar while downloading.
        device: where to put the model; None means CUDA when available, else CPU.

    Returns:
        A :class:`ConvGRUEmbedder` in eval mode on ``device``.
    """
    return _convgru("convgru-rf5-sc09", pretrained, progress, device)


def voxvec_default(
    pretrained: bool = True, device: str | torch.device | None = None, **embedder_kwargs: Any
) -> Embedder:
    """voxvec's default model (ECAPA-TDNN-lite, bundled, offline) behind the inference API.

    Unlike the original entry points this returns an :class:`~voxvec.inference.Embedder`, not a
    bare module: ``embedder.embed(paths_or_arrays, sample_rate=...)`` -> ``(N, 256)`` unit
    vectors, with resampling, log-mels, batching and long-audio windows handled;
    ``embedder.model`` is the ``(B, samples)`` 16 kHz waveform -> ``(B, 256)`` module (log-mels
    computed inside).

    Args:
        pretrained: load the bundled weights; False gives an untrained model of the same shape.
        device: where to run; None means CUDA when available, else CPU.
        **embedder_kwargs: :class:`~voxvec.inference.Embedder` options (``window_s``, ``hop_s``,
            ``vad``, ``min_speech_s``, ``precision``).

    Returns:
        An :class:`~voxvec.inference.Embedder`.
    """
    if pretrained:
        model, card = load_model(DEFAULT_MODEL)
    else:
        model, card = create_model("ecapa"), {}
    return Embedder(model, device=resolve_device(device), card=card, **embedder_kwargs)
