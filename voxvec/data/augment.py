"""Waveform augmentation of training batches: speed, pauses, reverb, babble, noise and gain.

Every augmentation is off by default and, when on, applied to each batch item independently
with its own probability. :class:`Augmenter` works on a padded batch ``(B, T)`` with ``lengths``
(the output of :class:`voxvec.data.collate.CropCollate`), on any device, in this order:

1. speed perturbation (:func:`voxvec.data.speed.speed_perturb`): the item plays ``speed`` times
   faster (pitch and tempo change together, as with ``sox speed``); its length becomes
   ``round(length / speed)``, so the batch width ``T`` may change (this step resamples with soxr
   on the CPU, copying the chosen items there and back when the batch is on an accelerator);
2. a pause: a random stretch of ``pause_fraction`` of the item replaced by a noise floor (white
   noise at ``pause_level_db`` dBFS); the length stays, so the batch width does too (10 s of
   silence inside an utterance is one of the conditions voxvec is judged on);
3. reverberation: convolution (by FFT) with a synthetic room impulse response, exponentially
   decaying Gaussian noise with an RT60 drawn from ``rt60_s`` plus a direct path of equal energy
   (see :func:`synthetic_rir`); the item's RMS level is kept;
4. babble: the sum of 3-6 (``babble_speakers``) other items of the batch spoken by other
   speakers, added at an SNR drawn from ``babble_snr_db``;
5. noise: a random excerpt (looped if short) of a random file of ``noise_dir`` added at an SNR
   drawn from ``noise_snr_db``;
6. gain: a level change drawn from ``gain_db``.

SNRs are measured over each item's valid samples. An item whose peak then exceeds 1 is scaled
down to peak 1 (the waveform contract is [-1, 1]), and samples past each length stay zero.

Randomness comes only from the ``generator`` passed to each call (a CPU ``torch.Generator``;
None uses torch's global generator), so seeding it per batch makes augmentation reproducible.

Speed perturbation with "each speed as a new speaker" (which multiplies the classes of a margin
loss) is :class:`voxvec.data.speed.SpeedSpeakerDataset`; :meth:`Augmenter.augment` also returns
which speed each item got.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from voxvec.audio.io import load
from voxvec.audio.windows import pad_batch
from voxvec.data.speed import speed_perturb

logger = logging.getLogger(__name__)

NOISE_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply, how often and how strongly. All off by default.

    Every ``*_prob`` is the probability, in [0, 1], that one batch item gets that augmentation;
    every range ``(low, high)`` is sampled uniformly per item.

    Attributes:
        noise_dir: folder searched recursively for noise files (``.wav .flac .ogg .opus .mp3``);
            required when ``noise_prob > 0``.
        noise_prob: probability of additive noise.
        noise_snr_db: SNR range of the noise in dB.
        babble_prob: probability of babble from other speakers of the batch.
        babble_snr_db: SNR range of the babble in dB.
        babble_speakers: range of the number of other items summed into the babble.
        gain_prob: probability of a gain change.
        gain_db: gain range in dB.
        reverb_prob: probability of simulated room reverberation.
        rt60_s: range of the reverberation time RT60 in seconds.
        speed_prob: probability of speed perturbation.
        speeds: the speed factors (> 0) to choose from, uniformly.
        pause_prob: probability of a pause in the item, so that the model learns to ignore
            long silences inside an utterance.
        pause_fraction: range of the pause's share of the item's length, in [0, 1).
        pause_level_db: range of the pause's level in dBFS: white noise at that RMS (a recording's
            noise floor); additive noise and reverb, drawn later, cover it as they cover speech.

    Raises:
        ValueError: a probability outside [0, 1], a range with ``low > high``, a non-positive
            speed, RT60 or babble count, or ``noise_prob > 0`` without ``noise_dir``.
    """

    noise_dir: str | None = None
    noise_prob: float = 0.0
    noise_snr_db: tuple[float, float] = (5.0, 20.0)
    babble_prob: float = 0.0
    babble_snr_db: tuple[float, float] = (13.0, 20.0)
    babble_speakers: tuple[int, int] = (3, 6)
    gain_prob: float = 0.0
    gain_db: tuple[float, float] = (-6.0, 6.0)
    reverb_prob: float = 0.0
    rt60_s: tuple[float, float] = (0.2, 0.8)
    speed_prob: float = 0.0
    speeds: tuple[float, ...] = (0.9, 1.1)
    pause_prob: float = 0.0
    pause_fraction: tuple[float, float] = (0.2, 0.6)
    pause_level_db: tuple[float, float] = (-90.0, -60.0)

    def __post_init__(self) -> None:
        # Configs loaded from YAML give lists: store tuples so the config stays hashable.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        for name in (
            "noise_prob",
            "babble_prob",
            "gain_prob",
            "reverb_prob",
            "speed_prob",
            "pause_prob",
        ):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        for name in (
            "noise_snr_db",
            "babble_snr_db",
            "babble_speakers",
            "gain_db",
            "rt60_s",
            "pause_fraction",
            "pause_level_db",
        ):
            value = getattr(self, name)
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(
                    f"{name} must be a range (low, high) with low <= high, got {value}"
                )
        if not 0.0 <= self.pause_fraction[0] <= self.pause_fraction[1] < 1.0:
            raise ValueError(f"pause_fraction must lie in [0, 1), got {self.pause_fraction}")
        if self.rt60_s[0] <= 0:
            raise ValueError(f"rt60_s must be > 0 seconds, got {self.rt60_s}")
        if self.babble_speakers[0] < 1:
            raise ValueError(f"babble_speakers must be >= 1, got {self.babble_speakers}")
        if not self.speeds or any(s <= 0 for s in self.speeds):
            raise ValueError(f"speeds must be a non-empty tuple of factors > 0, got {self.speeds}")
        if self.noise_prob > 0 and not self.noise_dir:
            raise ValueError("noise_prob > 0 needs noise_dir, a folder of noise recordings")

    @property
    def enabled(self) -> bool:
        """Whether any augmentation has a non-zero probability."""
        return any(
            p > 0
            for p in (
                self.noise_prob,
                self.babble_prob,
                self.gain_prob,
                self.reverb_prob,
                self.speed_prob,
                self.pause_prob,
            )
        )


class AugmentResult(NamedTuple):
    """Output of :meth:`Augmenter.augment`.

    Attributes:
        wav: ``(B, T')`` float32 augmented batch, zero past ``lengths``.
        lengths: ``(B,)`` long lengths in samples (changed by speed perturbation only).
        speed_index: ``(B,)`` long index into ``AugmentConfig.speeds`` of the speed applied to
            each item, -1 for items left at their own speed.
    """

    wav: Tensor
    lengths: Tensor
    speed_index: Tensor


def synthetic_rir(
    rt60_s: float, sample_rate: int, generator: torch.Generator | None = None
) -> Tensor:
    """A synthetic room impulse response: a direct path plus exponentially decaying noise.

    The reverberant tail is white Gaussian noise whose amplitude falls by 60 dB over ``rt60_s``
    (energy ``exp(-13.8 t / rt60_s)``), lasting ``rt60_s``; the direct path, at sample 0, has the
    same energy as the tail (a direct-to-reverberant ratio of 0 dB).

    Args:
        rt60_s: reverberation time in seconds (> 0).
        sample_rate: in Hz.
        generator: source of the noise (CPU); None uses torch's global generator.

    Returns:
        float32 ``(max(2, round(rt60_s * sample_rate)),)`` with unit energy, on the CPU.

    Raises:
        ValueError: ``rt60_s <= 0``.
    """
    if not rt60_s > 0:
        raise ValueError(f"rt60_s must be > 0 seconds, got {rt60_s}")
    n = max(2, round(rt60_s * sample_rate))
    t_s = torch.arange(n, dtype=torch.float64) / sample_rate
    rir = torch.randn(n, generator=generator, dtype=torch.float64)
    rir *= torch.exp(-3.0 * math.log(10.0) * t_s / rt60_s)  # amplitude: -60 dB at rt60_s
    rir[0] = rir[1:].norm()
    return (rir / rir.norm()).float()


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> list[float]:
    return (torch.rand(n, generator=generator, dtype=torch.float64) * (high - low) + low).tolist()


def _chosen(n: int, prob: float, generator: torch.Generator | None) -> list[int]:
    """Indices of the items an augmentation of probability ``prob`` applies to."""
    return torch.nonzero(torch.rand(n, generator=generator) < prob).flatten().tolist()


def _loop_excerpt(source: Tensor, n: int, start: int) -> Tensor:
    """``n`` samples of ``source`` from ``start`` on, wrapping around to its beginning."""
    reps = -(-(start + n) // source.shape[0])
    return source.repeat(reps)[start : start + n]


def _snr_scale(signal: Tensor, noise: Tensor, snr_db: float) -> float | None:
    """Factor putting ``noise`` ``snr_db`` below ``signal`` in power; None if either is silent."""
    p_signal = float(signal.double().square().mean())
    p_noise = float(noise.double().square().mean())
    if p_signal <= 0 or p_noise <= 0:
        return None
    return math.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))


class Augmenter:
    """Applies an :class:`AugmentConfig` to padded batches (see the module docstring).

    The constructor decodes every noise file of ``config.noise_dir`` once, at ``sample_rate``
    (only when ``noise_prob > 0``); it draws no random numbers.

    Args:
        config: what to apply.
        sample_rate: sample rate in Hz of the batches.

    Raises:
        FileNotFoundError: ``noise_dir`` does not exist.
        ValueError: ``noise_dir`` holds no noise file.
        AudioError: a noise file cannot be decoded (the message names it).
    """

    def __init__(self, config: AugmentConfig, sample_rate: int) -> None:
        self.config = config
        self.sample_rate = int(sample_rate)
        self.noises: list[Tensor] = []
        if config.noise_prob > 0 and config.noise_dir:
            folder = Path(config.noise_dir)
            if not folder.is_dir():
                raise FileNotFoundError(f"noise_dir not found or not a folder: {folder}")
            files = sorted(
                p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in NOISE_SUFFIXES
            )
            if not files:
                raise ValueError(
                    f"noise_dir {folder} holds no noise files "
                    f"(looked for {', '.join(NOISE_SUFFIXES)})"
                )
            self.noises = [torch.from_numpy(load(p, self.sample_rate)) for p in files]
            logger.info(
                "loaded %d noise files (%.1f s) from %s",
                len(files),
                sum(n.shape[0] for n in self.noises) / self.sample_rate,
                folder,
            )

    def __call__(
        self,
        wav: Tensor,
        lengths: Tensor,
        speaker: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Augment a batch; see :meth:`augment`, which also says which speed each item got.

        Returns:
            ``(wav (B, T'), lengths (B,))``.
        """
        result = self.augment(wav, lengths, speaker, generator)
        return result.wav, result.lengths

    def augment(
        self,
        wav: Tensor,
        lengths: Tensor,
        speaker: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AugmentResult:
        """Augment a batch.

        Args:
            wav: ``(B, T)`` float32 waveforms, zero-padded past ``lengths``.
            lengths: ``(B,)`` long valid lengths in samples.
            speaker: ``(B,)`` speaker labels; babble mixes only items of other speakers. None
                treats every other item as another speaker.
            generator: CPU generator for all random choices; None uses torch's global one.

        Returns:
            :class:`AugmentResult` (``wav``, ``lengths``, ``speed_index``). With every
            probability 0 the input tensors are returned unchanged.

        Raises:
            ValueError: inconsistent shapes or lengths outside ``[0, T]``.
        """
        if wav.dim() != 2:
            raise ValueError(f"expected a batch of waveforms (B, T), got shape {tuple(wav.shape)}")
        batch, width = wav.shape
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
        if batch and (int(lengths.min()) < 0 or int(lengths.max()) > width):
            raise ValueError(f"lengths must be in [0, {width}], got {lengths.tolist()}")
        if speaker is not None and speaker.shape != (batch,):
            raise ValueError(f"speaker must have shape ({batch},), got {tuple(speaker.shape)}")
        speed_index = torch.full((batch,), -1, dtype=torch.long, device=lengths.device)
        cfg = self.config
        if not cfg.enabled:
            return AugmentResult(wav, lengths, speed_index)

        wav, lengths = self._speed(wav, lengths, speed_index, generator)
        wav = wav.clone()
        n = lengths.tolist()
        self._pause(wav, n, generator)
        self._reverb(wav, n, generator)
        self._babble(wav, n, speaker, generator)
        self._noise(wav, n, generator)
        self._gain(wav, generator)
        peak = wav.abs().amax(dim=1, keepdim=True).clamp_min(1.0)
        valid = (
            torch.arange(wav.shape[1], device=wav.device)[None] < lengths.to(wav.device)[:, None]
        )
        return AugmentResult(wav / peak * valid, lengths, speed_index)

    def _gain(self, wav: Tensor, generator: torch.Generator | None) -> None:
        cfg = self.config
        if cfg.gain_prob <= 0:
            return
        chosen = _chosen(wav.shape[0], cfg.gain_prob, generator)
        gains_db = _uniform(wav.shape[0], *cfg.gain_db, generator)
        for i in chosen:
            wav[i] *= 10.0 ** (gains_db[i] / 20.0)

    def _speed(
        self,
        wav: Tensor,
        lengths: Tensor,
        speed_index: Tensor,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        """Resample the chosen items; fills ``speed_index`` in place."""
        cfg = self.config
        if cfg.speed_prob <= 0:
            return wav, lengths
        chosen = _chosen(wav.shape[0], cfg.speed_prob, generator)
        if not chosen:
            return wav, lengths
        picks = torch.randint(len(cfg.speeds), (wav.shape[0],), generator=generator).tolist()
        items = [wav[i, :n] for i, n in enumerate(lengths.tolist())]
        for i in chosen:
            faster = speed_perturb(items[i], cfg.speeds[picks[i]], self.sample_rate)
            if faster is not items[i]:
                items[i] = faster
                speed_index[i] = picks[i]
        new_wav, new_lengths = pad_batch(items)
        return new_wav.to(wav.device), new_lengths.to(lengths.device)

    def _pause(self, wav: Tensor, n: list[int], generator: torch.Generator | None) -> None:
        """Overwrite a stretch of the chosen items with a noise floor of ``pause_level_db``."""
        cfg = self.config
        if cfg.pause_prob <= 0:
            return
        batch = wav.shape[0]
        chosen = _chosen(batch, cfg.pause_prob, generator)
        fractions = _uniform(batch, *cfg.pause_fraction, generator)
        levels_db = _uniform(batch, *cfg.pause_level_db, generator)
        where = torch.rand(batch, generator=generator).tolist()
        for i in chosen:
            gap = round(fractions[i] * n[i])
            if gap == 0:
                continue
            start = round(where[i] * (n[i] - gap))
            floor = torch.randn(gap, generator=generator) * 10.0 ** (levels_db[i] / 20.0)
            wav[i, start : start + gap] = floor.to(wav)

    def _reverb(self, wav: Tensor, n: list[int], generator: torch.Generator | None) -> None:
        cfg = self.config
        batch = wav.shape[0]
        if cfg.reverb_prob <= 0:
            return
        chosen = [i for i in _chosen(batch, cfg.reverb_prob, generator) if n[i] > 0]
        rt60s = _uniform(batch, *cfg.rt60_s, generator)
        if not chosen:
            return
        rirs = [synthetic_rir(rt60s[i], self.sample_rate, generator) for i in chosen]
        rir_batch, _ = pad_batch(rirs)  # (S, L)
        dry = wav[chosen]  # (S, T)
        size = 1 << (dry.shape[1] + rir_batch.shape[1] - 2).bit_length()  # >= T + L - 1
        spectrum = torch.fft.rfft(dry, size) * torch.fft.rfft(rir_batch.to(wav.device), size)
        wet = torch.fft.irfft(spectrum, size)[:, : dry.shape[1]]  # (S, T)
        for row, i in enumerate(chosen):
            scale = _snr_scale(dry[row, : n[i]], wet[row, : n[i]], 0.0)
            if scale is not None:
                wav[i, : n[i]] = wet[row, : n[i]] * scale

    def _babble(
        self,
        wav: Tensor,
        n: list[int],
        speaker: Tensor | None,
        generator: torch.Generator | None,
    ) -> None:
        cfg = self.config
        batch = wav.shape[0]
        if cfg.babble_prob <= 0:
            return
        chosen = _chosen(batch, cfg.babble_prob, generator)
        snrs = _uniform(batch, *cfg.babble_snr_db, generator)
        if not chosen:
            return
        labels = list(range(batch)) if speaker is None else speaker.tolist()
        source = wav.clone()
        low, high = cfg.babble_speakers
        for i in chosen:
            others = [j for j in range(batch) if labels[j] != labels[i] and n[j] > 0]
            count = int(torch.randint(low, high + 1, (1,), generator=generator))
            order = torch.randperm(len(others), generator=generator).tolist()
            if n[i] == 0 or not others:
                continue
            babble = sum(
                (_loop_excerpt(source[others[k], : n[others[k]]], n[i], 0) for k in order[:count]),
                torch.zeros(n[i], device=wav.device),
            )
            scale = _snr_scale(wav[i, : n[i]], babble, snrs[i])
            if scale is not None:
                wav[i, : n[i]] += babble * scale

    def _noise(self, wav: Tensor, n: list[int], generator: torch.Generator | None) -> None:
        cfg = self.config
        batch = wav.shape[0]
        if cfg.noise_prob <= 0:
            return
        chosen = _chosen(batch, cfg.noise_prob, generator)
        snrs = _uniform(batch, *cfg.noise_snr_db, generator)
        if not chosen:
            return
        files = torch.randint(len(self.noises), (batch,), generator=generator).tolist()
        offsets = torch.rand(batch, generator=generator, dtype=torch.float64).tolist()
        for i in chosen:
            if n[i] == 0:
                continue
            source = self.noises[files[i]]
            start = int(offsets[i] * source.shape[0])
            noise = _loop_excerpt(source, n[i], start).to(wav.device)
            scale = _snr_scale(wav[i, : n[i]], noise, snrs[i])
            if scale is not None:
                wav[i, : n[i]] += noise * scale
