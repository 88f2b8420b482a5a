"""GE2ELoss against a slow loop implementation of the paper, and its learned scale."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from voxvec.losses import GE2ELoss


def reference_ge2e(emb: torch.Tensor, w: float, b: float, method: str) -> float:
    """Wan et al. 2018, eq. 5-9 written out with loops, in float64."""
    emb = emb.double()
    n_speakers, n_utts, _ = emb.shape

    def cos(x: torch.Tensor, y: torch.Tensor) -> float:
        return float(x @ y / (x.norm() * y.norm()))

    total = 0.0
    for j in range(n_speakers):
        for i in range(n_utts):
            sims = []
            for k in range(n_speakers):
                if k == j:
                    others = [emb[j, m] for m in range(n_utts) if m != i]
                    centroid = torch.stack(others).mean(0)
                else:
                    centroid = emb[k].mean(0)
                sims.append(w * cos(emb[j, i], centroid) + b)
            if method == "softmax":
                total += -sims[j] + math.log(sum(math.exp(s) for s in sims))
            else:

                def sig(s: float) -> float:
                    return 1.0 / (1.0 + math.exp(-s))

                negatives = [sig(sims[k]) for k in range(n_speakers) if k != j]
                total += 1.0 - sig(sims[j]) + max(negatives)
    return total / (n_speakers * n_utts)


@pytest.mark.parametrize("method", ["softmax", "contrast"])
@pytest.mark.parametrize(("n", "m"), [(2, 2), (4, 3), (5, 6)])
def test_matches_loop_reference(method: str, n: int, m: int) -> None:
    """Also checks the reduction: the reference averages over the N x M embeddings."""
    gen = torch.Generator().manual_seed(n * 10 + m)
    emb = torch.randn(n, m, 16, generator=gen) * 3.0  # deliberately not unit length
    loss_fn = GE2ELoss(init_w=7.5, init_b=-2.0, method=method)  # type: ignore[arg-type]
    got = loss_fn(emb).item()
    assert got == pytest.approx(reference_ge2e(emb, 7.5, -2.0, method), rel=1e-5, abs=1e-6)


def test_initial_parameters() -> None:
    loss_fn = GE2ELoss(init_w=10.0, init_b=-5.0)
    assert loss_fn.w.item() == pytest.approx(10.0, rel=1e-6)
    assert loss_fn.b.item() == pytest.approx(-5.0)
    assert {name for name, _ in loss_fn.named_parameters()} == {"w_raw", "b"}


def test_clustered_beats_random() -> None:
    gen = torch.Generator().manual_seed(2)
    centres = F.normalize(torch.randn(6, 1, 32, generator=gen), dim=-1)
    clustered = centres + 0.05 * torch.randn(6, 5, 32, generator=gen)
    random = torch.randn(6, 5, 32, generator=gen)
    for method in ("softmax", "contrast"):
        loss_fn = GE2ELoss(method=method)  # type: ignore[arg-type]
        assert loss_fn(clustered).item() < 0.1 * loss_fn(random).item()


@pytest.mark.parametrize("method", ["softmax", "contrast"])
def test_w_stays_positive_under_large_steps(method: str) -> None:
    """Every utterance is nearer the other speaker's centroid than its own: w is driven down."""
    u, v = torch.eye(8)[:2]
    emb = torch.stack([torch.stack([u, v]), torch.stack([u, v])])  # (2, 2, 8), both speakers alike
    loss_fn = GE2ELoss(init_w=10.0, init_b=-5.0, method=method)  # type: ignore[arg-type]
    opt = torch.optim.SGD([loss_fn.w_raw], lr=50.0)
    loss_fn(emb).backward()
    assert loss_fn.w_raw.grad is not None and float(loss_fn.w_raw.grad) > 0  # wants w smaller
    if method == "contrast":  # (softmax is invariant to b)
        assert loss_fn.b.grad is not None and float(loss_fn.b.grad) != 0.0
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(emb)
        loss.backward()
        opt.step()
        assert loss_fn.w.item() > 0.0
        assert torch.isfinite(loss)
    assert loss_fn.w.item() < 0.5  # it really was driven towards zero


def test_gradients_reach_embeddings_and_are_finite() -> None:
    emb = torch.randn(3, 4, 8, requires_grad=True)
    for method in ("softmax", "contrast"):
        emb.grad = None
        GE2ELoss(method=method)(emb).backward()  # type: ignore[arg-type]
        assert emb.grad is not None and torch.isfinite(emb.grad).all()
        assert emb.grad.abs().sum() > 0


def test_identical_embeddings_are_finite() -> None:
    emb = torch.ones(3, 2, 4, requires_grad=True)
    loss = GE2ELoss()(emb)
    loss.backward()
    assert torch.isfinite(loss) and emb.grad is not None and torch.isfinite(emb.grad).all()


def test_half_precision_input_computes_in_float32() -> None:
    emb = torch.randn(3, 4, 8).bfloat16()
    loss_fn = GE2ELoss()
    got = loss_fn(emb)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(loss_fn(emb.float()).item(), rel=1e-6)


def test_similarity_shape() -> None:
    sim = GE2ELoss().similarity(torch.randn(5, 3, 8))
    assert sim.shape == (5, 3, 5)


@pytest.mark.parametrize("shape", [(4, 8), (1, 3, 8), (3, 1, 8)])
def test_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="GE2E"):
        GE2ELoss()(torch.randn(*shape))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="init_w"):
        GE2ELoss(init_w=0.0)
    with pytest.raises(ValueError, match="method"):
        GE2ELoss(method="triplet")  # type: ignore[arg-type]
