"""The training data pipeline: manifest -> dataset -> N x M batch sampler -> DataLoader.

:class:`DataConfig` is the ``data`` section of a training config; :func:`training_data` builds
from it the pieces a training loop iterates over:

- :class:`~voxvec.data.dataset.UtteranceDataset` decoding ``train_csv`` in DataLoader workers
  (optionally through the on-disk cache), wrapped in
  :class:`~voxvec.data.speed.SpeedSpeakerDataset` with ``speed_speakers``;
- :class:`~voxvec.data.sampler.SpeakerBatchSampler`: batches of N speakers x M utterances, each
  rank its own shard;
- :class:`~voxvec.data.collate.TrainCollate`: one random crop length per batch, then
  augmentation; or, for distillation (``crop_bank``), a :class:`~voxvec.data.crops.CropBank`
  of crops fixed once, which the sampler draws from instead of the files.

A file that cannot be read is replaced by another file of its speaker (deterministically, so a
resumed run reads the same batches) and reported: each batch carries the unreadable files its
workers found first (``batch["unreadable"]``, ``(item, path, reason)`` each), and the training
loop stops once more than ``max_unreadable_files`` have failed.

Every random draw is seeded by ``seed`` and the sampler position, so a resumed run reads the same
batches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from voxvec.data.augment import AugmentConfig, Augmenter
from voxvec.data.collate import CropCollate, PadCollate, TrainCollate
from voxvec.data.crops import CropBank
from voxvec.data.dataset import UtteranceDataset, uncached
from voxvec.data.manifest import ManifestItem, read_manifest
from voxvec.data.sampler import SpeakerBatchSampler
from voxvec.data.speed import SpeedSpeakerDataset, check_speed_factors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """What a training run reads and how it batches it.

    Attributes:
        train_csv: training manifest (path,speaker CSV); required to train.
        n_speakers: speakers per batch N (per process).
        n_utterances: utterances per speaker M; a batch is N x M crops. GE2E needs M >= 2; for
            AAM alone M = 1 with a large N gives a plain shuffled batch of distinct speakers.
        min_crop_s: shortest random crop in seconds (one length per batch).
        max_crop_s: longest random crop in seconds.
        speed_speakers: add speed-perturbed copies of the training data, each speed counted as
            a new speaker.
        speed_factors: speed factors of speed_speakers (1.0, the original data, is always
            included).
        augment: on-the-fly augmentation (all off by default).
        num_workers: DataLoader worker processes decoding audio (0 = in the main one).
        cache_dir: on-disk cache of decoded, resampled audio; null disables it.
        max_unreadable_files: training files that may fail to decode (each replaced by another
            file of its speaker and reported) before the run stops; 0 stops at the first.

    Raises:
        ValueError: a non-positive batch size or crop, ``min_crop_s > max_crop_s``, a negative
            worker count or ``max_unreadable_files``, or a speed factor that is not positive or
            equals 1.
    """

    train_csv: str = ""
    n_speakers: int = 8
    n_utterances: int = 6
    min_crop_s: float = 2.0
    max_crop_s: float = 8.0
    speed_speakers: bool = False
    speed_factors: tuple[float, ...] = (0.9, 1.1)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 4
    cache_dir: str | None = None
    max_unreadable_files: int = 10

    def __post_init__(self) -> None:
        if self.n_speakers < 1 or self.n_utterances < 1:
            raise ValueError(
                f"data.n_speakers and data.n_utterances must be >= 1, got {self.n_speakers} "
                f"and {self.n_utterances}"
            )
        if not 0 < self.min_crop_s <= self.max_crop_s:
            raise ValueError(
                f"need 0 < data.min_crop_s <= data.max_crop_s, got {self.min_crop_s}, "
                f"{self.max_crop_s}"
            )
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.max_unreadable_files < 0:
            raise ValueError(
                f"data.max_unreadable_files must be >= 0, got {self.max_unreadable_files}"
            )
        try:
            check_speed_factors(self.speed_factors)
        except ValueError as err:
            raise ValueError(f"data.speed_factors: {err}") from None


@dataclass
class TrainData:
    """The built pipeline.

    Attributes:
        items: the training manifest's items.
        dataset: what the sampler indexes (``labels``, ``speakers``): the files (and their
            speed copies), or the crop bank.
        sampler: the N x M batch sampler (resumable: ``state_dict`` / ``load_state_dict``).
        loader: the DataLoader yielding :class:`~voxvec.data.collate.TrainCollate` batches,
            each with ``"unreadable"`` added: the files found unreadable while reading it.
    """

    items: list[ManifestItem]
    dataset: UtteranceDataset | SpeedSpeakerDataset | CropBank
    sampler: SpeakerBatchSampler
    loader: DataLoader[Any]

    def summary(self) -> dict[str, Any]:
        """What the run trained on, for checkpoints and model cards."""
        summary = {
            "n_files": len(self.items),
            "n_speakers": len({item.speaker for item in self.items}),
            "n_classes": len(self.dataset.speakers),
        }
        if isinstance(self.dataset, CropBank):
            summary["n_crops"] = len(self.dataset)
        return summary


class _ReportUnreadable(Dataset[dict[str, Any]]):
    """``dataset`` whose batches carry the unreadable files ``base`` found (on the first item,
    ``"unreadable"``), so that they reach the main process from the DataLoader workers."""

    def __init__(
        self, dataset: UtteranceDataset | SpeedSpeakerDataset | CropBank, base: UtteranceDataset
    ) -> None:
        self.dataset = dataset
        self.base = base

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        items = self.dataset.__getitems__(indices)
        unreadable = self.base.take_unreadable()
        if unreadable:
            items[0] = {**items[0], "unreadable": unreadable}
        return items


class _Collate:
    """``collate`` of the items, with the unreadable files they carry as ``"unreadable"``."""

    def __init__(self, collate: TrainCollate) -> None:
        self.collate = collate

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        unreadable = [u for item in items for u in item.pop("unreadable", ())]
        batch: dict[str, Any] = dict(self.collate(items))
        batch["unreadable"] = unreadable
        return batch


def fill_cache(
    items: Sequence[ManifestItem], sample_rate: int, cache_dir: str, num_threads: int
) -> None:
    """Decode the files not in the decoded-audio cache yet, before training, logging progress
    (a first run on compressed audio otherwise spends minutes in its first steps with nothing
    to show). Unreadable files are logged here and handled as usual when read."""
    missing = uncached(items, sample_rate, cache_dir)
    if not missing:
        return
    logger.info(
        "filling the decoded-audio cache %s: %d of %d files are not in it yet",
        cache_dir,
        len(missing),
        len(items),
    )
    tic = time.perf_counter()
    UtteranceDataset.check(missing, sample_rate, cache_dir, num_threads, progress_s=10.0)
    logger.info("decoded-audio cache filled in %.0f s", time.perf_counter() - tic)


def training_files(
    config: DataConfig,
    items: Sequence[ManifestItem],
    sample_rate: int,
    seed: int,
    *,
    whole: bool,
) -> UtteranceDataset | SpeedSpeakerDataset:
    """The training items of ``config``: its files, plus their speed copies with
    ``speed_speakers`` (each a new speaker), as the training pipeline reads them.

    Args:
        config: the data section.
        items: the manifest's items.
        sample_rate: the model's sample rate in Hz.
        seed: seed of the excerpt windows and of the replacement of unreadable files.
        whole: read each file whole (to cut fixed crops of it, or to embed it whole); False
            reads a random window of ``2 * max_crop_s`` per visit (random crops are cut of it).
    """
    base = UtteranceDataset(
        items,
        sample_rate,
        cache_dir=config.cache_dir,
        max_load_s=None if whole else 2 * config.max_crop_s,
        seed=seed,
        replace_unreadable=True,
    )
    return SpeedSpeakerDataset(base, config.speed_factors) if config.speed_speakers else base


def training_data(
    config: DataConfig,
    sample_rate: int,
    min_samples: int,
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    crop_bank: float | None = None,
) -> TrainData:
    """Build the training data pipeline of ``config`` for a model.

    The crop lengths are checked against the model before the manifest is read. With
    ``cache_dir`` set, the files not cached yet are decoded first, with progress logged
    (:func:`fill_cache`).

    Args:
        config: the data section.
        sample_rate: the model's sample rate in Hz (audio is decoded to it).
        min_samples: the model's shortest input in samples.
        seed: seed of sampling, crops, windows and augmentation.
        rank: this process's rank (its shard of the batches).
        world_size: number of data-parallel processes.
        pin_memory: pin batches for faster host-to-GPU copies.
        crop_bank: train on a :class:`~voxvec.data.crops.CropBank` with this coverage (how
            many crops cover each sample of a long file, on average) instead of new random
            crops every batch; every file is decoded once, here, to plan it.

    Returns:
        The :class:`TrainData`.

    Raises:
        ValueError: ``min_crop_s`` shorter than the model's minimum input, too few speakers for
            a batch.
        FileNotFoundError: the manifest, or ``augment.noise_dir``, does not exist.
    """
    min_crop = round(config.min_crop_s * sample_rate)
    if min_crop < min_samples:
        raise ValueError(
            f"data.min_crop_s={config.min_crop_s} is shorter than the model's minimum input "
            f"({min_samples} samples at {sample_rate} Hz)"
        )
    max_crop = round(config.max_crop_s * sample_rate)
    items = read_manifest(config.train_csv)
    if config.cache_dir is not None:
        fill_cache(items, sample_rate, config.cache_dir, max(1, config.num_workers))
    files = training_files(config, items, sample_rate, seed, whole=crop_bank is not None)
    base = files.base if isinstance(files, SpeedSpeakerDataset) else files
    dataset: UtteranceDataset | SpeedSpeakerDataset | CropBank
    collate: CropCollate | PadCollate
    if crop_bank is None:
        dataset, collate = files, CropCollate(min_crop, max_crop, seed)
    else:
        logger.info("planning the crop bank of %d files (each decoded once)", len(items))
        dataset, collate = CropBank(files, min_crop, max_crop, crop_bank, seed), PadCollate()
        logger.info("crop bank: %d crops of %d items", len(dataset), len(files))
    sampler = SpeakerBatchSampler(
        dataset.labels,
        config.n_speakers,
        config.n_utterances,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    augmenter = Augmenter(config.augment, sample_rate) if config.augment.enabled else None
    loader = DataLoader(
        _ReportUnreadable(dataset, base),
        batch_sampler=sampler,
        collate_fn=_Collate(TrainCollate(collate, augmenter, seed)),
        num_workers=config.num_workers,
        pin_memory=pin_memory,
        persistent_workers=config.num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    return TrainData(items, dataset, sampler, loader)
