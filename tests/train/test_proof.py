"""Proof on real speech: a short training run learns speaker identity.

The default test trains a tiny ECAPA on 6 files each of 40 speechocean762 speakers, exports it
to a bundle and scores all pairs, embedded by :func:`voxvec.load`, of other files of 20 of those
speakers: recordings training never saw, of speakers it did see. That is what a few hundred
steps on 40 speakers can show (200 here), learning the training speakers' voices rather than the
recordings. The network at its initialisation is already well below chance on log-mels (its
random filters pool the long-term spectrum), so the comparison is with that untrained network:
training must cut its EER by at least 40%.

Whether what is learnt carries over to speakers never seen in training needs many more speakers
and steps: the slow tests train on 180 speakers and compare on 30 held-out ones, and check that
the loss falls steadily and the validation EER improves with longer training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import voxvec
from voxvec.data.manifest import ManifestItem, group_by_speaker, read_manifest, write_manifest
from voxvec.eval.metrics import eer
from voxvec.models import create_model
from voxvec.train.checkpoint import export_checkpoint
from voxvec.train.config import TrainConfig, load_config
from voxvec.train.loop import train
from voxvec.weights import save_bundle

MODEL = [
    "model.arch=ecapa",
    "model.config.channels=32",
    "model.config.res2_scale=4",
    "model.config.se_channels=16",
    "model.config.mfa_channels=96",
    "model.config.attention_channels=32",
    "model.config.embed_dim=64",
]


@pytest.fixture(scope="module")
def splits(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Speaker-disjoint manifests of speechocean762 (225 speakers, 20-30 files each).

    ``train`` (40 speakers x 6 files) and ``seen`` (other files of 20 of them) for the default
    test; ``valid`` (10 others); ``train_many`` (180 speakers x 6 files) and ``held_out`` (30
    speakers none of the training sets hold) for the generalisation test.
    """
    groups = group_by_speaker(read_manifest(shared_data / "speechocean762" / "manifest.csv"))
    speakers = sorted(groups)
    assert len(speakers) >= 220, len(speakers)
    root = tmp_path_factory.mktemp("proof")

    def part(name: str, chosen: list[str], files: slice) -> Path:
        items: list[ManifestItem] = [i for s in chosen for i in groups[s][files]]
        write_manifest(items, root / f"{name}.csv")
        return root / f"{name}.csv"

    return {
        "train": part("train", speakers[:40], slice(0, 6)),
        "seen": part("seen", speakers[:40:2], slice(6, 10)),
        "valid": part("valid", speakers[180:190], slice(0, 4)),
        "train_many": part("train_many", speakers[:180], slice(0, 6)),
        "held_out": part("held_out", speakers[-30:], slice(0, 6)),
        "cache": root / "cache",
    }


def _config(splits: dict[str, Path], run: Path, *overrides: str) -> TrainConfig:
    return load_config(
        None,
        [
            *MODEL,
            f"data.train_csv={splits['train']}",
            f"checkpoint.path={run}",
            f"data.cache_dir={splits['cache']}",
            "loss.kind=aam",
            "data.n_speakers=12",
            "data.n_utterances=2",
            "data.min_crop_s=1.0",
            "data.max_crop_s=1.5",
            "data.num_workers=1",
            "optim.schedule=cosine",
            "optim.start_lr=1e-4",
            "optim.max_lr=5e-3",
            "optim.end_lr=1e-4",
            "optim.warmup_pct=0.1",
            "device=cpu",
            *overrides,
        ],
    )


def _eer(model_path: Path, manifest: Path) -> float:
    """EER of the bundle at ``model_path`` over all pairs of the files of ``manifest``."""
    items = read_manifest(manifest)
    embedder = voxvec.load(model_path, device="cpu", precision="float32")
    emb = embedder.embed([str(item.path) for item in items])  # (n, D)
    speakers = np.array([item.speaker for item in items])
    i, j = np.triu_indices(len(items), k=1)
    return eer(np.sum(emb[i] * emb[j], axis=1), speakers[i] == speakers[j])[0]


def _trained_and_untrained(config: TrainConfig, out: Path) -> tuple[Path, Path]:
    """Train ``config`` and export it; the same network at its initialisation beside it."""
    trained = export_checkpoint(train(config), out / "trained.safetensors")
    torch.manual_seed(config.seed)  # the trainer's initialisation
    model = create_model(config.model.arch, config.model.arch_config()).eval()
    return trained, save_bundle(model, out / "untrained.safetensors")


def test_training_learns_the_training_speakers_voices_on_recordings_it_never_saw(splits, tmp_path):
    config = _config(splits, tmp_path / "run", "optim.max_steps=200", "log.interval=50")
    models = _trained_and_untrained(config, tmp_path)
    seen = [_eer(m, splits["seen"]) for m in models]
    assert seen[0] < 0.6 * seen[1], seen  # measured: 0.11 vs 0.25 (the same after 400 steps)


@pytest.mark.slow
def test_training_on_many_speakers_generalises_to_held_out_speakers(splits, tmp_path):
    config = _config(
        splits,
        tmp_path / "run",
        f"data.train_csv={splits['train_many']}",
        "data.n_speakers=24",
        "optim.max_steps=600",
        "log.interval=100",
    )
    models = _trained_and_untrained(config, tmp_path)
    held = [_eer(m, splits["held_out"]) for m in models]
    assert held[0] < 0.7 * held[1], held  # measured: 0.056 vs 0.111 (54 s on 2 CPUs)


@pytest.mark.slow
def test_longer_training_lowers_the_loss_steadily_and_the_validation_eer(splits, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = _config(
        splits,
        tmp_path / "run",
        "loss.kind=ge2e",
        "optim.max_steps=600",
        "log.interval=20",
        f"validation.csv={splits['valid']}",
        "validation.interval=150",
        "validation.n_utterances=4",
    )
    train(config)
    acc = EventAccumulator(str(tmp_path / "run" / "logs"))
    acc.Reload()
    loss = np.array([e.value for e in acc.Scalars("train/loss")])
    assert len(loss) == 30
    quarters = [q.mean() for q in np.array_split(loss, 4)]
    assert all(a > b for a, b in zip(quarters, quarters[1:], strict=False)), quarters
    assert np.polyfit(np.arange(len(loss)), loss, 1)[0] < 0
    eers = [e.value for e in acc.Scalars("validation/eer")]
    assert len(eers) == 4 and eers[-1] < eers[0], eers
