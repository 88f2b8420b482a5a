"""Generalized end-to-end (GE2E) loss for speaker verification (Wan et al., ICASSP 2018).

A batch holds N speakers with M utterances each, embedded as ``(N, M, D)``. Every embedding
``e_ji`` (speaker j, utterance i) is compared with every speaker centroid ``c_k`` by a scaled
cosine similarity ``S_ji,k = w * cos(e_ji, c_k) + b``. For its own speaker the centroid excludes
the utterance itself (``c_j^(-i)``, the mean of the other M - 1 utterances), as the paper
prescribes, so an utterance is never rewarded for being close to itself.

Two variants:

- ``"softmax"``: ``L_ji = -S_ji,j + log sum_k exp(S_ji,k)`` (cross entropy over speakers);
- ``"contrast"``: ``L_ji = 1 - sigmoid(S_ji,j) + max_{k != j} sigmoid(S_ji,k)``.

The loss is the mean of ``L_ji`` over all N x M embeddings (not a sum, so its scale does not
depend on the batch shape). The scale ``w`` is kept strictly positive by parametrising it as
``w = softplus(w_raw)``: a negative scale would invert the objective, and clamping the parameter
in place (as the original implementation tried) does not stop the optimiser from pushing it
through zero. ``b`` is learned freely.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GE2EMethod = Literal["softmax", "contrast"]
GE2E_METHODS: tuple[GE2EMethod, ...] = ("softmax", "contrast")

_EPS = 1e-8


def _inverse_softplus(y: float) -> float:
    """``x`` such that ``softplus(x) == y`` for ``y > 0``."""
    return y + math.log(-math.expm1(-y))


class GE2ELoss(nn.Module):
    """GE2E loss over a ``(N speakers, M utterances, D)`` batch of embeddings.

    Args:
        init_w: initial value of the similarity scale ``w`` (> 0); the paper uses 10.
        init_b: initial value of the similarity bias ``b``; the paper uses -5.
        method: ``"softmax"`` or ``"contrast"`` (see the module docstring).

    Attributes:
        w_raw: learned parameter with ``w = softplus(w_raw)``.
        b: learned bias, a scalar parameter.

    Raises:
        ValueError: ``init_w <= 0`` or an unknown ``method``.
    """

    def __init__(
        self, init_w: float = 10.0, init_b: float = -5.0, method: GE2EMethod = "softmax"
    ) -> None:
        super().__init__()
        if not init_w > 0:
            raise ValueError(f"init_w must be > 0 (w is kept positive), got {init_w}")
        if method not in GE2E_METHODS:
            raise ValueError(f"method must be one of {list(GE2E_METHODS)}, got {method!r}")
        self.method: GE2EMethod = method
        self.w_raw = nn.Parameter(torch.tensor(_inverse_softplus(float(init_w))))
        self.b = nn.Parameter(torch.tensor(float(init_b)))

    @property
    def w(self) -> Tensor:
        """The similarity scale ``softplus(w_raw)``, always > 0 (a 0-d tensor)."""
        return F.softplus(self.w_raw)

    def extra_repr(self) -> str:
        return f"method={self.method!r}"

    def similarity(self, embeddings: Tensor) -> Tensor:
        """Scaled cosine similarities of every embedding to every speaker centroid.

        Args:
            embeddings: ``(N, M, D)``, N >= 2 speakers with M >= 2 utterances each (need not be
                normalised).

        Returns:
            ``(N, M, N)`` float32 tensor ``S[j, i, k] = w * cos(e_ji, c_k) + b``, where ``c_j``
            for ``k == j`` excludes ``e_ji`` itself.

        Raises:
            ValueError: wrong rank, N < 2 or M < 2.
        """
        if embeddings.dim() != 3:
            raise ValueError(
                f"GE2E expects embeddings of shape (N speakers, M utterances, D), "
                f"got {tuple(embeddings.shape)}; reshape with emb.view(N, M, -1)"
            )
        n_speakers, n_utts, _ = embeddings.shape
        if n_speakers < 2 or n_utts < 2:
            raise ValueError(
                f"GE2E needs at least 2 speakers with at least 2 utterances each, "
                f"got N={n_speakers}, M={n_utts}"
            )
        # fp16/bf16 cosines near 1 lose the resolution the loss lives on: compute in float32.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            emb = embeddings.float()
            total = emb.sum(dim=1, keepdim=True)  # (N, 1, D)
            centroids = F.normalize(total.squeeze(1) / n_utts, dim=-1, eps=_EPS)  # (N, D)
            exclusive = F.normalize((total - emb) / (n_utts - 1), dim=-1, eps=_EPS)  # (N, M, D)
            unit = F.normalize(emb, dim=-1, eps=_EPS)  # (N, M, D)
            cos = torch.einsum("jid,kd->jik", unit, centroids)  # (N, M, N)
            cos_own = (unit * exclusive).sum(dim=-1)  # (N, M)
            own = torch.eye(n_speakers, dtype=torch.bool, device=emb.device)[:, None, :]
            cos = torch.where(own, cos_own[..., None], cos)  # (N, M, N)
            return self.w * cos + self.b

    def forward(self, embeddings: Tensor) -> Tensor:
        """The GE2E loss of one batch.

        Args:
            embeddings: ``(N, M, D)`` (N >= 2 speakers, M >= 2 utterances each).

        Returns:
            Scalar float32 tensor: the mean loss over the N x M embeddings.

        Raises:
            ValueError: see :meth:`similarity`.
        """
        sim = self.similarity(embeddings)  # (N, M, N)
        n_speakers, n_utts, _ = sim.shape
        if self.method == "softmax":
            logits = sim.reshape(n_speakers * n_utts, n_speakers)  # (N*M, N)
            target = torch.arange(n_speakers, device=sim.device).repeat_interleave(n_utts)
            return F.cross_entropy(logits, target)
        prob = torch.sigmoid(sim)  # (N, M, N)
        own = torch.eye(n_speakers, dtype=torch.bool, device=sim.device)[:, None, :]
        positive = prob.diagonal(dim1=0, dim2=2).T  # (N, M): prob[j, i, j]
        hardest_negative = prob.masked_fill(own, float("-inf")).amax(dim=-1)  # (N, M)
        return (1.0 - positive + hardest_negative).mean()
