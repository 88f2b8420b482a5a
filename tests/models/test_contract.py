"""The encoder contract, checked for every registered architecture (default configs, eval mode)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from voxvec.audio.features import log_mel
from voxvec.models.base import SpeakerEncoder
from voxvec.registry import create_model, list_models

DURATIONS_S = (0.4, 0.25, 0.55)


@pytest.fixture(scope="module", params=list_models())
def model(request: pytest.FixtureRequest) -> SpeakerEncoder:
    torch.manual_seed(0)
    return create_model(request.param).eval()


def make_batch(model: SpeakerEncoder, n_samples: list[int], seed: int) -> tuple[Tensor, Tensor]:
    """Random speech-level noise as the model's input kind: ``(x, lengths)``, right-padded.

    Padding holds large random values (not zeros), so any leak of padding shows.
    """
    gen = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(n_samples), max(n_samples))
    for i, n in enumerate(n_samples):
        wav[i, :n] = 0.1 * torch.randn(n, generator=gen)
    lengths = torch.tensor(n_samples)
    if model.input_kind == "logmel":
        mel = model.mel_config
        assert mel is not None
        x, lengths = log_mel(wav, mel, lengths)
    else:
        x = wav
    pad = torch.arange(x.shape[1])[None] >= lengths[:, None]  # (B, T)
    junk = 5.0 * torch.randn(x.shape, generator=gen)
    pad = pad.reshape(pad.shape + (1,) * (x.dim() - 2))
    return torch.where(pad, junk, x), lengths


def samples(model: SpeakerEncoder, seconds: float) -> int:
    return max(int(seconds * model.sample_rate), model.min_samples)


def test_declares_its_interface(model: SpeakerEncoder) -> None:
    assert model.input_kind in ("waveform", "logmel")
    assert model.sample_rate > 0 and model.embed_dim > 0 and model.min_samples >= 1
    if model.input_kind == "logmel":
        assert model.mel_config is not None
        assert model.mel_config.sample_rate == model.sample_rate


def test_outputs_unit_vectors(model: SpeakerEncoder) -> None:
    x, lengths = make_batch(model, [samples(model, d) for d in DURATIONS_S], seed=1)
    with torch.no_grad():
        emb = model(x, lengths)
    assert emb.shape == (len(DURATIONS_S), model.embed_dim)
    assert emb.dtype == torch.float32
    assert torch.isfinite(emb).all()
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(DURATIONS_S)))


def test_padding_does_not_change_embeddings(model: SpeakerEncoder) -> None:
    n_samples = [samples(model, d) for d in DURATIONS_S]
    x, lengths = make_batch(model, n_samples, seed=2)
    with torch.no_grad():
        batched = model(x, lengths)
        for i in range(len(n_samples)):
            alone = model(x[i : i + 1, : int(lengths[i])])
            torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-4, rtol=0)


def test_lengths_none_means_full_length(model: SpeakerEncoder) -> None:
    n = samples(model, 0.3)
    x, lengths = make_batch(model, [n, n], seed=3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x, lengths))


def test_deterministic_in_eval_mode(model: SpeakerEncoder) -> None:
    x, lengths = make_batch(model, [samples(model, d) for d in DURATIONS_S[:2]], seed=4)
    with torch.no_grad():
        torch.testing.assert_close(model(x, lengths), model(x, lengths), atol=0, rtol=0)


def test_different_inputs_give_different_embeddings(model: SpeakerEncoder) -> None:
    n = samples(model, 0.3)
    x, _ = make_batch(model, [n, n], seed=5)
    with torch.no_grad():
        emb = model(x)
    assert not torch.allclose(emb[0], emb[1], atol=1e-3)


def test_rejects_wrong_input_rank(model: SpeakerEncoder) -> None:
    x, _ = make_batch(model, [samples(model, 0.3)], seed=6)
    with pytest.raises(ValueError, match="shape"):
        model(x[0])
    with pytest.raises(ValueError, match="shape"):
        model(x[None])
