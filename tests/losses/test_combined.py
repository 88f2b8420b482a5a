"""The combined objective: SpeakerLoss built from a typed LossConfig."""

from __future__ import annotations

import pytest
import torch

from voxvec.losses.combined import AAMConfig, GE2EConfig, LossConfig, SpeakerLoss


def batch(n: int = 3, m: int = 4, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(n * m, d, generator=gen), dim=-1)
    return emb, torch.arange(n).repeat_interleave(m)


def test_ge2e_alone_is_the_ge2e_loss_of_the_n_by_m_batch():
    emb, labels = batch()
    loss = SpeakerLoss(LossConfig(ge2e=GE2EConfig(weight=5.0, init_w=3.0)), 8, 3)
    assert loss.aam is None and loss.ge2e is not None
    assert loss.ge2e.w.item() == pytest.approx(3.0)
    total, parts = loss(emb, labels, 3)
    assert set(parts) == {"ge2e"}
    # A weight only applies when both terms are trained.
    torch.testing.assert_close(total, loss.ge2e(emb.view(3, 4, 8)))


def test_both_terms_add_with_their_weights():
    emb, labels = batch()
    config = LossConfig(
        kind="ge2e+aam",
        ge2e=GE2EConfig(weight=0.5, method="contrast"),
        aam=AAMConfig(weight=2.0, margin=0.1, scale=20.0, subcentres=2),
    )
    loss = SpeakerLoss(config, 8, 3)
    assert loss.ge2e is not None and loss.ge2e.method == "contrast"
    assert loss.aam is not None and (loss.aam.margin, loss.aam.scale) == (0.1, 20.0)
    assert loss.aam.weight.shape == (3, 2, 8)
    total, parts = loss(emb, labels, 3)
    assert set(parts) == {"ge2e", "aam", "aam_accuracy"}
    torch.testing.assert_close(total, 0.5 * parts["ge2e"] + 2.0 * parts["aam"])
    total.backward()
    assert loss.aam.weight.grad is not None and loss.ge2e.b.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "triplet"}, "loss.kind must be one of"),
        ({"ge2e": GE2EConfig(method="cosine")}, "loss.ge2e.method"),
        ({"aam": AAMConfig(margin_warmup_pct=1.5)}, "margin_warmup_pct"),
    ],
)
def test_invalid_loss_configs_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossConfig(**kwargs)


def test_values_the_loss_modules_refuse_are_errors_when_built():
    with pytest.raises(ValueError, match="init_w"):
        SpeakerLoss(LossConfig(ge2e=GE2EConfig(init_w=0.0)), 8, 3)
    with pytest.raises(ValueError, match="scale"):
        SpeakerLoss(LossConfig(kind="aam", aam=AAMConfig(scale=0.0)), 8, 3)
