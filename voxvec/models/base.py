"""The encoder contract every voxvec model follows.

A :class:`SpeakerEncoder` maps a batch of inputs to L2-normalised embeddings ``(B, embed_dim)``:

- ``input_kind == "waveform"``: ``x`` is ``(B, T)`` float32 mono in [-1, 1] at ``sample_rate``,
  ``lengths`` counts samples.
- ``input_kind == "logmel"``: ``x`` is ``(B, n_frames, n_mels)`` computed with ``mel_config``
  (see :func:`voxvec.audio.features.log_mel`), ``lengths`` counts frames.

``lengths`` is a ``(B,)`` LongTensor for right-padded batches; None means every item is full
length. Padding never changes an embedding: a padded batch gives what each item gives alone.

Models are built on the CPU from their frozen config dataclass (``config_class``), with no
randomness beyond PyTorch's default parameter initialisation and no device logic; the caller
moves them. They know nothing about files, training or N x M batches.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from voxvec.audio.features import MelConfig, frame_lengths

InputKind = Literal["waveform", "logmel"]


class SpeakerEncoder(nn.Module):
    """Base class of all registered models (see the module docstring for the contract).

    Subclasses set ``config_class`` and, in ``__init__``, call ``super().__init__(config)`` and
    define :meth:`forward`. ``arch`` is set by :func:`voxvec.registry.register_model`.
    """

    config_class: ClassVar[type]
    arch: ClassVar[str] = ""
    input_kind: ClassVar[InputKind]

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} expects a {self.config_class.__name__}, "
                f"got {type(config)!r}"
            )
        self.config: Any = config

    @property
    def sample_rate(self) -> int:
        """Sample rate in Hz of the waveform the model (or its front-end) expects."""
        mel = self.mel_config
        if mel is not None:
            return mel.sample_rate
        return int(self.config.sample_rate)

    @property
    def mel_config(self) -> MelConfig | None:
        """The log-mel definition for ``input_kind == "logmel"`` models, else None."""
        return getattr(self.config, "mel", None)

    @property
    def embed_dim(self) -> int:
        """Size D of the output embeddings."""
        return int(self.config.embed_dim)

    @property
    def min_samples(self) -> int:
        """Fewest waveform samples (at ``sample_rate``) the model can embed."""
        mel = self.mel_config
        return mel.min_samples if mel is not None else 1

    def input_lengths(self, n_samples: Tensor) -> Tensor:
        """Lengths in the model's input units (samples or frames) for waveforms of ``n_samples``."""
        mel = self.mel_config
        return frame_lengths(n_samples, mel) if mel is not None else n_samples

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:  # pragma: no cover
        """Embed a batch: ``x`` as in the module docstring -> ``(B, embed_dim)`` unit vectors."""
        raise NotImplementedError


def length_mask(lengths: Tensor | None, batch: int, max_len: int, device: torch.device) -> Tensor:
    """``(B, max_len)`` bool mask, True on valid steps; all True when ``lengths`` is None."""
    if lengths is None:
        return torch.ones(batch, max_len, dtype=torch.bool, device=device)
    return torch.arange(max_len, device=device)[None] < lengths.to(device)[:, None]
