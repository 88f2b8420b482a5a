"""The encoder contract, checked for every registered architecture (default configs, eval mode).

Every model takes a waveform batch ``(B, T)`` with sample ``lengths`` (its front-end inside) and
returns ``(B, D)`` unit vectors; padding never changes an embedding; bad input is refused with a
clear error, checked once in the base class.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from voxvec import registry
from voxvec.models import SpeakerEncoder, create_model, list_models

DURATIONS_S = (0.4, 0.25, 0.55)


@pytest.fixture(scope="module", params=list_models())
def model(request: pytest.FixtureRequest) -> SpeakerEncoder:
    torch.manual_seed(0)
    return create_model(request.param).eval()


def make_batch(n_samples: list[int], seed: int) -> tuple[Tensor, Tensor]:
    """Random speech-level noise, right-padded with large random values (so any leak shows)."""
    gen = torch.Generator().manual_seed(seed)
    wav = 5.0 * torch.randn(len(n_samples), max(n_samples), generator=gen)
    for i, n in enumerate(n_samples):
        wav[i, :n] = 0.1 * torch.randn(n, generator=gen)
    return wav, torch.tensor(n_samples)


def samples(model: SpeakerEncoder, seconds: float) -> int:
    return max(int(seconds * model.sample_rate), model.min_samples)


def test_declares_its_interface(model: SpeakerEncoder) -> None:
    assert model.sample_rate == model.frontend.sample_rate > 0
    assert model.embed_dim > 0 and model.min_samples >= model.frontend.min_samples >= 1
    # The front-end is the registered one its config names, built from that config.
    assert type(model.frontend) is registry.get_frontend_class(model.frontend.kind)
    assert model.frontend.config is model.config.frontend
    # The front-end holds no weights: state dicts are those of the architecture alone.
    assert not any(key.startswith("frontend.") for key in model.state_dict())


def test_outputs_unit_vectors(model: SpeakerEncoder) -> None:
    x, lengths = make_batch([samples(model, d) for d in DURATIONS_S], seed=1)
    with torch.no_grad():
        emb = model(x, lengths)
    assert emb.shape == (len(DURATIONS_S), model.embed_dim)
    assert emb.dtype == torch.float32
    assert torch.isfinite(emb).all()
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(DURATIONS_S)))


def test_padding_does_not_change_embeddings(model: SpeakerEncoder) -> None:
    n_samples = [samples(model, d) for d in DURATIONS_S]
    x, lengths = make_batch(n_samples, seed=2)
    with torch.no_grad():
        batched = model(x, lengths)
        for i in range(len(n_samples)):
            alone = model(x[i : i + 1, : int(lengths[i])])
            torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-4, rtol=0)


def test_front_end_stays_float32_under_autocast(model: SpeakerEncoder) -> None:
    x, lengths = make_batch([samples(model, 0.3)], seed=7)
    features, _ = model.frontend(x, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_features, _ = model.frontend(x, lengths)
    assert autocast_features.dtype == torch.float32
    torch.testing.assert_close(autocast_features, features, atol=0, rtol=0)


def test_lengths_none_means_full_length(model: SpeakerEncoder) -> None:
    n = samples(model, 0.3)
    x, lengths = make_batch([n, n], seed=3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x, lengths))


def test_deterministic_in_eval_mode(model: SpeakerEncoder) -> None:
    x, lengths = make_batch([samples(model, d) for d in DURATIONS_S[:2]], seed=4)
    with torch.no_grad():
        torch.testing.assert_close(model(x, lengths), model(x, lengths), atol=0, rtol=0)


def test_different_inputs_give_different_embeddings(model: SpeakerEncoder) -> None:
    n = samples(model, 0.3)
    x, _ = make_batch([n, n], seed=5)
    with torch.no_grad():
        emb = model(x)
    assert not torch.allclose(emb[0], emb[1], atol=1e-3)


def test_rejects_wrong_input_rank_and_dtype(model: SpeakerEncoder) -> None:
    x, _ = make_batch([samples(model, 0.3)], seed=6)
    for bad in (x[0], x[None], (x * 1000).long()):
        with pytest.raises(ValueError, match=r"waveform batch \(B, T\)"):
            model(bad)


@pytest.mark.parametrize(
    "lengths",
    [
        pytest.param(lambda n, m: torch.tensor([0, n]), id="zero"),
        pytest.param(lambda n, m: torch.tensor([m - 1, n]), id="below-minimum"),
        pytest.param(lambda n, m: torch.tensor([n + 1, n]), id="past-the-end"),
        pytest.param(lambda n, m: torch.tensor([-5, n]), id="negative"),
        pytest.param(lambda n, m: torch.tensor([n, n], dtype=torch.float32), id="float"),
        pytest.param(lambda n, m: torch.tensor([n]), id="wrong-shape"),
        pytest.param(lambda n, m: torch.tensor([[n, n]]), id="2-d"),
    ],
)
def test_bad_lengths_raise(model: SpeakerEncoder, lengths) -> None:  # type: ignore[no-untyped-def]
    n = samples(model, 0.3)
    x, _ = make_batch([n, n], seed=8)
    with pytest.raises(ValueError, match="lengths must"):
        model(x, lengths(n, model.min_samples))


def test_too_short_input_raises(model: SpeakerEncoder) -> None:
    x = torch.zeros(1, model.min_samples - 1)
    with pytest.raises(ValueError, match=f"lengths must lie in \\[{model.min_samples}, "):
        model(x)
