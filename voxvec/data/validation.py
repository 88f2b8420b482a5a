"""The fixed validation set of a training run: a seeded choice of files, decoded once.

Validation during training must be cheap and comparable from one validation to the next and
across runs, so it embeds the same files every time: :func:`select_validation` picks up to
``n_speakers`` x ``n_utterances`` files of a manifest with a seeded generator, and
:func:`load_validation` decodes them and cuts each to its centre ``max_s`` seconds (no sliding
windows: one pass of the model per file). A speaker with a single file (the LibriSpeech sample
has one 14 s file per speaker) would give no target trial, so that file can be cut into
consecutive segments of ``max_s / 2`` seconds instead, which then count as the speaker's
utterances (as ``bench/accuracy.py`` does).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from voxvec.data.dataset import load_audio
from voxvec.data.manifest import ManifestItem, group_by_speaker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationSet:
    """Decoded validation files, speaker-major.

    Attributes:
        waves: ``(T_i,)`` float32 waveforms at the model's sample rate.
        labels: ``(n_files,)`` int64 speaker index per file (into the sorted speaker ids).
        names: the speaker id of each file.
    """

    waves: list[Tensor]
    labels: np.ndarray
    names: list[str]


def select_validation(
    items: Sequence[ManifestItem], n_speakers: int, n_utterances: int, seed: int
) -> list[ManifestItem]:
    """A fixed seeded choice of up to ``n_speakers`` x ``n_utterances`` items, speaker-major.

    Args:
        items: the validation manifest.
        n_speakers: speakers to choose (all of them if there are fewer).
        n_utterances: files per speaker (all of a speaker's files if it has fewer).
        seed: seed of the choice; the same seed and items give the same choice.

    Returns:
        The chosen items, speakers in sorted order, each speaker's files in manifest order.
    """
    groups = group_by_speaker(items)
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    chosen = sorted(rng.choice(len(names), size=min(n_speakers, len(names)), replace=False))
    out: list[ManifestItem] = []
    for k in chosen:
        files = groups[names[k]]
        picks = sorted(rng.choice(len(files), size=min(n_utterances, len(files)), replace=False))
        out.extend(files[i] for i in picks)
    return out


def load_validation(
    items: Sequence[ManifestItem],
    sample_rate: int,
    *,
    max_s: float,
    n_segments: int = 1,
    min_samples: int = 1,
    cache_dir: str | Path | None = None,
    train_speakers: Collection[str] = (),
) -> ValidationSet:
    """Decode validation files and cut each to its centre ``max_s`` seconds.

    Args:
        items: the chosen files (e.g. from :func:`select_validation`).
        sample_rate: the model's sample rate in Hz.
        max_s: longest excerpt kept per file, in seconds.
        n_segments: the only file of a speaker with one file is cut into up to this many
            consecutive segments of ``max_s / 2`` seconds around its centre, when at least two
            fit (else it is kept like any other file); 1 keeps every file whole.
        min_samples: files shorter than this (the model's minimum input) are skipped with a
            warning.
        cache_dir: the decoded-audio cache (see :mod:`voxvec.data.dataset`), or None.
        train_speakers: speaker ids of the training data; validation speakers among them are
            reported in a warning (their EER is optimistic).

    Returns:
        The decoded :class:`ValidationSet`.

    Raises:
        FileNotFoundError, AudioError: a file is missing or cannot be decoded (named).
    """
    shared = {i.speaker for i in items} & set(train_speakers)
    if shared:
        logger.warning(
            "%d validation speaker(s) also in the training data (e.g. %s): the validation EER "
            "is optimistic; split by speaker (voxvec prepare --valid-speakers)",
            len(shared),
            sorted(shared)[0],
        )
    max_samples = round(max_s * sample_rate)
    segment = max_samples // 2
    files_of = Counter(item.speaker for item in items)
    waves: list[Tensor] = []
    names: list[str] = []
    for item in items:
        wav = load_audio(item.path, sample_rate, cache_dir)
        if wav.shape[0] < min_samples:
            logger.warning("validation file %s is too short for the model; skipped", item.path)
            continue
        pieces = min(n_segments, wav.shape[0] // segment) if files_of[item.speaker] == 1 else 1
        pieces, length = (pieces, segment) if pieces >= 2 else (1, max_samples)
        start = max(0, (wav.shape[0] - pieces * length) // 2)
        for k in range(pieces):
            piece = wav[start + k * length : start + (k + 1) * length]
            waves.append(torch.from_numpy(np.array(piece)))
            names.append(item.speaker)
    index = {name: i for i, name in enumerate(sorted(set(names)))}
    labels = np.array([index[n] for n in names], dtype=np.int64)
    logger.info("validation set: %d files of %d speakers", len(waves), len(index))
    return ValidationSet(waves, labels, names)
