"""Knowledge distillation in ``voxvec train``: the teacher, its embeddings, and their cache.

The ``distill`` section (:class:`DistillConfig`) names a teacher, any model voxvec loads (a
pretrained name such as ``campplus-zh-en``, a bundle, a converted checkpoint), and the weights of
the distillation terms of :class:`voxvec.losses.distill.DistillLoss`, which are added to the
label objective of the ``loss`` section.

Where the teacher's embeddings come from:

- ``cache: true`` (the default): training draws from a fixed
  :class:`~voxvec.data.crops.CropBank` (crops of every file and of every speed copy, fixed once)
  and :func:`teacher_embeddings` embeds the bank once, before the first step. The teacher sees
  each clean crop (speed copies are new voices, labelled by the teacher for free); the student
  sees the same samples with the identity-preserving augmentation on top (noise, reverb,
  babble, gain, SpecAugment), so it learns to put degraded audio where the teacher puts the clean
  crop. The embeddings are stored in shards under ``cache_dir`` (each written atomically), keyed
  by the bank (files, their sizes and modification times, speeds, crops) and the teacher's
  weights: an interrupted pass resumes at its first missing shard, a resumed run or a new run on
  the same data and seed reuses them, and anything that changes them makes a new key. Under
  ``torchrun`` the ranks share the shards.
- ``target: utterance`` (with the cache): the teacher embeds every training item (each file and
  each speed copy) whole, once, into the same kind of cache, and the student trains on new random
  crops at every visit, as without a teacher, each pulled toward its whole utterance's
  embedding. The crops stay as varied as in plain training: on the validation split a fixed
  bank of crops, even with the teacher's terms at ~0, cost noise robustness against new random
  crops (BENCHMARKS.md, "Distillation").
- ``cache: false``: the teacher embeds every augmented batch, exactly the student's input, on
  the fly (affordable on a GPU; on a 2-core CPU it costs more than the student's step).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from voxvec.atomic import atomic_path
from voxvec.audio.io import resample
from voxvec.audio.windows import pad_batch
from voxvec.data.crops import CropBank
from voxvec.data.dataset import UtteranceDataset, derive_seed
from voxvec.data.loader import DataConfig, training_files
from voxvec.data.manifest import ManifestItem
from voxvec.data.speed import SpeedSpeakerDataset
from voxvec.losses.distill import DistillLoss
from voxvec.models.base import SpeakerEncoder
from voxvec.runtime import embed_waveforms

logger = logging.getLogger(__name__)

SHARD_SIZE = 2048
"""Bank crops per cache shard: the work an interrupted teacher pass can lose."""

# Salt of the seeded choice of the crops that fit the initial projection.
_FIT_STREAM = 0xF1

# Bump when the teacher's embeddings of an unchanged bank would change (bank reading, padding).
_CACHE_VERSION = 2


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation from a teacher model (off unless teacher is set).

    Attributes:
        teacher: the teacher, any model voxvec can load: a pretrained name (campplus-zh-en),
            a bundle or a converted checkpoint path; null trains without distillation.
        cosine_weight: weight of the cosine distance between the teacher's embedding of a crop
            and the student's, mapped into the teacher's space by a learned linear projection.
        similarity_weight: weight of one minus the correlation between the student's and the
            teacher's cosine similarities of the pairs of a batch.
        cache: embed a fixed bank of training crops with the teacher once, before the first
            step, and reuse it every epoch (the teacher sees clean crops, speed copies
            included; the student the same crops augmented); false runs the teacher on every
            augmented batch instead (exact but slow on a CPU).
        target: with cache, what the teacher embeds: 'crop' (the fixed crop bank, the very
            samples the student sees) or 'utterance' (each training item whole; the student
            sees new random crops every visit, each with its utterance's target).
        coverage: with cache and target 'crop', how many bank crops cover each sample of a
            file longer than data.max_crop_s, on average (a 10 s file with crops of 1.5-3 s
            gets round(coverage * 10 / 2.25) crops; more crops, more variety, a longer teacher
            pass); shorter files are one crop, the whole file.
        cache_dir: where the teacher's embeddings of the bank are kept (resumable shards);
            null = checkpoint.path/teacher.
        batch_size: crops per teacher forward pass.
        fit_crops: with cache, a new run first sets the projection of the cosine term to the
            least-squares map from the student's embeddings of this many bank crops to the
            teacher's (0: a random projection).

    Raises:
        ValueError: a negative weight, both weights 0 with a teacher, an unknown target, target
            'utterance' without the cache, coverage or batch size not positive.
    """

    teacher: str | None = None
    cosine_weight: float = 1.0
    similarity_weight: float = 0.0
    cache: bool = True
    target: str = "crop"
    coverage: float = 1.0
    cache_dir: str | None = None
    batch_size: int = 32
    fit_crops: int = 2048

    def __post_init__(self) -> None:
        checks = [
            (
                self.cosine_weight >= 0 and self.similarity_weight >= 0,
                "cosine_weight and similarity_weight must be >= 0, got "
                f"{self.cosine_weight} and {self.similarity_weight}",
            ),
            (
                self.teacher is None or self.cosine_weight + self.similarity_weight > 0,
                "a teacher needs cosine_weight or similarity_weight > 0",
            ),
            (
                self.target in ("crop", "utterance"),
                f"target must be 'crop' or 'utterance', got {self.target!r}",
            ),
            (
                self.cache or self.target == "crop",
                "target 'utterance' needs cache: true (the teacher embeds each item once)",
            ),
            (self.coverage > 0, f"coverage must be > 0, got {self.coverage}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.fit_crops >= 0, f"fit_crops must be >= 0, got {self.fit_crops}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"distill.{message}")

    @property
    def enabled(self) -> bool:
        """Whether the run distils (a teacher is set)."""
        return self.teacher is not None

    @property
    def crop_bank(self) -> float | None:
        """The coverage of the fixed crop bank the student trains on; None: new random crops."""
        return self.coverage if self.enabled and self.cache and self.target == "crop" else None

    def folder(self, run_dir: str | os.PathLike[str]) -> Path:
        """The cache folder: ``cache_dir``, or ``run_dir/teacher``."""
        return Path(self.cache_dir) if self.cache_dir else Path(run_dir) / "teacher"


def teacher_input(
    wav: Tensor, lengths: Tensor, sample_rate: int, teacher: SpeakerEncoder
) -> tuple[Tensor, Tensor]:
    """A padded batch at ``sample_rate``, resampled to the teacher's rate (unchanged if equal)."""
    if teacher.sample_rate == sample_rate:
        return wav, lengths
    waves = [
        resample(w[: int(n)].detach().cpu().numpy(), sample_rate, teacher.sample_rate)
        for w, n in zip(wav, lengths, strict=True)
    ]
    batch, new_lengths = pad_batch(waves)
    return batch.to(wav.device), new_lengths.to(wav.device)


def utterance_bank(
    config: DataConfig, items: Sequence[ManifestItem], sample_rate: int, seed: int
) -> CropBank:
    """The bank of ``target: utterance``: every training item whole, one entry each, so entry
    ``i`` is item ``i`` of the student's dataset (:func:`voxvec.data.loader.training_files`)."""
    files = training_files(config, items, sample_rate, seed, whole=True)
    return CropBank(files, 1, sys.maxsize, 1.0, seed)


def _weights_digest(model: SpeakerEncoder) -> str:
    digest = hashlib.sha256(f"{model.arch}\0{model.sample_rate}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def bank_key(bank: CropBank, teacher: SpeakerEncoder) -> str:
    """The cache key of the teacher's embeddings of ``bank`` (see the module docstring)."""
    files = bank.dataset
    base = files.base if isinstance(files, SpeedSpeakerDataset) else files
    assert isinstance(base, UtteranceDataset)
    digest = hashlib.sha256(f"v{_CACHE_VERSION}\0{_weights_digest(teacher)}".encode())
    for item in base.items:
        with open(item.path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    factors = files.factors if isinstance(files, SpeedSpeakerDataset) else (1.0,)
    digest.update(json.dumps([base.sample_rate, list(factors)]).encode())
    digest.update(np.asarray(bank.crops, dtype=np.int64).tobytes())
    return digest.hexdigest()[:24]


def _embed_shard(
    bank: CropBank, indices: range, teacher: SpeakerEncoder, batch_size: int
) -> np.ndarray:
    """The teacher's embeddings of bank entries ``indices``; zero rows for crops too short."""
    waves: list[np.ndarray] = []
    last, item = -1, {}
    for k in indices:  # the crops of an item are consecutive: read each item once
        if bank.crops[k].item != last:
            last = bank.crops[k].item
            item = bank.dataset[last]
        wav = bank.cut(item, k)["wav"].numpy()
        if teacher.sample_rate != bank.sample_rate:
            wav = resample(wav, bank.sample_rate, teacher.sample_rate)
        waves.append(wav)
    out = np.zeros((len(waves), teacher.embed_dim), dtype=np.float32)
    usable = [i for i, w in enumerate(waves) if len(w) >= teacher.min_samples]
    if usable:
        emb = embed_waveforms(teacher, [waves[i] for i in usable], batch_size=batch_size)
        out[usable] = emb.numpy()
    return out


def teacher_embeddings(
    bank: CropBank,
    teacher: SpeakerEncoder,
    folder: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    rank: int = 0,
    world_size: int = 1,
) -> Path:
    """Embed every crop of ``bank`` with ``teacher`` into cache shards, skipping those done.

    Rank ``r`` of ``world_size`` embeds shards ``r, r + world_size, ...``; call
    :func:`load_teacher_embeddings` on every rank after a barrier.

    Args:
        bank: the crop bank.
        teacher: the teacher, in eval mode on its device.
        folder: the cache folder (``distill.cache_dir``).
        batch_size: crops per forward pass.
        rank: this process's rank.
        world_size: number of processes.

    Returns:
        The folder of this bank's shards (``folder/<key>``).
    """
    shard_dir = Path(folder) / bank_key(bank, teacher)
    n_shards = -(-len(bank) // SHARD_SIZE)
    todo = [
        s
        for s in range(rank, n_shards, world_size)
        if not (shard_dir / f"shard_{s:05d}.npy").is_file()
    ]
    if not todo:
        return shard_dir
    logger.info(
        "teacher %s: embedding %d of %d shards of %d bank crops into %s",
        teacher.arch,
        len(todo),
        n_shards,
        len(bank),
        shard_dir,
    )
    tic = time.perf_counter()
    audio_s = 0.0
    for done, s in enumerate(todo, 1):
        indices = range(s * SHARD_SIZE, min(len(bank), (s + 1) * SHARD_SIZE))
        emb = _embed_shard(bank, indices, teacher, batch_size)
        with atomic_path(shard_dir / f"shard_{s:05d}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, emb)
        audio_s += sum(bank.crops[k].length for k in indices) / bank.sample_rate
        seconds = time.perf_counter() - tic
        logger.info(
            "teacher pass: shard %d/%d, %.0f audio-s at %.1fx real time, %.0f s left",
            done,
            len(todo),
            audio_s,
            audio_s / seconds,
            seconds / done * (len(todo) - done),
        )
    return shard_dir


def load_teacher_embeddings(shard_dir: str | os.PathLike[str], n_crops: int, dim: int) -> Tensor:
    """The ``(n_crops, dim)`` teacher embeddings from the shards of :func:`teacher_embeddings`.

    Raises:
        FileNotFoundError: a shard is missing.
        ValueError: a shard of the wrong shape.
    """
    n_shards = -(-n_crops // SHARD_SIZE)
    parts = []
    for s in range(n_shards):
        path = Path(shard_dir) / f"shard_{s:05d}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"teacher embedding shard missing: {path}")
        part = np.load(path)
        expected = (min(SHARD_SIZE, n_crops - s * SHARD_SIZE), dim)
        if part.shape != expected:
            raise ValueError(
                f"teacher embedding shard {path} has shape {part.shape}, expected {expected}: "
                "delete it to recompute it"
            )
        parts.append(part)
    return torch.from_numpy(np.concatenate(parts))


def fit_initial_projection(
    loss: DistillLoss,
    student: SpeakerEncoder,
    bank: CropBank,
    targets: Tensor,
    n_crops: int,
    seed: int,
) -> float:
    """Start ``loss``'s projection at the least-squares map from the student's embeddings of a
    seeded choice of ``n_crops`` bank crops to their ``targets`` (see
    :meth:`voxvec.losses.distill.DistillLoss.fit_projection`).

    The student is embedded in eval mode (no SpecAugment) and left in eval mode.

    Returns:
        The mean cosine similarity of the projected student to the teacher on those crops.
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, _FIT_STREAM))
    picks = torch.randperm(len(bank), generator=generator)[:n_crops].tolist()
    student.eval()
    embeddings = embed_waveforms(student, [bank[k]["wav"] for k in picks], batch_size=32)
    return loss.fit_projection(embeddings.to(targets.device), targets[picks])
