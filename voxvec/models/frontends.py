"""Front-ends: the first stage of every model, from a waveform batch to the features it encodes.

A :class:`Frontend` is a small module, registered by name (``@register_frontend``) with its frozen
config dataclass; a model's config names it in its ``frontend`` field, serialised with the kind
under ``"type"`` (see :mod:`voxvec.config`). Each front-end declares the waveform it takes
(:attr:`~Frontend.sample_rate`, :attr:`~Frontend.min_samples`) and how many feature steps it
gives (:meth:`~Frontend.output_lengths`), and computes in float32 whatever autocast is active.
Padding never changes an item's valid feature steps.

Registered here:

- ``"logmel"`` (config :class:`~voxvec.audio.features.MelConfig`): log-mel spectrograms
  ``(B, n_frames, n_mels)`` (:func:`voxvec.audio.features.log_mel`); the presets
  :data:`~voxvec.audio.features.TACOTRON_22K` (the original GRU's) and
  :data:`~voxvec.audio.features.LOGMEL_16K` (voxvec's default model's).
- ``"waveform"`` (config :class:`WaveformConfig`): the waveform itself, ``(B, T)``, for models
  that learn their own filters.
- ``"kaldi_fbank"`` (config :class:`~voxvec.audio.kaldi.KaldiFbankConfig`): Kaldi-compatible log
  mel filterbanks ``(B, n_frames, n_mels)`` (:func:`voxvec.audio.kaldi.kaldi_fbank`), the input of
  models trained with Kaldi, 3D-Speaker or WeSpeaker recipes; preset
  :data:`~voxvec.audio.kaldi.KALDI_FBANK_80` (3D-Speaker's CAM++).

A front-end has no parameters and no persistent buffers, so it never appears in a state dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from voxvec import registry
from voxvec.audio.features import MelConfig, frame_lengths, log_mel
from voxvec.audio.kaldi import KaldiFbankConfig, fbank_frame_lengths, kaldi_fbank


class Frontend(nn.Module):
    """Base class of front-ends: ``(wav (B, T), lengths (B,) samples) -> (features, n_steps)``.

    Subclasses set ``config_class`` and define :attr:`min_samples`, :meth:`output_lengths` and
    :meth:`compute`. ``kind`` is set by :func:`voxvec.registry.register_frontend`.

    Args:
        config: an instance of ``config_class``.
    """

    config_class: ClassVar[type]
    kind: ClassVar[str] = ""

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} expects a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config: Any = config

    @property
    def sample_rate(self) -> int:
        """Sample rate in Hz of the waveforms it takes."""
        return int(self.config.sample_rate)

    @property
    def min_samples(self) -> int:
        """Fewest samples whose features carry information (at least one feature step)."""
        raise NotImplementedError

    def output_lengths(self, n_samples: Tensor) -> Tensor:
        """Feature steps for waveforms of ``n_samples`` (LongTensor, same shape)."""
        raise NotImplementedError

    def compute(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The features of a float32 batch (see :meth:`forward`)."""
        raise NotImplementedError

    def forward(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Features of a right-padded waveform batch, in float32 even under autocast.

        Args:
            wav: ``(B, T)`` waveforms at :attr:`sample_rate`.
            lengths: ``(B,)`` LongTensor of valid samples, each at least :attr:`min_samples`.

        Returns:
            ``(features, n_steps)``: ``(B, S, ...)`` features (zero past each item's steps) and
            ``(B,)`` LongTensor of valid steps.
        """
        with torch.autocast(wav.device.type, enabled=False):
            return self.compute(wav.float(), lengths)


def create_frontend(config: Any) -> Frontend:
    """The front-end of kind ``config`` belongs to (a registered front-end's config instance).

    Raises:
        TypeError: ``config`` is not the config of a registered front-end.
    """
    kind = registry.frontend_kind_of_config(type(config))
    if kind is None:
        raise TypeError(
            f"{type(config).__name__} is not the config of a registered front-end; "
            f"registered: {registry.registered_frontends()}"
        )
    return registry.get_frontend_class(kind)(config)


class _Filterbank(Frontend):
    """A spectral front-end: frames of a config with ``min_samples`` and ``n_mels``."""

    @property
    def min_samples(self) -> int:
        """Fewest samples that give the config's ``min_frames`` frames (two when the features
        are mean-normalised, as a single frame normalises to all zeros)."""
        return int(self.config.min_samples)

    @property
    def n_mels(self) -> int:
        """Feature size: mel bands per frame."""
        return int(self.config.n_mels)


@registry.register_frontend("logmel")
class LogMel(_Filterbank):
    """Log-mel spectrograms ``(B, n_frames, n_mels)`` (:func:`voxvec.audio.features.log_mel`)."""

    config_class = MelConfig
    config: MelConfig

    def output_lengths(self, n_samples: Tensor) -> Tensor:
        """Frames for waveforms of ``n_samples``."""
        return frame_lengths(n_samples, self.config)

    def compute(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, n_frames, n_mels)`` log-mels and ``(B,)`` frame counts."""
        return log_mel(wav, self.config, lengths)


@dataclass(frozen=True)
class WaveformConfig:
    """The ``"waveform"`` front-end: the samples themselves.

    Attributes:
        sample_rate: rate in Hz of the waveforms the model takes.
    """

    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")


@registry.register_frontend("waveform")
class Waveform(Frontend):
    """The identity front-end: ``(B, T)`` samples, ``lengths`` unchanged."""

    config_class = WaveformConfig
    config: WaveformConfig

    @property
    def min_samples(self) -> int:
        """One sample (the model may need more: see its ``min_samples``)."""
        return 1

    def output_lengths(self, n_samples: Tensor) -> Tensor:
        """The sample counts themselves."""
        return n_samples

    def compute(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The waveforms, zero past each item's length, and ``lengths``."""
        valid = torch.arange(wav.shape[1], device=wav.device)[None] < lengths[:, None]
        return wav * valid, lengths


@registry.register_frontend("kaldi_fbank")
class KaldiFbank(_Filterbank):
    """Kaldi log mel filterbanks ``(B, n_frames, n_mels)`` (see :mod:`voxvec.audio.kaldi`)."""

    config_class = KaldiFbankConfig
    config: KaldiFbankConfig

    def output_lengths(self, n_samples: Tensor) -> Tensor:
        """Frames for waveforms of ``n_samples``."""
        return fbank_frame_lengths(n_samples, self.config)

    def compute(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, n_frames, n_mels)`` filterbanks and ``(B,)`` frame counts."""
        return kaldi_fbank(wav, self.config, lengths)
