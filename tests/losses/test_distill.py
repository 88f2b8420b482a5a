"""The distillation loss: projected cosine distance and batch similarity-matrix matching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from voxvec.losses.combined import LossConfig, SpeakerLoss
from voxvec.losses.distill import DistillLoss


def _embeddings(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_the_cosine_term_is_zero_when_the_projection_maps_student_onto_teacher():
    student = _embeddings(6, 8, 0)
    loss = DistillLoss(8, 8, cosine_weight=2.0, similarity_weight=0.0)
    with torch.no_grad():
        loss.projection.weight.copy_(torch.eye(8))
    total, parts = loss(student, 3.0 * student)  # the teacher's scale does not matter
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    assert parts["distill_cosine"].item() == pytest.approx(1.0)
    total, parts = loss(student, -student)
    assert total.item() == pytest.approx(2.0 * 2.0) and set(parts) == {"distill_cosine"}


def test_the_similarity_term_compares_pairwise_similarities_without_projection():
    student, other = _embeddings(5, 8, 0), _embeddings(5, 12, 1)
    loss = DistillLoss(8, 12, cosine_weight=0.0, similarity_weight=1.0)
    rotation = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(2)))[0]
    same_geometry = torch.cat([student @ rotation, torch.zeros(5, 4)], dim=1)  # another space
    total, _ = loss(student, same_geometry)
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    # The scores' scale and offset do not matter (a margin loss calibrates them differently),
    # only which pairs are more alike: the term is 1 - the correlation of the pair scores.
    off = ~torch.eye(5, dtype=torch.bool)
    total, parts = loss(student, other)
    expected = 1 - np.corrcoef((student @ student.T)[off], (other @ other.T)[off])[0, 1]
    assert total.item() == pytest.approx(expected, abs=1e-5)
    assert set(parts) == {"distill_similarity"}
    flipped, _ = loss(student, -other)  # the same similarity matrix
    torch.testing.assert_close(flipped, total)


def test_the_projection_starts_at_the_least_squares_map():
    student = _embeddings(64, 8, 0)
    rotation = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(3)))[0]
    teacher = 2.0 * student @ rotation.T  # unit rows up to scale: a linear target
    loss = DistillLoss(8, 8, cosine_weight=1.0, similarity_weight=0.0)
    assert loss(student, teacher)[0].item() > 0.5  # a random projection
    cosine = loss.fit_projection(student, teacher, ridge=1e-8)
    assert cosine == pytest.approx(1.0, abs=1e-4)
    assert loss(student, teacher)[0].item() == pytest.approx(0.0, abs=1e-4)
    masked = teacher.clone()
    masked[5:] = 0  # rows without targets are left out of the fit
    assert loss.fit_projection(student, masked, ridge=1e-8) == pytest.approx(1.0, abs=1e-4)


def test_rows_without_a_teacher_embedding_are_left_out():
    student, teacher = _embeddings(4, 8, 0), _embeddings(4, 6, 1)
    loss = DistillLoss(8, 6, cosine_weight=1.0, similarity_weight=1.0)
    masked = teacher.clone()
    masked[2] = 0
    keep = torch.tensor([0, 1, 3])
    torch.testing.assert_close(loss(student, masked)[0], loss(student[keep], teacher[keep])[0])
    total, parts = loss(student, torch.zeros(4, 6))
    assert total.item() == 0.0 and set(parts) == {"distill_cosine", "distill_similarity"}


def test_the_projection_learns_from_the_loss():
    student, teacher = _embeddings(16, 8, 0), _embeddings(16, 6, 1)
    loss = DistillLoss(8, 6, cosine_weight=1.0, similarity_weight=0.0)
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.05)
    first = loss(student, teacher)[0].item()
    for _ in range(100):
        optimizer.zero_grad()
        loss(student, teacher)[0].backward()
        optimizer.step()
    assert loss(student, teacher)[0].item() < 0.5 * first


@pytest.mark.parametrize("weights", [(-1.0, 1.0), (1.0, -0.5), (0.0, 0.0)])
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError, match="distillation weights"):
        DistillLoss(8, 6, *weights)


def test_speaker_loss_adds_the_distillation_term_and_needs_a_teacher():
    emb, labels = _embeddings(6, 8, 0), torch.arange(3).repeat_interleave(2)
    distill = DistillLoss(8, 6, cosine_weight=1.0, similarity_weight=0.0)
    loss = SpeakerLoss(LossConfig(kind="aam"), 8, 3, distill)
    teacher = _embeddings(6, 6, 1)
    total, parts = loss(emb, labels, 3, teacher)
    assert {"aam", "aam_accuracy", "distill", "distill_cosine"} == set(parts)
    torch.testing.assert_close(total, parts["aam"] + parts["distill"])
    with pytest.raises(ValueError, match="no teacher"):
        loss(emb, labels, 3)
