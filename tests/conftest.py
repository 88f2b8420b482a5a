"""Shared fixtures: real speech from ../shared/data (skipped when absent) and synthetic audio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """Where the real speech lives: $VOXVEC_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("VOXVEC_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-speech folder; the test is skipped with a reason when it is missing."""
    root = data_root()
    if not (root / "speechocean762" / "manifest.csv").is_file():
        pytest.skip(f"real speech not found at {root} (set VOXVEC_DATA to ../shared/data)")
    return root


CAMPPLUS_FILE = Path("campplus-zh-en-common") / "campplus_cn_en_common.pt"


@pytest.fixture(scope="session")
def campplus_checkpoint() -> Path:
    """3D-Speaker's CAM++ checkpoint in $VOXVEC_MODELS (else ../shared/models); skips if absent."""
    root = Path(os.environ.get("VOXVEC_MODELS", REPO_ROOT.parent / "shared" / "models"))
    if not (root / CAMPPLUS_FILE).is_file():
        pytest.skip(f"CAM++ checkpoint not found at {root / CAMPPLUS_FILE} (set VOXVEC_MODELS)")
    return root / CAMPPLUS_FILE


@pytest.fixture
def sine_wave() -> np.ndarray:
    """One second of a 220 Hz tone with light noise at 16 kHz, float32 in [-1, 1]."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wav = 0.5 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(16000)
    return wav.astype(np.float32)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Every test leaves torch's thread count as it found it: the CLI's ``--threads`` sets it for
    the process, and a later test comparing an in-process run with a subprocess (which starts
    with torch's default) would otherwise compute with other reduction orders."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
