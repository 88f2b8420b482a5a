"""Fixtures for the trainer tests: a small synthetic multi-speaker corpus and tiny configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxvec.train.config import TrainConfig, load_config

SAMPLE_RATE = 16000

# A tiny ECAPA: tens of thousands of parameters, a training step in milliseconds on a CPU.
TINY_ECAPA = [
    "model.arch=ecapa",
    "model.config.channels=16",
    "model.config.res2_scale=4",
    "model.config.se_channels=8",
    "model.config.mfa_channels=32",
    "model.config.attention_channels=8",
    "model.config.embed_dim=16",
]


def _voice(rng: np.random.Generator, f0: float, formant: float, n: int) -> np.ndarray:
    """A buzzy harmonic 'voice' with a speaker-specific pitch and spectral peak, plus noise."""
    t = np.arange(n) / SAMPLE_RATE
    vibrato = 1.0 + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)
    phase = 2 * np.pi * f0 * np.cumsum(vibrato) / SAMPLE_RATE
    harmonics = np.arange(1, 25)
    weights = np.exp(-(((harmonics * f0 - formant) / 600.0) ** 2)) + 0.05
    wav = (weights[:, None] * np.sin(harmonics[:, None] * phase[None])).sum(0)
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(1, 3) * t + rng.uniform(0, 6))
    wav = wav * envelope + 0.05 * rng.standard_normal(n) * wav.std()
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


def write_corpus(root: Path, n_speakers: int, n_files: int, seed: int) -> Path:
    """Write ``n_speakers`` x ``n_files`` synthetic 1-1.6 s wav files and their manifest."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["path,speaker"]
    for s in range(n_speakers):
        f0 = 90.0 + 25.0 * s
        formant = 500.0 + 220.0 * ((s * 7) % n_speakers)
        for k in range(n_files):
            n = int(SAMPLE_RATE * rng.uniform(1.0, 1.6))
            name = f"spk{s}_{k}.wav"
            sf.write(
                root / name, _voice(rng, f0 * rng.uniform(0.97, 1.03), formant, n), SAMPLE_RATE
            )
            lines.append(f"{name},syn-{seed}-{s}")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(train_csv, valid_csv)``: 8 training and 4 other validation speakers, 4 files each."""
    root = tmp_path_factory.mktemp("synthetic")
    return write_corpus(root / "train", 8, 4, seed=1), write_corpus(root / "valid", 4, 4, seed=2)


@pytest.fixture
def tiny_config(synthetic_corpus: tuple[Path, Path], tmp_path: Path):
    """``make(*overrides) -> TrainConfig``: a tiny, fast run on the synthetic corpus."""
    train_csv, valid_csv = synthetic_corpus

    def make(*overrides: str) -> TrainConfig:
        return load_config(
            None,
            [
                *TINY_ECAPA,
                f"data.train_csv={train_csv}",
                f"validation.csv={valid_csv}",
                f"checkpoint.path={tmp_path / 'run'}",
                "data.n_speakers=4",
                "data.n_utterances=2",
                "data.min_crop_s=0.5",
                "data.max_crop_s=1.0",
                "optim.max_steps=6",
                "data.num_workers=0",
                "optim.start_lr=1e-3",
                "optim.max_lr=3e-3",
                "optim.end_lr=1e-4",
                "log.interval=2",
                "log.console_interval=2",
                "validation.interval=3",
                "checkpoint.interval=3",
                "validation.n_speakers=4",
                "validation.n_utterances=3",
                "device=cpu",
                *overrides,
            ],
        )

    return make
