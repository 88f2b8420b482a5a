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


def test_training_mode_does_not_depend_on_how_far_a_batch_is_padded() -> None:
    """The batch norms' training statistics count valid frames only (they counted padding)."""
    models = [_small().train() for _ in range(2)]  # identical: both seeded
    torch.manual_seed(1)
    wav = 0.1 * torch.randn(3, 24000)
    lengths = torch.tensor([24000, 9000, 15000])
    wav[1, 9000:] = 0
    wav[2, 15000:] = 0
    feats, n_frames = log_mel(wav, LOGMEL_16K, lengths)
    wide = torch.nn.functional.pad(feats, (0, 0, 0, 120))  # 1.2 s more padding
    short, long = models[0].encode(feats, n_frames), models[1].encode(wide, n_frames)
    torch.testing.assert_close(short, long, atol=1e-5, rtol=0)
    for (name, a), (_, b) in zip(*(m.state_dict().items() for m in models), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)  # running statistics


def test_masked_batch_norm_is_batch_norm_of_the_valid_frames() -> None:
    from voxvec.models.layers import MaskedBatchNorm1d

    torch.manual_seed(0)
    x = torch.randn(2, 4, 10) * 3 + 1
    mask = (torch.arange(10)[None] < torch.tensor([[10], [6]])).float()[:, None]  # (2, 1, 10)
    masked, plain = MaskedBatchNorm1d(4), torch.nn.BatchNorm1d(4)
    valid = torch.cat([x[0], x[1, :, :6]], dim=1)[None]  # (1, 4, 16): the valid frames only
    out, expected = masked(x, mask), plain(valid)
    torch.testing.assert_close(torch.cat([out[0], out[1, :, :6]], dim=1)[None], expected)
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)
    masked.eval(), plain.eval()
    torch.testing.assert_close(masked(x, mask), plain(x))  # eval: running statistics, no mask
    assert masked.state_dict().keys() == plain.state_dict().keys()


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
