"""AAMSoftmax: known answers at margin 0, the ArcFace formula, numerical safety, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from voxvec.losses import AAMSoftmax


def manual_cosine(head: AAMSoftmax, emb: torch.Tensor) -> torch.Tensor:
    """(B, C): max over sub-centres of the cosine, computed independently."""
    c, k, d = head.weight.shape
    centres = head.weight.detach().reshape(c * k, d)
    cos = (emb / emb.norm(dim=1, keepdim=True)) @ (centres / centres.norm(dim=1, keepdim=True)).T
    return cos.view(-1, c, k).max(dim=2).values


@pytest.mark.parametrize("subcentres", [1, 3])
def test_margin_zero_is_scaled_cross_entropy(subcentres: int) -> None:
    torch.manual_seed(0)
    head = AAMSoftmax(16, 10, margin=0.0, scale=12.0, n_subcentres=subcentres)
    emb = torch.randn(32, 16)
    labels = torch.randint(0, 10, (32,))
    loss, acc = head(emb, labels)
    cos = manual_cosine(head, emb)
    assert loss.item() == pytest.approx(F.cross_entropy(12.0 * cos, labels).item(), rel=1e-5)
    assert acc.item() == pytest.approx((cos.argmax(1) == labels).float().mean().item())


def test_margin_matches_arcface_formula() -> None:
    torch.manual_seed(1)
    head = AAMSoftmax(8, 5, margin=0.3, scale=20.0)
    emb = torch.randn(16, 8)
    labels = torch.randint(0, 5, (16,))
    cos = manual_cosine(head, emb)
    theta = torch.acos(cos.gather(1, labels[:, None]).squeeze(1))
    assert (theta + 0.3 < math.pi).all()  # the fallback branch is not involved
    logits = cos.clone()
    logits[torch.arange(16), labels] = torch.cos(theta + 0.3)
    expected = F.cross_entropy(20.0 * logits, labels)
    loss, _ = head(emb, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_fallback_when_angle_plus_margin_exceeds_pi() -> None:
    head = AAMSoftmax(4, 2, margin=0.5, scale=1.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[[1.0, 0, 0, 0]], [[0, 1.0, 0, 0]]]))
    emb = torch.tensor([[-1.0, 0.01, 0, 0]])  # theta ~ pi to class 0
    loss, _ = head(emb, torch.tensor([0]))
    cos = manual_cosine(head, emb)[0]
    target = cos[0] - 0.5 * math.sin(0.5)  # monotonic fallback, not cos(theta + m)
    expected = F.cross_entropy(torch.stack([target, cos[1]])[None], torch.tensor([0]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    head.easy_margin = True
    loss_easy, _ = head(emb, torch.tensor([0]))  # easy margin: no margin where cos < 0
    assert loss_easy.item() == pytest.approx(
        F.cross_entropy(cos[None], torch.tensor([0])).item(), rel=1e-5
    )


def test_margin_is_settable_and_penalises() -> None:
    torch.manual_seed(2)
    head = AAMSoftmax(8, 4, margin=0.0)
    emb, labels = torch.randn(12, 8), torch.randint(0, 4, (12,))
    without, _ = head(emb, labels)
    head.margin = 0.3
    with_margin, _ = head(emb, labels)
    assert with_margin.item() > without.item()
    with pytest.raises(ValueError, match="margin"):
        head.margin = -0.1
    with pytest.raises(ValueError, match="margin"):
        head.margin = 2.0


@pytest.mark.parametrize("margin", [0.0, 0.2])
@pytest.mark.parametrize("easy", [False, True])
def test_identical_vectors_have_finite_gradients(margin: float, easy: bool) -> None:
    head = AAMSoftmax(4, 3, margin=margin, easy_margin=easy, n_subcentres=2)
    emb = head.weight.detach()[:, 0].clone().requires_grad_(True)  # each exactly on its class
    loss, acc = head(emb, torch.arange(3))
    loss.backward()
    assert torch.isfinite(loss)
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()
    assert acc.item() == 1.0


def test_learns_separable_toy_data() -> None:
    torch.manual_seed(3)
    n_classes, dim = 6, 16
    means = 3.0 * torch.randn(n_classes, dim)
    labels = torch.arange(n_classes).repeat_interleave(20)
    features = means[labels] + torch.randn(len(labels), dim)
    encoder = torch.nn.Linear(dim, 8)
    head = AAMSoftmax(8, n_classes, margin=0.2, scale=30.0, n_subcentres=2)
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-2)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss, acc = head(encoder(features), labels)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.2 * first
    assert acc.item() == 1.0


def test_subcentre_shapes_and_max_pooling() -> None:
    head = AAMSoftmax(8, 5, n_subcentres=3)
    assert head.weight.shape == (5, 3, 8)
    with torch.no_grad():
        emb = head.weight[2, 1][None].clone()  # on sub-centre 1 of class 2
    cos = head.cosine(emb)
    assert cos.shape == (1, 5)
    assert cos[0, 2].item() == pytest.approx(1.0, abs=1e-5)
    loss, acc = head(torch.randn(7, 8), torch.randint(0, 5, (7,)))
    assert loss.shape == () and acc.shape == ()


def test_half_precision_input() -> None:
    head = AAMSoftmax(8, 4)
    emb, labels = torch.randn(6, 8), torch.randint(0, 4, (6,))
    loss, _ = head(emb.bfloat16(), labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(head(emb.bfloat16().float(), labels)[0].item(), rel=1e-6)


def test_bad_input() -> None:
    head = AAMSoftmax(8, 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        head(torch.randn(2, 8), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="shape"):
        head(torch.randn(2, 8), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="embeddings"):
        head(torch.randn(2, 7), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="scale"):
        AAMSoftmax(8, 4, scale=0.0)
    with pytest.raises(ValueError, match="n_classes"):
        AAMSoftmax(8, 0)
