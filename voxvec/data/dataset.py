"""Utterance dataset over a ``path,speaker`` manifest, with an optional on-disk audio cache.

:class:`UtteranceDataset` decodes one file per item (in DataLoader workers) with
:func:`voxvec.audio.io.load` at the model's sample rate and returns the whole waveform; random
crops are taken later, per batch, by :class:`voxvec.data.collate.CropCollate`.

Decoding compressed audio (Ogg/Opus especially) and resampling can cost more CPU than a small
model's training step. With ``cache_dir`` set, each decoded and resampled waveform is stored once
as a ``.npy`` file and later read back memory-mapped, so every later epoch (and every later run at
the same sample rate) skips decoding. The cache key hashes the file's resolved path, its
modification time and size, and the sample rate, so an edited file or a different rate never
reads a stale entry; entries are written atomically (temporary file + rename), so concurrent
workers or ranks sharing one cache folder are safe. Delete the folder to reclaim the space.

Unreadable files: ``__getitem__`` raises an error naming the file (and the dataset item), unless
``replace_unreadable`` is set: then the item is replaced by the next readable file of the same
speaker (a choice that depends only on which files are unreadable, so a resumed run reads the
same batches) and the failure is kept for :meth:`UtteranceDataset.take_unreadable` to report.
To drop bad files before training instead, filter the items with
:meth:`UtteranceDataset.check` first::

    good, bad = UtteranceDataset.check(items, sample_rate=16000, cache_dir="cache")
    dataset = UtteranceDataset(good, sample_rate=16000, cache_dir="cache")
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from voxvec.atomic import atomic_path
from voxvec.audio.io import AudioError, load
from voxvec.data.manifest import ManifestItem

logger = logging.getLogger(__name__)

# Bump when the decoded audio of an unchanged file would change (decoder or resampler settings).
_CACHE_VERSION = 1


def derive_seed(*values: int) -> int:
    """Mix non-negative integers into one seed for ``torch.Generator.manual_seed``.

    Uses numpy's ``SeedSequence`` so nearby inputs (seed 0 vs 1, index 5 vs 6) give unrelated
    streams.

    Args:
        values: non-negative integers, e.g. ``(seed, epoch)`` or ``(seed, *item_indices)``.

    Returns:
        An integer in ``[0, 2**63)``.

    Raises:
        ValueError: a value is negative.
    """
    if any(v < 0 for v in values):
        raise ValueError(f"derive_seed needs non-negative integers, got {values}")
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


def cache_path(path: str | os.PathLike[str], sample_rate: int, cache_dir: str | Path) -> Path:
    """Where the cached waveform of ``path`` at ``sample_rate`` lives under ``cache_dir``.

    Args:
        path: the audio file (must exist: its mtime and size are part of the key).
        sample_rate: the decoded sample rate in Hz.
        cache_dir: the cache folder.

    Returns:
        ``cache_dir/<2 hex>/<sha256>.npy``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    resolved = Path(path).resolve()
    st = os.stat(resolved)
    key = f"v{_CACHE_VERSION}\0{resolved}\0{st.st_mtime_ns}\0{st.st_size}\0{int(sample_rate)}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    return Path(cache_dir) / digest[:2] / f"{digest}.npy"


def uncached(
    items: Sequence[ManifestItem], sample_rate: int, cache_dir: str | Path
) -> list[ManifestItem]:
    """The items whose decoded audio at ``sample_rate`` is not in ``cache_dir`` yet (a missing
    file counts as not cached)."""
    missing = []
    for item in items:
        try:
            if not cache_path(item.path, sample_rate, cache_dir).is_file():
                missing.append(item)
        except OSError:
            missing.append(item)
    return missing


def load_audio(
    path: str | os.PathLike[str], sample_rate: int, cache_dir: str | Path | None = None
) -> np.ndarray:
    """Decode ``path`` at ``sample_rate``, through the on-disk cache when ``cache_dir`` is set.

    A cache hit is returned memory-mapped (read-only), so slicing it reads only that part from
    disk. A miss decodes with :func:`voxvec.audio.io.load` and stores the result; an unreadable
    cache entry is logged and rewritten; a cache write that fails (e.g. a full disk) is logged and
    the decoded audio is returned anyway.

    Args:
        path: the audio file.
        sample_rate: wanted sample rate in Hz.
        cache_dir: cache folder (created on first write), or None for no caching.

    Returns:
        float32 ``(T,)`` waveform in [-1, 1] (a read-only memory map on a cache hit).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AudioError: ``path`` cannot be decoded (the message names it).
    """
    if cache_dir is None:
        return load(path, sample_rate)
    target = cache_path(path, sample_rate, cache_dir)
    if target.is_file():
        try:
            cached = np.load(target, mmap_mode="r")
            if cached.ndim == 1 and cached.dtype == np.float32 and cached.size > 0:
                return cached
            logger.warning("cache entry %s for '%s' is malformed; rewriting it", target, path)
        except (OSError, ValueError) as e:
            logger.warning(
                "cache entry %s for '%s' is unreadable (%s); rewriting it", target, path, e
            )
    wav = load(path, sample_rate)
    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.save(f, wav)
    except OSError as e:
        logger.warning("could not write cache entry %s for '%s': %s", target, path, e)
    return wav


class UtteranceDataset(Dataset[dict[str, Any]]):
    """One item per audio file of a manifest: the decoded waveform and the speaker label.

    Args:
        items: the files and their speaker ids (e.g. from
            :func:`voxvec.data.manifest.read_manifest`).
        sample_rate: sample rate in Hz to decode (and resample) to, the model's.
        cache_dir: folder for the decoded-audio cache (see the module docstring), or None.
        max_load_s: if set, files longer than this many seconds are cut to a random window of
            this length, so a very long recording does not travel whole through the DataLoader
            (from a cache hit only the window is read from disk; without a cache the file is
            still decoded whole). Keep it above the longest training crop. The window is drawn
            from a generator seeded by ``(seed, index)`` when an item is read alone, and by
            ``(seed, batch indices, position)`` when the DataLoader reads a whole batch
            through :meth:`__getitems__` (as it does with a batch sampler), so batches are
            reproducible whatever the worker count and a resumed run reads the same windows.
        seed: seed of the ``max_load_s`` windows (unused otherwise).
        replace_unreadable: replace an item whose file cannot be read by the next readable file
            of its speaker (see the module docstring) instead of raising.

    Attributes:
        items: the items, in the given order.
        speakers: the sorted unique speaker ids.
        labels: per item, the index of its speaker in ``speakers``.

    Raises:
        ValueError: no items, a non-positive sample rate, ``max_load_s`` or a negative seed.
    """

    def __init__(
        self,
        items: Sequence[ManifestItem],
        sample_rate: int,
        cache_dir: str | Path | None = None,
        max_load_s: float | None = None,
        seed: int = 0,
        replace_unreadable: bool = False,
    ) -> None:
        if len(items) == 0:
            raise ValueError("UtteranceDataset needs at least one item, got an empty list")
        if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
        if max_load_s is not None and not max_load_s > 0:
            raise ValueError(f"max_load_s must be > 0 seconds or None, got {max_load_s}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.items = list(items)
        self.sample_rate = int(sample_rate)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_load_s = max_load_s
        self.seed = seed
        self.speakers: list[str] = sorted({item.speaker for item in self.items})
        index = {speaker: i for i, speaker in enumerate(self.speakers)}
        self.labels: list[int] = [index[item.speaker] for item in self.items]
        self.replace_unreadable = replace_unreadable
        self._of_speaker: list[list[int]] = [[] for _ in self.speakers]
        for i, label in enumerate(self.labels):
            self._of_speaker[label].append(i)
        self._unreadable: dict[int, str] = {}  # found in this process, by item: the reason
        self._reported: set[int] = set()

    def __len__(self) -> int:
        return len(self.items)

    def _decode(self, i: int) -> np.ndarray:
        item = self.items[i]
        try:
            return load_audio(item.path, self.sample_rate, self.cache_dir)
        except AudioError as e:
            raise AudioError(f"dataset item {i} (speaker {item.speaker!r}): {e}") from e
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"dataset item {i} (speaker {item.speaker!r}): audio file not found: {item.path}"
            ) from e

    def _decode_or_replace(self, i: int) -> np.ndarray:
        """Item ``i``'s audio or, with ``replace_unreadable``, that of the next readable file
        of its speaker (in item order, wrapping around)."""
        if not self.replace_unreadable:
            return self._decode(i)
        same = self._of_speaker[self.labels[i]]
        start = same.index(i)
        for j in same[start:] + same[:start]:
            if j in self._unreadable:
                continue
            try:
                return self._decode(j)
            except (AudioError, OSError) as e:
                self._unreadable[j] = str(e)
                logger.warning("%s (replaced by another file of the speaker)", e)
        raise AudioError(
            f"every file of speaker {self.items[i].speaker!r} is unreadable ({len(same)} files, "
            f"e.g. {self._unreadable[i]}); remove the speaker or fix its files"
        )

    def decoded(self, i: int) -> np.ndarray:
        """Item ``i``'s whole decoded waveform, as :meth:`__getitem__` reads it before any
        ``max_load_s`` window (a read-only memory map on a cache hit; replaced as there).

        Raises:
            As :meth:`__getitem__`.
        """
        return self._decode_or_replace(i)

    def take_unreadable(self) -> list[tuple[int, str, str]]:
        """The unreadable files found since the last call: ``(item, path, reason)`` each.

        Only with ``replace_unreadable``; each file is given once per process.
        """
        new = sorted(set(self._unreadable) - self._reported)
        self._reported.update(new)
        return [(i, str(self.items[i].path), self._unreadable[i]) for i in new]

    def _read(self, i: int, generator: torch.Generator) -> dict[str, Any]:
        if not 0 <= i < len(self.items):
            raise IndexError(f"dataset index {i} out of range [0, {len(self.items)})")
        wav = self._decode_or_replace(i)
        if self.max_load_s is not None:
            window = max(1, round(self.max_load_s * self.sample_rate))
            if wav.shape[0] > window:
                start = int(torch.randint(0, wav.shape[0] - window + 1, (1,), generator=generator))
                wav = wav[start : start + window]
        # A copy: cache hits are read-only memory maps and slices keep their parent alive.
        return {
            "wav": torch.from_numpy(np.array(wav, dtype=np.float32)),
            "speaker": self.labels[i],
            "index": i,
        }

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Decode item ``i``.

        Returns:
            ``{"wav": float32 Tensor (T,), "speaker": int label, "index": i}``.

        Raises:
            IndexError: ``i`` out of range.
            FileNotFoundError: the file is missing (the message names it and the item); with
                ``replace_unreadable``, only when every file of the speaker is.
            AudioError: the file cannot be decoded (the message names it and the item); with
                ``replace_unreadable``, only when no file of the speaker can.
        """
        generator = torch.Generator().manual_seed(derive_seed(self.seed, i))
        return self._read(i, generator)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Decode a batch of items (the DataLoader calls this when it has a batch sampler).

        Same as ``[self[i] for i in indices]`` except that ``max_load_s`` windows are seeded by
        the whole batch, so a file repeated in one batch gets different windows.

        Raises:
            As :meth:`__getitem__`.
        """
        generator = torch.Generator().manual_seed(derive_seed(self.seed, *indices))
        return [self._read(int(i), generator) for i in indices]

    @classmethod
    def check(
        cls,
        items: Sequence[ManifestItem],
        sample_rate: int,
        cache_dir: str | Path | None = None,
        num_threads: int = 1,
        progress_s: float | None = None,
    ) -> tuple[list[ManifestItem], list[tuple[ManifestItem, str]]]:
        """Decode every file once and split the items into readable and unreadable ones.

        Each unreadable file is logged as a warning with the reason. This costs one full decode
        per file; with ``cache_dir`` the decoded audio is stored, so the check also fills the
        cache the training run then reads.

        Args:
            items: the files to check.
            sample_rate: sample rate in Hz to decode to (the dataset's).
            cache_dir: the dataset's cache folder, or None.
            num_threads: files decoded in parallel (decoding releases the GIL).
            progress_s: log how far the check is every this many seconds (None: silent).

        Returns:
            ``(good, bad)``: the readable items in input order, and ``(item, reason)`` for each
            unreadable one.
        """

        def reason(item: ManifestItem) -> str | None:
            try:
                load_audio(item.path, sample_rate, cache_dir)
            except (AudioError, OSError) as e:
                return str(e)
            return None

        reasons: list[str | None] = []
        tic = last = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            for why in pool.map(reason, items):
                reasons.append(why)
                now = time.perf_counter()
                if (
                    progress_s is not None
                    and now - last >= progress_s
                    and len(reasons) < len(items)
                ):
                    last = now
                    rate = len(reasons) / (now - tic)
                    logger.info(
                        "decoded %d of %d files (%.1f files/s, about %.0f s left)",
                        len(reasons),
                        len(items),
                        rate,
                        (len(items) - len(reasons)) / rate,
                    )
        good: list[ManifestItem] = []
        bad: list[tuple[ManifestItem, str]] = []
        for item, why in zip(items, reasons, strict=True):
            if why is None:
                good.append(item)
            else:
                logger.warning(
                    "skipping unreadable file %s (speaker %r): %s", item.path, item.speaker, why
                )
                bad.append((item, why))
        if bad:
            logger.warning("%d of %d files are unreadable and were left out", len(bad), len(items))
        return good, bad
