"""Speed perturbation: the one function, the augmenter using it, speed-as-new-speaker data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voxvec.data.augment import AugmentConfig, Augmenter
from voxvec.data.dataset import UtteranceDataset
from voxvec.data.manifest import ManifestItem
from voxvec.data.speed import SpeedSpeakerDataset, check_speed_factors, speed_perturb

SR = 16000


def tone(freq: float, seconds: float) -> torch.Tensor:
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    return (0.5 * torch.sin(2 * torch.pi * freq * t)).float()


def peak_hz(wav: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(wav.numpy()))
    return float(np.argmax(spectrum) * SR / wav.shape[0])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_changes_tempo_and_pitch_together(factor):
    wav = tone(200.0, 1.0)
    out = speed_perturb(wav, factor, SR)
    assert out.dtype == torch.float32 and abs(out.shape[0] - SR / factor) <= 1
    assert peak_hz(out) == pytest.approx(200.0 * factor, abs=2.0)


def test_speed_perturb_leaves_unit_speed_and_empty_input_alone():
    wav = tone(200.0, 0.1)
    assert speed_perturb(wav, 1.0, SR) is wav
    assert speed_perturb(wav, 1.0 + 1e-6, SR) is wav  # the same sample rate after rounding
    empty = torch.zeros(0)
    assert speed_perturb(empty, 1.1, SR) is empty
    with pytest.raises(ValueError, match="speed factor must be > 0"):
        speed_perturb(wav, 0.0, SR)


def test_the_augmenter_speeds_items_up_with_the_same_function():
    wav = torch.stack([tone(200.0, 0.5), tone(300.0, 0.5)])
    lengths = torch.tensor([8000, 6000])
    augmenter = Augmenter(AugmentConfig(speed_prob=1.0, speeds=(1.1,)), SR)
    result = augmenter.augment(wav, lengths, generator=torch.Generator().manual_seed(0))
    assert result.speed_index.tolist() == [0, 0]
    for i in range(2):
        expected = speed_perturb(wav[i, : lengths[i]], 1.1, SR)
        assert int(result.lengths[i]) == expected.shape[0]
        torch.testing.assert_close(result.wav[i, : expected.shape[0]], expected)


@pytest.fixture
def base(tmp_path: Path) -> UtteranceDataset:
    items = []
    for s in range(2):
        for k in range(2):
            path = tmp_path / f"s{s}_{k}.wav"
            sf.write(path, tone(150.0 + 50 * s + 10 * k, 0.5 + 0.1 * k).numpy(), SR)
            items.append(ManifestItem(path, f"spk{s}"))
    return UtteranceDataset(items, SR)


def test_speed_speakers_triple_the_classes(base):
    speed = SpeedSpeakerDataset(base, (0.9, 1.1))
    n, n_spk = len(base), len(base.speakers)
    assert len(speed) == 3 * n and len(speed.speakers) == 3 * n_spk
    assert speed.labels[:n] == base.labels
    assert speed.labels[n] == base.labels[0] + n_spk
    assert speed.speakers[n_spk] == f"{base.speakers[0]}@speed0.9"
    original, slow, fast = speed[0], speed[n], speed[2 * n]
    assert torch.equal(original["wav"], base[0]["wav"])
    assert torch.equal(slow["wav"], speed_perturb(base[0]["wav"], 0.9, SR))
    assert torch.equal(fast["wav"], speed_perturb(base[0]["wav"], 1.1, SR))
    assert (slow["index"], slow["speaker"]) == (n, speed.labels[n])
    batch = speed.__getitems__([0, n, 2 * n])
    assert [item["index"] for item in batch] == [0, n, 2 * n]
    assert [item["speaker"] for item in batch] == [speed.labels[j] for j in (0, n, 2 * n)]


@pytest.mark.parametrize("factors", [(1.0,), (0.9, -1.1), (0.0,)])
def test_speed_factors_must_be_positive_and_not_one(base, factors):
    with pytest.raises(ValueError, match="speed factors must be > 0 and != 1.0"):
        check_speed_factors(factors)
    with pytest.raises(ValueError, match="speed factors"):
        SpeedSpeakerDataset(base, factors)
