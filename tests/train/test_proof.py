"""Proof on real speech: a short training run learns speaker identity.

Trains a tiny ECAPA on 6 files each of 40 speechocean762 speakers, exports it with ``voxvec
export`` and scores all pairs with ``voxvec eval`` on two sets: other files of 20 of those speakers
(recordings training never saw) and 12 held-out speakers. The same network at its
initialisation is already well below chance on log-mels (its random filters pool the long-term
spectrum, about 9% EER on the held-out set), so the comparison is what shows learning: on the
unseen recordings the trained model must cut the untrained network's EER by at least 40%; on
held-out speakers it must stay far below chance and not lose what the untrained network has (40
training speakers are too few for a tiny model to generalise much beyond its initialisation in a
few hundred steps; the slow variant checks that validation EER falls with longer training). A slow
variant trains longer and checks that the loss falls steadily and validation EER improves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from voxvec.cli import main
from voxvec.data.manifest import ManifestItem, group_by_speaker, read_manifest, write_manifest
from voxvec.pretrained import save_bundle
from voxvec.registry import create_model
from voxvec.train.config import TrainConfig, load_config
from voxvec.train.loop import train

MODEL = [
    "model=ecapa",
    "model_config.channels=32",
    "model_config.res2_scale=4",
    "model_config.se_channels=16",
    "model_config.mfa_channels=96",
    "model_config.attention_channels=32",
    "model_config.embed_dim=64",
]


@pytest.fixture(scope="module")
def splits(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Speaker-disjoint manifests: 40 training, 10 validation and 12 held-out test speakers."""
    groups = group_by_speaker(read_manifest(shared_data / "speechocean762" / "manifest.csv"))
    speakers = sorted(groups)
    root = tmp_path_factory.mktemp("proof")

    def part(name: str, chosen: list[str], files: slice) -> Path:
        items: list[ManifestItem] = [i for s in chosen for i in groups[s][files]]
        write_manifest(items, root / f"{name}.csv")
        return root / f"{name}.csv"

    return {
        "train": part("train", speakers[:40], slice(0, 6)),
        "seen": part("seen", speakers[:40:2], slice(6, 10)),
        "valid": part("valid", speakers[40:50], slice(0, 4)),
        "test": part("test", speakers[-12:], slice(0, 6)),
        "cache": root / "cache",
        "root": root,
    }


def _config(splits: dict[str, Path], run: Path, *overrides: str) -> TrainConfig:
    return load_config(
        None,
        [
            *MODEL,
            f"train_csv={splits['train']}",
            f"checkpoint_path={run}",
            f"cache_dir={splits['cache']}",
            "loss=ge2e",
            "n_speakers=12",
            "n_utterances=2",
            "min_crop_s=1.0",
            "max_crop_s=1.5",
            "num_workers=1",
            "schedule=cosine",
            "start_lr=1e-4",
            "max_lr=5e-3",
            "end_lr=1e-4",
            "warmup_pct=0.1",
            "device=cpu",
            *overrides,
        ],
    )


def _eval_eer(model_path: Path, manifest: Path, out: Path) -> float:
    report = out.with_suffix(".json")
    code = main(["eval", "--model", str(model_path), "--manifest", str(manifest),
                 "--json", str(report), "--n-bootstrap", "0", "--device", "cpu"])  # fmt: skip
    assert code == 0
    return float(json.loads(report.read_text())["raw"]["eer"])


def test_short_training_beats_chance_and_the_untrained_network(splits, tmp_path):
    config = _config(splits, tmp_path / "run", "max_steps=400", "log_interval=50", "loss=aam")
    final = train(config)
    trained = tmp_path / "trained.safetensors"
    assert main(["export", str(final), str(trained)]) == 0

    torch.manual_seed(config.seed)  # the trainer's initialisation
    untrained = save_bundle(
        create_model(config.model, config.model_config).eval(), tmp_path / "untrained.safetensors"
    )
    seen = [_eval_eer(m, splits["seen"], tmp_path / f"seen-{m.stem}") for m in (trained, untrained)]
    held = [_eval_eer(m, splits["test"], tmp_path / f"test-{m.stem}") for m in (trained, untrained)]
    assert seen[0] < 0.6 * seen[1], seen  # measured: 0.11 vs 0.25
    # Chance is 0.5; training must not cost the held-out speakers what the random network has.
    assert held[0] < 0.2 and held[0] <= 1.1 * held[1], held  # measured: 0.08 vs 0.09


@pytest.mark.slow
def test_longer_training_lowers_the_loss_steadily_and_the_validation_eer(splits, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = _config(
        splits,
        tmp_path / "run",
        "max_steps=600",
        "log_interval=20",
        f"valid_csv={splits['valid']}",
        "validation_interval=150",
        "valid_n_utterances=4",
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
