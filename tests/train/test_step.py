"""Tests of voxvec.train.step: precision, the model + loss step, AdamW and its schedule."""

from __future__ import annotations

import pytest
import torch

from voxvec.losses.combined import LossConfig, SpeakerLoss
from voxvec.models import create_model
from voxvec.runtime import native_bfloat16
from voxvec.train.step import (
    OptimConfig,
    TrainStep,
    build_optimizer,
    param_groups,
    resolve_precision,
)

TINY = {"channels": 16, "res2_scale": 4, "se_channels": 8, "mfa_channels": 32,
        "attention_channels": 8, "embed_dim": 16}  # fmt: skip
CPU = torch.device("cpu")


def test_precision_words_and_auto():
    assert resolve_precision("float32", CPU) == "float32"
    assert resolve_precision("bfloat16", CPU) == "bfloat16"
    assert resolve_precision("auto", CPU) == ("bfloat16" if native_bfloat16(CPU) else "float32")
    with pytest.raises(ValueError, match="float16 needs a CUDA device"):
        resolve_precision("float16", CPU)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", CPU)


def _step(precision: str) -> tuple[TrainStep, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model("ecapa", TINY)
    step = TrainStep(model, SpeakerLoss(LossConfig(), 16, 2), precision).eval()
    gen = torch.Generator().manual_seed(1)
    wav = 0.1 * torch.randn(4, 8000, generator=gen)
    lengths = torch.tensor([8000, 7000, 8000, 6000])
    return step, wav, lengths, torch.tensor([0, 0, 1, 1])


def test_the_step_is_the_loss_of_the_models_embeddings_of_the_waveforms():
    step, wav, lengths, labels = _step("float32")
    loss, parts = step(wav, lengths, labels, 2)
    expected, _ = step.loss(step.model(wav, lengths), labels, 2)
    torch.testing.assert_close(loss, expected)
    assert loss.dtype == torch.float32 and set(parts) == {"ge2e"}


def test_bfloat16_autocast_stays_close_to_float32():
    step, wav, lengths, labels = _step("bfloat16")
    assert step.autocast_dtype == torch.bfloat16
    low, _ = step(wav, lengths, labels, 2)
    step.autocast_dtype = None
    full, _ = step(wav, lengths, labels, 2)
    assert low.dtype == torch.float32
    low, full = float(low.detach()), float(full.detach())
    assert low != full  # the forward really ran in bfloat16
    assert low == pytest.approx(full, rel=1e-2)  # measured: 1e-4 relative


def test_weight_decay_only_on_matrices_and_the_schedule_sets_the_rate():
    step, *_ = _step("float32")
    decay, no_decay = param_groups(step.model, step.loss, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["params"]
    assert all(p.ndim < 2 for p in no_decay["params"])
    assert any(p is step.loss.ge2e.b for p in no_decay["params"])
    config = OptimConfig(start_lr=1e-4, max_lr=1e-2, end_lr=0.0, warmup_pct=0.5)
    optimizer, scheduler = build_optimizer(config, 10, step.model, step.loss)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)
    assert optimizer.param_groups[0]["betas"] == config.betas


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schedule": "step"}, "optim.schedule"),
        ({"max_steps": 0}, "optim.max_steps"),
        ({"warmup_pct": 1.0}, "optim.warmup_pct"),
        ({"grad_clip": 0.0}, "optim.grad_clip"),
    ],
)
def test_invalid_optim_configs_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimConfig(**kwargs)
