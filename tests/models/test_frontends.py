"""Front-ends: what each computes, how many steps it gives, float32 under autocast."""

from __future__ import annotations

import pytest
import torch

from voxvec.audio.features import LOGMEL_16K, TACOTRON_22K, log_mel
from voxvec.models.frontends import LogMel, Waveform, WaveformConfig, create_frontend


@pytest.mark.parametrize("mel", [LOGMEL_16K, TACOTRON_22K], ids=["16k", "tacotron"])
def test_logmel_is_log_mel(mel) -> None:  # type: ignore[no-untyped-def]
    frontend = create_frontend(mel)
    assert isinstance(frontend, LogMel) and frontend.kind == "logmel"
    assert (frontend.sample_rate, frontend.min_samples) == (mel.sample_rate, mel.min_samples)
    wav = 0.1 * torch.randn(3, 9000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([9000, 4000, 6000])
    features, n_frames = frontend(wav, lengths)
    expected, expected_frames = log_mel(wav, mel, lengths)
    torch.testing.assert_close(features, expected, atol=0, rtol=0)
    assert torch.equal(n_frames, expected_frames)
    assert torch.equal(frontend.output_lengths(lengths), n_frames)


def test_waveform_is_the_samples_with_padding_zeroed() -> None:
    frontend = create_frontend(WaveformConfig(sample_rate=8000))
    assert isinstance(frontend, Waveform) and frontend.sample_rate == 8000
    wav = torch.ones(2, 5)
    features, n = frontend(wav, torch.tensor([5, 2]))
    assert features.tolist() == [[1.0] * 5, [1.0, 1.0, 0.0, 0.0, 0.0]]
    assert n.tolist() == [5, 2] and frontend.output_lengths(n).tolist() == [5, 2]
    with pytest.raises(ValueError, match="sample_rate must be positive"):
        WaveformConfig(sample_rate=0)


def test_front_ends_have_no_state_and_compute_in_float32_under_autocast() -> None:
    frontend = create_frontend(LOGMEL_16K)
    assert frontend.state_dict() == {} and list(frontend.parameters()) == []
    wav = 0.1 * torch.randn(1, 4000, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features, _ = frontend(wav.bfloat16(), torch.tensor([4000]))
    assert features.dtype == torch.float32


def test_unknown_config_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not the config of a registered front-end"):
        create_frontend({"n_mels": 80})
    with pytest.raises(TypeError, match="expects a MelConfig"):
        LogMel(WaveformConfig())
