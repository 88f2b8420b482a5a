"""The GRU encoder: the original's computation, its input scaling, lengths and errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from voxvec.audio.features import TACOTRON_22K
from voxvec.models import create_model
from voxvec.models.gru import MIN_LOG_VALUE, GRUConfig, GRUEncoder
from voxvec.registry import get_model_class


class OriginalGRU(nn.Module):
    """The original GRU embedder's computation, written from its description.

    Scale log-mels by the wrapper's ``(x + 5.76) / 5.76``, run the GRU stack, take the output
    at the last frame of the (unpadded) batch, project, divide by the L2 norm.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rnn_stack = nn.GRU(80, 768, num_layers=3, batch_first=True, dropout=0.3)
        self.projection = nn.Linear(768, 256)

    def forward(self, x: Tensor) -> Tensor:
        half = -MIN_LOG_VALUE / 2
        out, _ = self.rnn_stack((x + half) / half)
        emb = self.projection(out[:, -1])
        return emb / emb.norm(dim=1, keepdim=True)


def log_mels(batch: int, n_frames: int, seed: int) -> Tensor:
    """Random log-mels in the range of real ones (floor -11.5, peaks around 0)."""
    gen = torch.Generator().manual_seed(seed)
    return (-6.0 + 2.5 * torch.randn(batch, n_frames, 80, generator=gen)).clamp(min=-11.5129)


@pytest.fixture(scope="module")
def original() -> OriginalGRU:
    torch.manual_seed(1)
    return OriginalGRU().eval()


@pytest.fixture(scope="module")
def model(original: OriginalGRU) -> GRUEncoder:
    encoder = create_model("gru").eval()
    encoder.load_state_dict(original.state_dict(), strict=True)
    assert isinstance(encoder, GRUEncoder)
    return encoder


def test_registered_with_the_original_shape() -> None:
    assert get_model_class("gru") is GRUEncoder
    config = GRUConfig()
    assert config.frontend == TACOTRON_22K
    assert (config.hidden_size, config.n_layers, config.dropout, config.embed_dim) == (
        768,
        3,
        0.3,
        256,
    )
    model = GRUEncoder(config)
    assert model.frontend.kind == "logmel" and model.sample_rate == 22050
    assert sum(p.numel() for p in model.parameters()) == 9_242_368


def test_parameter_names_are_the_originals(original: OriginalGRU, model: GRUEncoder) -> None:
    assert list(model.state_dict()) == list(original.state_dict())


def test_matches_the_original_on_unpadded_input(original: OriginalGRU, model: GRUEncoder) -> None:
    x = log_mels(3, 57, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x), original(x), atol=1e-5, rtol=0)


def test_normalize_false_takes_prescaled_input(model: GRUEncoder) -> None:
    raw = create_model("gru", normalize=False).eval()
    raw.load_state_dict(model.state_dict())
    x = log_mels(2, 40, seed=1)
    half = -MIN_LOG_VALUE / 2
    with torch.no_grad():
        torch.testing.assert_close(raw.encode((x + half) / half), model.encode(x))
        assert not torch.allclose(raw.encode(x), model.encode(x), atol=1e-3)


def test_uses_each_items_last_valid_frame(original: OriginalGRU, model: GRUEncoder) -> None:
    x = log_mels(2, 60, seed=2)
    lengths = torch.tensor([60, 23])
    padded = x.clone()
    padded[1, 23:] = 100.0  # garbage after the end of item 1
    with torch.no_grad():
        emb = model.encode(padded, lengths)
        torch.testing.assert_close(emb[1:], original(x[1:, :23]), atol=1e-5, rtol=0)
        torch.testing.assert_close(emb[:1], original(x[:1]), atol=1e-5, rtol=0)


def test_wrong_number_of_mels_is_an_error(model: GRUEncoder) -> None:
    with pytest.raises(ValueError, match=r"\(B, n_frames, 80\)"):
        model.encode(torch.zeros(1, 10, 40))


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        (torch.tensor([10, 0]), r"\[1, 10\]"),
        (torch.tensor([10, 11]), r"\[1, 10\]"),
        (torch.tensor([10]), r"shape \(2,\)"),
        (torch.tensor([10.0, 5.0]), "integers"),
    ],
)
def test_bad_lengths_are_errors(model: GRUEncoder, lengths: Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.encode(torch.zeros(2, 10, 80), lengths)


def test_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = create_model("gru")
    x = log_mels(2, 30, seed=3)
    model.train()
    assert not torch.allclose(model.encode(x), model.encode(x))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x), model.encode(x), atol=0, rtol=0)
