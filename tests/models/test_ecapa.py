"""ECAPA-TDNN-lite: shapes, masking, SpecAugment only in training, config checks."""

from __future__ import annotations

import pytest
import torch

from voxvec.audio.features import LOGMEL_16K, log_mel
from voxvec.models import create_model
from voxvec.models.ecapa import ECAPA, ECAPAConfig


def _small() -> ECAPA:
    torch.manual_seed(0)
    model = create_model("ecapa", channels=64, se_channels=16, mfa_channels=96)
    assert isinstance(model, ECAPA)
    return model


def test_default_size_and_contract_attributes() -> None:
    model = create_model("ecapa")
    assert sum(p.numel() for p in model.parameters()) == 2_148_320
    assert model.frontend.kind == "logmel" and model.config.frontend == LOGMEL_16K
    assert model.sample_rate == 16000 and model.embed_dim == 256


def test_garbage_past_lengths_does_not_change_embeddings() -> None:
    model = _small().eval()
    torch.manual_seed(1)
    wav = 0.1 * torch.randn(2, 24000)
    lengths = torch.tensor([24000, 7000])
    feats, n_frames = log_mel(wav, LOGMEL_16K, lengths)
    noisy = feats.clone()
    noisy[1, int(n_frames[1]) :] = 50.0 * torch.randn_like(noisy[1, int(n_frames[1]) :])
    with torch.inference_mode():
        clean = model.encode(feats, n_frames)
        dirty = model.encode(noisy, n_frames)
        alone = model.encode(*log_mel(wav[1, :7000], LOGMEL_16K))
    torch.testing.assert_close(clean, dirty, atol=1e-5, rtol=0)
    torch.testing.assert_close(clean[1], alone[0], atol=1e-5, rtol=0)


def test_stem_stride_halves_the_frame_rate() -> None:
    model = _small()
    lengths = torch.tensor([1, 2, 3, 100, 101])
    assert model._stem_lengths(lengths).tolist() == [1, 1, 2, 50, 51]


def test_spec_augment_only_in_training_mode() -> None:
    torch.manual_seed(0)
    model = create_model(
        "ecapa",
        channels=64,
        se_channels=16,
        mfa_channels=96,
        freq_mask_bins=20,
        time_mask_frames=30,
    )
    feats, n_frames = log_mel(0.1 * torch.randn(4, 32000), LOGMEL_16K)
    masked = model._spec_augment(feats + 5.0, n_frames)
    zero_bands = (masked == 0).all(dim=1).any(dim=-1)  # a whole band zeroed, per item
    zero_frames = (masked == 0).all(dim=2).any(dim=-1)  # a whole frame zeroed, per item
    assert bool(zero_bands.any()) and bool(zero_frames.any())
    model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(model.encode(feats, n_frames), model.encode(feats, n_frames))
    model.train()
    torch.manual_seed(3)
    a = model.encode(feats, n_frames)
    torch.manual_seed(4)
    b = model.encode(feats, n_frames)
    assert not torch.allclose(a, b)


def test_rejects_wrong_band_count_and_bad_config() -> None:
    model = _small().eval()
    with pytest.raises(ValueError, match=r"\(B, n_frames, 80\)"):
        model.encode(torch.zeros(1, 50, 40))
    with pytest.raises(ValueError, match="divisible"):
        ECAPAConfig(channels=100, res2_scale=8)
