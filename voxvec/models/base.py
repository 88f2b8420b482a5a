"""The encoder contract every voxvec model follows.

A :class:`SpeakerEncoder` maps a batch of waveforms to L2-normalised embeddings:

- ``model(wav, lengths)``: ``wav`` is ``(B, T)`` float32 mono in [-1, 1] at :attr:`sample_rate`;
  ``lengths`` is a ``(B,)`` integer tensor of valid samples per item of a right-padded batch
  (None: every item is ``T`` long). Returns ``(B, embed_dim)`` unit vectors.
- Padding never changes an embedding: a padded batch gives what each item gives alone.
- The model owns its front-end (``self.frontend``, named by the config's ``frontend`` field, see
  :mod:`voxvec.models.frontends`), computed in float32 even under autocast; the architecture
  itself implements :meth:`SpeakerEncoder.encode` on the front-end's features.
- The input is checked once, here, for every model: a wrong shape or dtype, or lengths that are
  not integers in ``[min_samples, T]``, raise a :class:`ValueError` saying what is valid.

Models are built on the CPU from their frozen config dataclass (``config_class``), with no
randomness beyond PyTorch's default parameter initialisation and no device logic; the caller
moves them. They know nothing about files, training or N x M batches.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from voxvec.models.frontends import Frontend, create_frontend
from voxvec.models.layers import resolve_lengths


class SpeakerEncoder(nn.Module):
    """Base class of all registered models (see the module docstring for the contract).

    Subclasses set ``config_class`` (a frozen dataclass with a ``frontend`` field and an
    ``embed_dim`` field), call ``super().__init__(config)`` and define :meth:`encode`. ``arch``
    is set by :func:`voxvec.registry.register_model`.

    Attributes:
        config: the model's config.
        frontend: the front-end module built from ``config.frontend``.
    """

    config_class: ClassVar[type[Any]]
    arch: ClassVar[str] = ""
    supports_bfloat16: ClassVar[bool] = True
    """False for architectures that compute in float32 whatever autocast asks (their bfloat16
    embeddings would drift beyond voxvec's tolerance): inference then reports float32."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} expects a {self.config_class.__name__}, "
                f"got {type(config)!r}"
            )
        self.config: Any = config
        self.frontend: Frontend = create_frontend(self.config.frontend)

    @property
    def sample_rate(self) -> int:
        """Sample rate in Hz of the waveforms the model takes."""
        return self.frontend.sample_rate

    @property
    def embed_dim(self) -> int:
        """Size D of the output embeddings."""
        return int(self.config.embed_dim)

    @property
    def min_samples(self) -> int:
        """Fewest waveform samples (at :attr:`sample_rate`) the model can embed."""
        return self.frontend.min_samples

    def check_input(self, wav: Tensor, lengths: Tensor | None) -> Tensor:
        """Validate a waveform batch and return its lengths as a ``(B,)`` LongTensor.

        Raises:
            ValueError: ``wav`` is not a ``(B, T)`` floating tensor, or ``lengths`` is not a
                ``(B,)`` integer tensor with values in ``[min_samples, T]``.
        """
        if wav.dim() != 2 or not wav.dtype.is_floating_point:
            raise ValueError(
                f"{type(self).__name__} expects a float waveform batch (B, T) at "
                f"{self.sample_rate} Hz, got shape {tuple(wav.shape)} dtype {wav.dtype}"
            )
        batch, total = wav.shape
        return resolve_lengths(
            lengths, batch, total, wav.device, min_len=self.min_samples, unit="samples"
        )

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Embed a waveform batch.

        Args:
            wav: ``(B, T)`` float waveforms at :attr:`sample_rate`, in [-1, 1].
            lengths: ``(B,)`` valid samples per item of a right-padded batch; None: all valid.

        Returns:
            ``(B, embed_dim)`` L2-normalised embeddings.

        Raises:
            ValueError: see :meth:`check_input`.
        """
        lengths = self.check_input(wav, lengths)
        features, n_steps = self.frontend(wav, lengths)
        return self.encode(features, n_steps)

    def encode(self, features: Tensor, lengths: Tensor) -> Tensor:  # pragma: no cover
        """Embed front-end features (``(B, S, ...)`` with ``(B,)`` valid steps) -> ``(B, D)``."""
        raise NotImplementedError


def length_mask(lengths: Tensor | None, batch: int, max_len: int, device: torch.device) -> Tensor:
    """``(B, max_len)`` bool mask, True on valid steps; all True when ``lengths`` is None."""
    if lengths is None:
        return torch.ones(batch, max_len, dtype=torch.bool, device=device)
    return torch.arange(max_len, device=device)[None] < lengths.to(device)[:, None]
