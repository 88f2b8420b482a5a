"""Tests of voxvec.train.validation: EER and GE2E loss on the fixed validation files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxvec.eval.metrics import eer
from voxvec.losses.combined import LossConfig, SpeakerLoss
from voxvec.models import create_model
from voxvec.runtime import embed_waveforms
from voxvec.train.step import TrainStep
from voxvec.train.validation import ValidationConfig, Validator

TINY = {"channels": 16, "res2_scale": 4, "se_channels": 8, "mfa_channels": 32,
        "attention_channels": 8, "embed_dim": 16}  # fmt: skip


def _step(kind: str) -> TrainStep:
    torch.manual_seed(0)
    model = create_model("ecapa", TINY)
    return TrainStep(model, SpeakerLoss(LossConfig(kind=kind), 16, 8), "float32").train()


def test_validation_scores_the_fixed_files(synthetic_corpus):
    config = ValidationConfig(csv=str(synthetic_corpus[1]), n_speakers=3, n_utterances=4)
    validator = Validator(config, seed=0, train_speakers={"nobody"})
    step = _step("ge2e")
    result = validator.run(step, batch_size=5)
    assert step.training  # back in train mode
    assert result.embeddings.shape == (12, 16) and len(result.names) == 12
    assert sorted(np.bincount(result.labels).tolist()) == [4, 4, 4]
    # The EER over all pairs of the files, the GE2E loss of the (3 speakers, 4 files) batch.
    emb, labels = result.embeddings, result.labels
    i, j = np.triu_indices(len(labels), k=1)
    pair_eer = eer((emb[i] * emb[j]).sum(1).numpy(), labels[i] == labels[j])[0]
    assert result.values["validation/eer"] == pytest.approx(pair_eer)
    grouped = torch.stack([emb[labels == k] for k in range(3)])  # (3, 4, 16)
    with torch.no_grad():
        expected_ge2e = float(step.loss.ge2e(grouped))
    assert result.values["validation/ge2e_loss"] == pytest.approx(expected_ge2e, rel=1e-5)
    # The batched validation embeddings are those of the primitive (one batch, any order).
    step.eval()
    alone = embed_waveforms(step.model, validator.data(step.model).waves, batch_size=1)
    torch.testing.assert_close(result.embeddings, alone, atol=1e-5, rtol=1e-4)


def test_no_ge2e_term_no_ge2e_loss(synthetic_corpus):
    config = ValidationConfig(csv=str(synthetic_corpus[1]), n_speakers=2, n_utterances=2)
    result = Validator(config, seed=0).run(_step("aam"), batch_size=4)
    assert set(result.values) == {"validation/eer"}


def test_invalid_validation_configs():
    with pytest.raises(ValueError, match="validation.interval"):
        ValidationConfig(interval=0)
    with pytest.raises(ValueError, match="validation.max_s"):
        ValidationConfig(max_s=0.0)
    with pytest.raises(ValueError, match="validation.csv is not set"):
        Validator(ValidationConfig(), seed=0)
