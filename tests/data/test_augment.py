"""Augmenter: identity when off, SNRs, reverb decay, speed, babble sources, reproducibility."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voxvec.audio.windows import pad_batch
from voxvec.data.augment import AugmentConfig, Augmenter, synthetic_rir

SR = 16000


def tones(
    freqs: list[float], lengths: list[int], amplitude: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    waves = [
        amplitude * torch.sin(2 * math.pi * f * torch.arange(n) / SR)
        for f, n in zip(freqs, lengths, strict=True)
    ]
    return pad_batch(waves)


def snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    noise = noisy.double() - clean.double()
    return 10 * math.log10(float(clean.double().square().sum()) / float(noise.square().sum()))


@pytest.fixture
def noise_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "noise"
    folder.mkdir()
    sf.write(folder / "white.flac", 0.2 * rng.standard_normal(SR), SR)
    sf.write(folder / "hum.wav", 0.2 * np.sin(2 * np.pi * 50 * np.arange(SR // 3) / SR), SR)
    (folder / "notes.txt").write_text("not audio")
    return folder


def all_on(noise_dir: Path, **overrides: object) -> AugmentConfig:
    """Every augmentation on at probability 0.5."""
    settings: dict = dict(
        noise_dir=str(noise_dir),
        noise_prob=0.5,
        babble_prob=0.5,
        babble_speakers=(1, 2),
        gain_prob=0.5,
        reverb_prob=0.5,
        speed_prob=0.5,
    )
    return AugmentConfig(**{**settings, **overrides})


def test_default_is_off_and_identity() -> None:
    cfg = AugmentConfig()
    assert not cfg.enabled
    wav, lengths = tones([200, 300], [4000, 3000])
    out, out_lengths = Augmenter(cfg, SR)(wav, lengths)
    assert out is wav and out_lengths is lengths


def test_config_validation_and_list_coercion() -> None:
    cfg = AugmentConfig(speeds=[0.9, 1.0, 1.1], gain_db=[-3, 3])  # type: ignore[arg-type]
    assert cfg.speeds == (0.9, 1.0, 1.1) and cfg.gain_db == (-3, 3)
    hash(cfg)
    with pytest.raises(ValueError, match="noise_prob"):
        AugmentConfig(noise_prob=1.5)
    with pytest.raises(ValueError, match="noise_dir"):
        AugmentConfig(noise_prob=0.5)
    with pytest.raises(ValueError, match="gain_db"):
        AugmentConfig(gain_db=(6.0, -6.0))
    with pytest.raises(ValueError, match="speeds"):
        AugmentConfig(speeds=(0.0, 1.1))
    with pytest.raises(ValueError, match="rt60_s"):
        AugmentConfig(rt60_s=(0.0, 0.5))


def test_noise_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Augmenter(AugmentConfig(noise_dir=str(tmp_path / "nowhere"), noise_prob=1.0), SR)
    with pytest.raises(ValueError, match="no noise files"):
        Augmenter(AugmentConfig(noise_dir=str(tmp_path), noise_prob=1.0), SR)


def test_noise_at_exact_snr(noise_dir: Path) -> None:
    aug = Augmenter(
        AugmentConfig(noise_dir=str(noise_dir), noise_prob=1.0, noise_snr_db=(10.0, 10.0)), SR
    )
    assert len(aug.noises) == 2
    wav, lengths = tones([200, 300, 440, 500], [8000, 6000, 2000, 8000])
    out, out_lengths = aug(wav, lengths, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out_lengths, lengths)
    for i, n in enumerate(lengths.tolist()):
        assert snr_db(wav[i, :n], out[i, :n]) == pytest.approx(10.0, abs=0.01)
        assert not out[i, n:].any()


def test_noise_snr_within_range_and_varied(noise_dir: Path) -> None:
    aug = Augmenter(
        AugmentConfig(noise_dir=str(noise_dir), noise_prob=1.0, noise_snr_db=(5.0, 20.0)), SR
    )
    wav, lengths = tones([200.0 + 10 * i for i in range(16)], [4000] * 16)
    out, _ = aug(wav, lengths, generator=torch.Generator().manual_seed(1))
    snrs = [snr_db(wav[i], out[i]) for i in range(16)]
    assert all(5.0 - 0.01 <= s <= 20.0 + 0.01 for s in snrs)
    assert max(snrs) - min(snrs) > 5.0


def test_real_noise_on_real_speech(shared_data: Path) -> None:
    speech, _ = sf.read(
        next(iter(sorted((shared_data / "librispeech-train-clean-100-sample").rglob("*.flac")))),
        dtype="float32",
    )
    cfg = AugmentConfig(
        noise_dir=str(shared_data / "noise"), noise_prob=1.0, noise_snr_db=(5.0, 20.0)
    )
    aug = Augmenter(cfg, SR)
    assert len(aug.noises) == 8 and all(n.shape[0] > 50 * SR for n in aug.noises)
    clean = torch.from_numpy(speech[: 3 * SR] * 0.5)
    wav, lengths = pad_batch([clean, clean[: 2 * SR], clean[SR:]])
    out, _ = aug(wav, lengths, generator=torch.Generator().manual_seed(2))
    for i, n in enumerate(lengths.tolist()):
        assert 5.0 - 0.01 <= snr_db(wav[i, :n], out[i, :n]) <= 20.0 + 0.01
        assert not out[i, n:].any()
        assert out[i].abs().max() <= 1.0


def test_seeded_reproducibility(noise_dir: Path) -> None:
    aug = Augmenter(all_on(noise_dir), SR)
    wav, lengths = tones([200.0 + 50 * i for i in range(8)], [6000, 5000, 4000, 6000] * 2)
    speaker = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    a = aug.augment(wav, lengths, speaker, torch.Generator().manual_seed(7))
    b = aug.augment(wav, lengths, speaker, torch.Generator().manual_seed(7))
    c = aug.augment(wav, lengths, speaker, torch.Generator().manual_seed(8))
    assert torch.equal(a.wav, b.wav) and torch.equal(a.lengths, b.lengths)
    assert torch.equal(a.speed_index, b.speed_index)
    assert a.wav.shape != c.wav.shape or not torch.equal(a.wav, c.wav)
    assert torch.equal(
        wav, tones([200.0 + 50 * i for i in range(8)], [6000, 5000, 4000, 6000] * 2)[0]
    )  # input untouched


def test_padding_stays_zero_and_peaks_limited(noise_dir: Path) -> None:
    cfg = all_on(noise_dir, gain_prob=1.0, gain_db=(12.0, 12.0))
    wav, lengths = tones([300.0] * 6, [8000, 3000, 5000, 8000, 1000, 6000], amplitude=0.9)
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        out, out_lengths = Augmenter(cfg, SR)(wav, lengths, torch.tensor([0, 1, 2, 0, 1, 2]), gen)
        assert out.shape[1] == int(out_lengths.max())
        for i, n in enumerate(out_lengths.tolist()):
            assert not out[i, n:].any()
        assert out.abs().max() <= 1.0 + 1e-6


def test_gain() -> None:
    aug = Augmenter(AugmentConfig(gain_prob=1.0, gain_db=(6.0, 6.0)), SR)
    wav, lengths = tones([200, 300], [4000, 2000])
    out, _ = aug(wav, lengths)
    torch.testing.assert_close(out, wav * 10 ** (6 / 20))


def test_speed_changes_lengths_and_pitch() -> None:
    aug = Augmenter(AugmentConfig(speed_prob=1.0, speeds=(1.25,)), SR)
    wav, lengths = tones([400.0, 400.0], [16000, 8000])
    result = aug.augment(wav, lengths)
    assert result.lengths.tolist() == [12800, 6400]
    assert result.wav.shape == (2, 12800)
    assert result.speed_index.tolist() == [0, 0]
    spectrum = torch.fft.rfft(result.wav[0, :12800]).abs()
    peak_hz = float(spectrum.argmax()) * SR / 12800
    assert peak_hz == pytest.approx(500.0, abs=2.0)  # 1.25x faster: 1.25x higher
    assert not result.wav[1, 6400:].any()


def test_speed_index_marks_untouched_items() -> None:
    aug = Augmenter(AugmentConfig(speed_prob=0.5, speeds=(0.9, 1.1)), SR)
    wav, lengths = tones([300.0] * 32, [3000] * 32)
    result = aug.augment(wav, lengths, generator=torch.Generator().manual_seed(0))
    index = result.speed_index
    assert set(index.tolist()) == {-1, 0, 1}
    expected = torch.tensor([3000, round(3000 / 0.9), round(3000 / 1.1)])[index + 1]
    assert torch.equal(result.lengths, expected)


def test_a_pause_replaces_a_stretch_at_its_level_and_keeps_the_rest() -> None:
    config = AugmentConfig(pause_prob=1.0, pause_fraction=(0.5, 0.5), pause_level_db=(-60, -60))
    wav, lengths = tones([300.0, 500.0], [16000, 8000])
    out, out_lengths = Augmenter(config, SR)(
        wav, lengths, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(out_lengths, lengths) and out.shape == wav.shape
    for i, n in enumerate(lengths.tolist()):
        changed = (out[i, :n] - wav[i, :n]).abs() > 1e-6
        where = changed.nonzero().flatten()
        begin, end = int(where[0]), int(where[-1]) + 1
        # one stretch of half the item (a tone's zero crossings may match the floor by chance)
        assert end - begin == pytest.approx(n // 2, abs=3)
        level = 20 * math.log10(float(out[i, begin:end].square().mean().sqrt()))
        assert level == pytest.approx(-60.0, abs=0.5)
        torch.testing.assert_close(out[i, :begin], wav[i, :begin])
        torch.testing.assert_close(out[i, end:n], wav[i, end:n])
        assert not out[i, n:].any()
    with pytest.raises(ValueError, match="pause_fraction"):
        AugmentConfig(pause_fraction=(0.2, 1.0))
    with pytest.raises(ValueError, match="pause_prob"):
        AugmentConfig(pause_prob=1.5)


def test_synthetic_rir_has_requested_rt60() -> None:
    for rt60 in (0.3, 0.8):
        rir = synthetic_rir(rt60, SR, torch.Generator().manual_seed(0)).double()
        assert rir.norm().item() == pytest.approx(1.0, abs=1e-5)
        edc = rir.square().flip(0).cumsum(0).flip(0)  # Schroeder backward integration
        edc_db = 10 * torch.log10(edc / edc[0])
        t5 = int(torch.nonzero(edc_db < -5)[0]) / SR
        t25 = int(torch.nonzero(edc_db < -25)[0]) / SR
        assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.1)  # T20 extrapolated to 60 dB


def test_reverb_keeps_level_and_length() -> None:
    aug = Augmenter(AugmentConfig(reverb_prob=1.0, rt60_s=(0.5, 0.5)), SR)
    wav, lengths = tones([300.0, 700.0], [8000, 4000])
    wav[:, :200] = 0
    wav[0, 4000:4010] = 0.5  # a click: its reverberant tail must follow it
    out, out_lengths = aug(wav, lengths, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out_lengths, lengths)
    for i, n in enumerate(lengths.tolist()):
        assert out[i, :n].square().mean().item() == pytest.approx(
            wav[i, :n].square().mean().item(), rel=1e-4
        )
        assert not out[i, n:].any()
        assert not torch.allclose(out[i, :n], wav[i, :n], atol=1e-3)
    assert out[0, :200].abs().max() < 1e-6  # causal: nothing before the sound starts


def test_babble_comes_from_other_speakers_at_snr() -> None:
    cfg = AugmentConfig(babble_prob=1.0, babble_snr_db=(15.0, 15.0), babble_speakers=(1, 3))
    freqs = [250.0, 500.0, 1000.0, 2000.0]  # one tone per item, bins of a 1 s FFT
    wav, lengths = tones(freqs, [SR] * 4)
    speaker = torch.tensor([0, 0, 1, 1])
    out, _ = Augmenter(cfg, SR)(wav, lengths, speaker, torch.Generator().manual_seed(4))
    for i in range(4):
        assert snr_db(wav[i], out[i]) == pytest.approx(15.0, abs=0.01)
        added = torch.fft.rfft(out[i].double() - wav[i].double()).abs()
        energy = {f: float(added[int(f)]) for f in freqs}
        own = {f for j, f in enumerate(freqs) if speaker[j] == speaker[i]}
        assert all(energy[f] < 1e-3 * max(energy.values()) for f in own)
        assert any(energy[f] > 0 for f in freqs if f not in own)


def test_babble_skips_items_without_other_speakers() -> None:
    cfg = AugmentConfig(babble_prob=1.0)
    wav, lengths = tones([300.0, 400.0], [4000, 4000])
    out, _ = Augmenter(cfg, SR)(wav, lengths, torch.tensor([5, 5]))
    torch.testing.assert_close(out, wav)


def test_bad_shapes() -> None:
    aug = Augmenter(AugmentConfig(gain_prob=1.0), SR)
    with pytest.raises(ValueError, match="B, T"):
        aug(torch.zeros(10), torch.tensor([10]))
    with pytest.raises(ValueError, match="lengths"):
        aug(torch.zeros(2, 10), torch.tensor([10, 11]))
    with pytest.raises(ValueError, match="speaker"):
        aug(torch.zeros(2, 10), torch.tensor([10, 10]), torch.tensor([1]))
