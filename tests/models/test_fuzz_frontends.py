"""Property-based tests of the front-ends and of the lengths every model takes.

For any batch shape, lengths and padding content, and any audio level (silence, a whisper,
clipping), each front-end gives finite float32 features, zero past each item's steps, with its
valid steps equal to those of the item computed alone. Too-short lengths are a ValueError; any
other malformed ``lengths`` is refused by the model (:meth:`SpeakerEncoder.check_input`, the one
place the contract says lengths are checked) with a ValueError, never another exception or a
silently wrong embedding. ``-m slow`` runs many more examples.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from voxvec.audio.features import LOGMEL_16K, TACOTRON_22K
from voxvec.audio.kaldi import KALDI_FBANK_80
from voxvec.models import SpeakerEncoder, create_model, list_models
from voxvec.models.frontends import Frontend, WaveformConfig, create_frontend

CONFIGS = {
    "logmel-16k": LOGMEL_16K,
    "logmel-16k-centred": replace(LOGMEL_16K, center=True, normalize="none", preemphasis=0.0),
    "tacotron": TACOTRON_22K,
    "tacotron-mean": replace(TACOTRON_22K, normalize="mean", preemphasis=0.97),
    "kaldi-80": KALDI_FBANK_80,
    "kaldi-raw": replace(KALDI_FBANK_80, mean_normalize=False, round_to_power_of_two=False),
    "waveform": WaveformConfig(sample_rate=16000),
}
FRONTENDS = {name: create_frontend(config) for name, config in CONFIGS.items()}
MAX_SAMPLES = 12_000

DEFAULT = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(DEFAULT, max_examples=500)


@st.composite
def signals(draw: st.DrawFn, n: int) -> torch.Tensor:
    """``(n,)`` audio of any level: silence, a whisper, speech-like noise, a tone, clipping."""
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["silence", "noise", "tone", "clipped", "dc", "impulse"]))
    level = draw(st.sampled_from([1e-9, 1e-4, 0.05, 0.5, 1.0]))
    if kind == "silence":
        return torch.zeros(n)
    if kind == "noise":
        return level * torch.randn(n, generator=gen).clamp(-1 / level, 1 / level)
    if kind == "tone":
        hz = draw(st.floats(20, 7900))
        return level * torch.sin(2 * torch.pi * hz * torch.arange(n) / 16000)
    if kind == "clipped":
        return (10 * torch.randn(n, generator=gen)).clamp(-1, 1)
    if kind == "dc":
        return torch.full((n,), level)
    wave = torch.zeros(n)
    wave[draw(st.integers(0, n - 1))] = 1.0
    return wave


@st.composite
def padded_batches(draw: st.DrawFn, frontend: Frontend) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T)`` right-padded waveforms and their ``(B,)`` lengths, each >= min_samples; the
    padding is zeros, a constant or loud noise (so anything leaking from it shows)."""
    low = frontend.min_samples
    lengths = draw(st.lists(st.integers(low, MAX_SAMPLES), min_size=1, max_size=4))
    total = max(lengths) + draw(st.sampled_from([0, 0, 1, 160, 2000]))
    pad = draw(st.sampled_from(["zeros", "ones", "loud"]))
    gen = torch.Generator().manual_seed(len(lengths) * total)
    wav = {
        "zeros": torch.zeros(len(lengths), total),
        "ones": torch.ones(len(lengths), total),
        "loud": 5.0 * torch.randn(len(lengths), total, generator=gen),
    }[pad]
    for i, n in enumerate(lengths):
        wav[i, :n] = draw(signals(n))
    return wav, torch.tensor(lengths)


def check_padded_equals_alone(frontend: Frontend, wav: torch.Tensor, lengths: torch.Tensor) -> None:
    features, n_steps = frontend(wav, lengths)
    assert features.dtype == torch.float32 and torch.isfinite(features).all()
    assert features.shape[0] == len(lengths) and features.shape[1] >= int(n_steps.max())
    assert torch.equal(n_steps, frontend.output_lengths(lengths))
    for i, n in enumerate(lengths.tolist()):
        alone, alone_steps = frontend(wav[i : i + 1, :n], torch.tensor([n]))
        steps = int(n_steps[i])
        assert int(alone_steps[0]) == steps >= 1
        torch.testing.assert_close(features[i, :steps], alone[0], atol=1e-4, rtol=1e-5)
        assert not features[i, steps:].any(), "features past an item's steps must be zero"


@pytest.mark.parametrize("name", sorted(FRONTENDS))
@DEFAULT
@given(data=st.data())
def test_padded_items_equal_unpadded_and_are_finite(name: str, data: st.DataObject) -> None:
    frontend = FRONTENDS[name]
    wav, lengths = data.draw(padded_batches(frontend))
    check_padded_equals_alone(frontend, wav, lengths)


@pytest.mark.parametrize("name", sorted(set(FRONTENDS) - {"waveform"}))
@DEFAULT
@given(data=st.data())
def test_too_short_lengths_are_a_value_error(name: str, data: st.DataObject) -> None:
    frontend = FRONTENDS[name]
    wav, lengths = data.draw(padded_batches(frontend))
    i = data.draw(st.integers(0, len(lengths) - 1))
    lengths[i] = data.draw(st.integers(-(2**40), frontend.min_samples - 1))
    with pytest.raises(ValueError, match=rf"input of {int(lengths[i])} samples is shorter"):
        frontend(wav, lengths)
    with pytest.raises(ValueError, match="shorter than (one analysis window|2 analysis frames)"):
        frontend(wav[:1, : frontend.min_samples - 1], torch.tensor([frontend.min_samples - 1]))


@pytest.mark.parametrize("name", sorted(set(FRONTENDS) - {"waveform"}))
def test_shortest_input_gives_two_frames_when_mean_normalised(name: str) -> None:
    config = CONFIGS[name]
    normalised = getattr(config, "normalize", "none") == "mean" or getattr(
        config, "mean_normalize", False
    )
    frontend = FRONTENDS[name]
    n_frames = int(frontend.output_lengths(torch.tensor(frontend.min_samples)))
    assert n_frames >= (2 if normalised else 1)


MODELS = {name: create_model(name).eval() for name in list_models()}


@st.composite
def any_lengths(draw: st.DrawFn, batch: int, total: int) -> torch.Tensor:
    """Lengths as a caller might get them wrong: any shape, integer or float dtype, any value
    (valid ones included)."""
    shape = draw(st.sampled_from([(batch,), (batch,), (), (batch, 1), (batch + 1,), (0,)]))
    dtype = draw(st.sampled_from([torch.long, torch.int32, torch.int16, torch.float32, torch.bool]))
    values = st.sampled_from([0, 1, -1, total, total + 1, total // 2, 2**31]) | st.integers(
        -(2**31), 2**31
    )
    n = int(torch.Size(shape).numel())
    flat = torch.tensor(draw(st.lists(values, min_size=n, max_size=n)), dtype=torch.long)
    if dtype == torch.bool:
        return (flat > 0).reshape(shape)
    info = torch.iinfo(dtype) if not dtype.is_floating_point else None
    if info is not None:
        flat = flat.clamp(info.min, info.max)
    return flat.to(dtype).reshape(shape)


@pytest.mark.parametrize("arch", sorted(MODELS))
@DEFAULT
@given(data=st.data())
def test_models_take_valid_lengths_and_refuse_the_rest_with_a_value_error(
    arch: str, data: st.DataObject
) -> None:
    model: SpeakerEncoder = MODELS[arch]
    batch = data.draw(st.integers(1, 3))
    total = data.draw(st.integers(model.min_samples, model.min_samples + 4000))
    wav = 0.1 * torch.randn(batch, total, generator=torch.Generator().manual_seed(total))
    lengths = data.draw(any_lengths(batch, total))
    valid = (
        lengths.shape == (batch,)
        and not lengths.dtype.is_floating_point
        and lengths.dtype != torch.bool
        and bool(((lengths >= model.min_samples) & (lengths <= total)).all())
    )
    event("valid" if valid else "refused")
    with torch.no_grad():
        if not valid:
            with pytest.raises(ValueError, match="lengths must"):
                model(wav, lengths)
            return
        emb = model(wav, lengths)
    assert emb.shape == (batch, model.embed_dim) and torch.isfinite(emb).all()
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(batch))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FRONTENDS))
@MANY
@given(data=st.data())
def test_many_padded_batches(name: str, data: st.DataObject) -> None:
    frontend = FRONTENDS[name]
    wav, lengths = data.draw(padded_batches(frontend))
    check_padded_equals_alone(frontend, wav, lengths)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_shortest_inputs_give_unit_embeddings_that_depend_on_the_input(arch: str) -> None:
    model = MODELS[arch]
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(2, model.min_samples, generator=gen) * torch.tensor([[0.1], [0.3]])
    with torch.no_grad():
        emb = model(wav)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    assert float(emb[0] @ emb[1]) < 0.999
