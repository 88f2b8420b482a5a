"""Knowledge distillation: pull the student's embeddings toward a teacher's speaker space.

:class:`DistillLoss` compares a batch of student embeddings with the teacher's embeddings of the
same crops in two ways, each weighted (0 turns it off):

- ``cosine``: the mean cosine distance ``1 - cos(P s, t)`` between the teacher's embedding ``t``
  and the student's ``s`` mapped into the teacher's space by a learned linear projection ``P``
  (the two spaces need not have the same size or orientation; ``P`` is trained with the loss
  and is not part of the exported model);
- ``similarity``: one minus the correlation between the student's and the teacher's cosine
  similarities of every pair of the batch (off the diagonal): the student learns which pairs the
  teacher finds more alike than others, with no projection and whatever the two models' score
  scales (the teacher's different-speaker pairs sit near 0.2, a margin-trained student's near 0;
  matching the raw values would fight the margin loss).

:meth:`DistillLoss.fit_projection` starts ``P`` at the least-squares map from a sample of the
student's embeddings to the teacher's, so the cosine term's first gradients are meaningful
instead of flowing through a random projection into a pretrained student.

Rows whose teacher embedding is all zeros have no target and are left out (a crop the teacher
could not embed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DistillLoss(nn.Module):
    """Distillation loss of student embeddings against teacher embeddings.

    Args:
        embed_dim: the student's embedding size.
        teacher_dim: the teacher's embedding size.
        cosine_weight: weight of the projected cosine distance (>= 0).
        similarity_weight: weight of the similarity-matrix term (>= 0).

    Raises:
        ValueError: a negative weight, or both weights 0.
    """

    def __init__(
        self, embed_dim: int, teacher_dim: int, cosine_weight: float, similarity_weight: float
    ) -> None:
        super().__init__()
        if cosine_weight < 0 or similarity_weight < 0 or cosine_weight + similarity_weight == 0:
            raise ValueError(
                "distillation weights must be >= 0 and not both 0, got cosine_weight="
                f"{cosine_weight}, similarity_weight={similarity_weight}"
            )
        self.projection = nn.Linear(embed_dim, teacher_dim, bias=False)
        self.cosine_weight = cosine_weight
        self.similarity_weight = similarity_weight

    def forward(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted loss and its detached parts.

        Args:
            student: ``(B, D)`` student embeddings (float32).
            teacher: ``(B, D_t)`` teacher embeddings of the same crops; all-zero rows have none.

        Returns:
            ``(loss, parts)``: ``parts`` holds ``distill_cosine`` (the mean cosine similarity
            of the projected student to the teacher, higher is closer) when its weight is
            set, ``distill_similarity`` (one minus the similarity correlation) when its weight
            is set; 0 for a batch without (enough) targets.
        """
        valid = teacher.abs().sum(dim=1) > 0
        s, t = student[valid], F.normalize(teacher[valid].float(), dim=1)
        total = student.new_zeros(())
        parts: dict[str, Tensor] = {}
        if self.cosine_weight > 0:
            cos = student.new_zeros(())
            if s.shape[0] > 0:
                cos = F.cosine_similarity(self.projection(s), t, dim=1).mean()
                total = total + self.cosine_weight * (1 - cos)
            parts["distill_cosine"] = cos.detach()
        if self.similarity_weight > 0:
            error = student.new_zeros(())
            if s.shape[0] > 2:
                sn = F.normalize(s, dim=1)
                off = ~torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
                error = 1 - _correlation((sn @ sn.T)[off], (t @ t.T)[off])
                total = total + self.similarity_weight * error
            parts["distill_similarity"] = error.detach()
        return total, parts

    @torch.no_grad()
    def fit_projection(self, student: Tensor, teacher: Tensor, ridge: float = 1e-3) -> float:
        """Set the projection to the ridge least-squares map from ``student`` to ``teacher``.

        Args:
            student: ``(S, D)`` student embeddings of some crops.
            teacher: ``(S, D_t)`` the teacher's embeddings of them (all-zero rows are left out).
            ridge: the ridge penalty, relative to the mean eigenvalue of ``student``'s Gram
                matrix.

        Returns:
            The mean cosine similarity of the projected ``student`` to ``teacher`` after it.
        """
        valid = teacher.abs().sum(dim=1) > 0
        x = student[valid].double()
        y = F.normalize(teacher[valid].double(), dim=1)
        gram = x.T @ x
        penalty = ridge * gram.diagonal().mean() * torch.eye(x.shape[1], dtype=x.dtype)
        weight = torch.linalg.solve(gram + penalty, x.T @ y).T  # (D_t, D)
        self.projection.weight.copy_(weight.to(self.projection.weight))
        return float(F.cosine_similarity(self.projection(student[valid]), y.float(), dim=1).mean())


def _correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of two 1-D tensors (0 when either is constant)."""
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12)
