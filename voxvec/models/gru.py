"""GRU speaker encoder on Tacotron log-mels: the original "simple speaker embeddings" GRU.

A 3-layer unidirectional GRU (hidden 768) reads 22.05 kHz Tacotron log-mels
(:data:`~voxvec.audio.features.TACOTRON_22K`); the output at each item's last valid frame goes
through a linear projection to 256 dimensions and is L2-normalised. The original took the last
frame of the padded batch; here each item's own last frame is used, so padding cannot change an
embedding.

Parameter names match the original release (``gru-wrapped-f1f850.pth`` holds this module's
state dict under the prefix ``model.``): ``rnn_stack.*`` (the ``nn.GRU``) and
``projection.*``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from voxvec.audio.features import TACOTRON_22K, MelConfig
from voxvec.models.base import SpeakerEncoder
from voxvec.models.layers import check_features
from voxvec.registry import register_model

MIN_LOG_VALUE = -11.52
"""The original's ``min_log_value``: input log-mels are scaled as ``(x - m / 2) / (-m / 2)``."""


@dataclass(frozen=True)
class GRUConfig:
    """Hyper-parameters of :class:`GRUEncoder`.

    Attributes:
        frontend: the log-mel front-end (``frontend.n_mels`` input bands), computed inside the
            model.
        hidden_size: GRU hidden units per layer.
        n_layers: stacked GRU layers.
        dropout: dropout between GRU layers (training only).
        embed_dim: output embedding size D.
        normalize: scale input log-mels as ``(x + 5.76) / 5.76`` (5.76 = -MIN_LOG_VALUE / 2),
            roughly to [-1, 1], before the GRU; False for inputs already scaled that way.
    """

    frontend: MelConfig = TACOTRON_22K
    hidden_size: int = 768
    n_layers: int = 3
    dropout: float = 0.3
    embed_dim: int = 256
    normalize: bool = True


@register_model("gru")
class GRUEncoder(SpeakerEncoder):
    """GRU speaker encoder: 22.05 kHz waveforms -> Tacotron log-mels -> ``(B, embed_dim)``.

    :meth:`encode` takes the log-mels directly (the original ``gru_embedder``'s input). With the
    default config: 9.24 M parameters.
    """

    config_class = GRUConfig
    config: GRUConfig

    def __init__(self, config: GRUConfig) -> None:
        super().__init__(config)
        self.rnn_stack = nn.GRU(
            config.frontend.n_mels,
            config.hidden_size,
            num_layers=config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        for name, param in self.rnn_stack.named_parameters():
            if name.startswith("bias"):
                nn.init.zeros_(param)
            else:
                nn.init.xavier_normal_(param)
        self.projection = nn.Linear(config.hidden_size, config.embed_dim)

    def encode(self, features: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Embed log-mels.

        Args:
            features: ``(B, n_frames, n_mels)`` natural-log mels of ``config.frontend`` (scaled by
                the model when ``config.normalize``).
            lengths: ``(B,)`` valid frames per item of a right-padded batch; None: all valid.

        Returns:
            ``(B, embed_dim)`` L2-normalised embeddings.

        Raises:
            ValueError: ``x`` is not ``(B, n_frames, n_mels)`` with ``n_mels`` of the config, or
                a length is outside ``[1, n_frames]``.
        """
        x = features
        x, lengths = check_features(
            x, lengths, self.config.frontend.n_mels, "GRUEncoder expects log-mels"
        )
        x = x.float()
        if self.config.normalize:
            half = -MIN_LOG_VALUE / 2
            x = (x + half) / half
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, h_n = self.rnn_stack(packed)  # h_n: (n_layers, B, hidden), at each item's last frame
        return F.normalize(self.projection(h_n[-1]), dim=-1)
