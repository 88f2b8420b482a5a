"""The ConvGRU encoder: frame counts, masked GroupNorm, padding, and the original's computation."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from voxvec.models import create_model
from voxvec.models.convgru import (
    DEFAULT_CONV_LAYERS,
    ConvGRUConfig,
    ConvGRUEncoder,
    MaskedGroupNorm,
)
from voxvec.registry import get_model_class


class OriginalConvGRU(nn.Module):
    """The original ConvGRU's computation, written from its description.

    Convolutions with a plain ``nn.GroupNorm(512, 512)`` after the first, frame lengths
    ``floor((L - 400) / 320) + 1``, a packed bidirectional GRU, the forward output at the last
    valid frame ++ the backward output at frame 0, a linear head, divided by the L2 norm.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv_encoder = nn.Module()
        self.conv_encoder.conv_layers = nn.ModuleList()
        n_in = 1
        for i, (channels, kernel, stride) in enumerate(DEFAULT_CONV_LAYERS):
            layers: list[nn.Module] = [
                nn.Conv1d(n_in, channels, kernel, stride=stride, bias=False),
                nn.Dropout(0.0),
            ]
            if i == 0:
                layers.append(nn.GroupNorm(channels, channels))
            layers.append(nn.GELU())
            self.conv_encoder.conv_layers.append(nn.Sequential(*layers))
            n_in = channels
        self.rnn = nn.GRU(512, 768, 3, batch_first=True, dropout=0.3, bidirectional=True)
        self.head = nn.Linear(1536, 256)

    def forward(self, x: Tensor, n_samples: Tensor) -> Tensor:
        h = x[:, None]
        for block in self.conv_encoder.conv_layers:
            h = block(h)
        h = h.transpose(1, 2)
        lengths = torch.div(n_samples - 400, 320, rounding_mode="floor") + 1
        packed = nn.utils.rnn.pack_padded_sequence(
            h, lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])
        pooled = torch.cat([out[torch.arange(len(out)), lengths - 1, :768], out[:, 0, 768:]], 1)
        emb = self.head(pooled)
        return emb / emb.norm(dim=1, keepdim=True)


def waves(batch: int, n_samples: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, n_samples, generator=gen)


@pytest.fixture(scope="module")
def original() -> OriginalConvGRU:
    torch.manual_seed(2)
    model = OriginalConvGRU().eval()
    with torch.no_grad():  # a non-trivial norm affine, as a trained model has
        norm = model.conv_encoder.conv_layers[0][2]
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(scope="module")
def model(original: OriginalConvGRU) -> ConvGRUEncoder:
    encoder = create_model("convgru").eval()
    encoder.load_state_dict(original.state_dict(), strict=True)
    assert isinstance(encoder, ConvGRUEncoder)
    return encoder


def test_registered_with_the_original_shape() -> None:
    assert get_model_class("convgru") is ConvGRUEncoder
    model = ConvGRUEncoder(ConvGRUConfig())
    assert model.frontend.kind == "waveform" and model.sample_rate == 16000
    assert model.embed_dim == 256 and model.min_samples == 400
    assert sum(p.numel() for p in model.parameters()) == 31_753_472
    convs = [m for m in model.conv_encoder.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == list(
        DEFAULT_CONV_LAYERS
    )
    assert all(c.bias is None for c in convs)


def test_parameter_names_are_the_originals(
    original: OriginalConvGRU, model: ConvGRUEncoder
) -> None:
    assert list(model.state_dict()) == list(original.state_dict())
    assert "conv_encoder.conv_layers.0.2.weight" in model.state_dict()


def test_frame_count_formula(model: ConvGRUEncoder) -> None:
    n_samples = torch.arange(400, 200_000)
    expected = torch.div(n_samples - 400, 320, rounding_mode="floor") + 1
    torch.testing.assert_close(model.frame_lengths(n_samples), expected)
    for n in (400, 719, 720, 4321):
        with torch.no_grad():
            frames, n_frames = model.conv_encoder(waves(1, n, seed=n), torch.tensor([n]))
        assert frames.shape == (1, int(expected[n - 400]), 512)
        assert int(n_frames[0]) == frames.shape[1]


def test_too_short_input_is_an_error(model: ConvGRUEncoder) -> None:
    with pytest.raises(ValueError, match=r"\[400, 399\]|minimum 400"):
        model(waves(1, 399, seed=0))
    with pytest.raises(ValueError, match=r"\[400, 1000\]"):
        model(waves(2, 1000, seed=0), torch.tensor([1000, 300]))


def test_masked_group_norm_equals_group_norm_on_valid_frames() -> None:
    torch.manual_seed(0)
    masked, plain = MaskedGroupNorm(8, 16), nn.GroupNorm(8, 16)
    with torch.no_grad():
        masked.weight.uniform_(0.5, 1.5)
        masked.bias.uniform_(-1, 1)
    plain.load_state_dict(masked.state_dict())
    x = torch.randn(3, 16, 50) * 3 + 1
    torch.testing.assert_close(masked(x), plain(x))
    torch.testing.assert_close(masked(x, torch.ones(3, 50, dtype=torch.bool)), plain(x))
    lengths = [50, 20, 7]
    mask = torch.arange(50)[None] < torch.tensor(lengths)[:, None]
    out = masked(x, mask)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(out[i : i + 1, :, :n], plain(x[i : i + 1, :, :n]))


def test_padded_conv_frames_match_unpadded(model: ConvGRUEncoder) -> None:
    x = waves(2, 9000, seed=1)
    x[1, 3000:] = 0.9  # loud padding after item 1's end
    with torch.no_grad():
        frames, n_frames = model.conv_encoder(x, torch.tensor([9000, 3000]))
        alone, n_alone = model.conv_encoder(x[1:, :3000], torch.tensor([3000]))
    assert int(n_frames[1]) == int(n_alone[0]) == alone.shape[1]
    torch.testing.assert_close(frames[1:, : alone.shape[1]], alone, atol=1e-5, rtol=0)


def test_matches_the_original_on_unpadded_input(
    original: OriginalConvGRU, model: ConvGRUEncoder
) -> None:
    x = waves(2, 6000, seed=2)
    with torch.no_grad():
        expected = original(x, torch.tensor([6000, 6000]))
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)


def test_padding_no_longer_leaks_through_the_norm(
    original: OriginalConvGRU, model: ConvGRUEncoder
) -> None:
    x = waves(2, 8000, seed=3)
    x[1, 4000:] = 0.5 * torch.randn(4000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([8000, 4000])
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, lengths)[1:], original(x[1:, :4000], lengths[1:]), atol=1e-5, rtol=0
        )
        # The original's GroupNorm statistics include the padding: its valid frames change.
        first_block = original.conv_encoder.conv_layers[0]
        n_valid = (4000 - 10) // 5 + 1
        leaked = first_block(x[1:, None])[..., :n_valid]
        alone = first_block(x[1:, None, :4000])
        assert (leaked - alone).abs().max() > 0.1
