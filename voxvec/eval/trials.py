"""Verification trial lists: read, write and generate them; pair lists and score files.

The trial format is VoxCeleb's (``veri_test2.txt``): one trial a line, ``label path1 path2``
separated by whitespace, label 1 when both files are of the same speaker and 0 otherwise. Blank
lines and lines starting with ``#`` are skipped. Relative paths are relative to a root folder
(by default the trial file's own folder), as in manifests.

Pairs to score without labels, and scores, are CSV files with a header (any file name works,
commas and quotes included): a pair list has the columns ``path1,path2`` (others are ignored,
so a score file is also a pair list); a score file adds a column per score (``score``, the
cosine; ``as_norm`` with a cohort) and ``label`` for trials.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from voxvec.atomic import atomic_open
from voxvec.data.manifest import ManifestItem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    """One verification trial: are ``path1`` and ``path2`` the same speaker (``label`` 1)?"""

    label: int
    path1: Path
    path2: Path


def read_trials(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> list[Trial]:
    """Read a ``label path1 path2`` trial list.

    Args:
        path: the trial file.
        root: folder that relative paths are relative to; None means the trial file's folder
            (for VoxCeleb's official lists pass the folder holding the ``idNNNNN`` folders).

    Returns:
        The trials in file order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line (named by its number) does not have three fields or its label is not
            0 or 1; or the file holds no trial.
    """
    trial_path = Path(path)
    if not trial_path.is_file():
        raise FileNotFoundError(f"trial list not found: {trial_path}")
    base = trial_path.parent if root is None else Path(root)
    trials: list[Trial] = []
    with trial_path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if len(fields) != 3 or fields[0] not in ("0", "1"):
                raise ValueError(
                    f"{trial_path}, line {line_no}: expected 'label path1 path2' with label 0 or "
                    f"1 and no spaces in paths, got {text!r}"
                )
            trials.append(Trial(int(fields[0]), base / fields[1], base / fields[2]))
    if not trials:
        raise ValueError(f"{trial_path}: no trials")
    return trials


def write_trials(
    trials: Iterable[Trial],
    path: str | os.PathLike[str],
    relative_to: str | os.PathLike[str] | None = None,
) -> None:
    """Write trials as ``label path1 path2`` lines (atomically: a temporary file, then a rename).

    Args:
        trials: the trials.
        path: the file to write; its folder is created if needed.
        relative_to: write paths relative to this folder (with ``..`` where needed), usually the
            trial file's own folder so that :func:`read_trials` finds them again; None writes
            them as they are.

    Raises:
        ValueError: a path contains whitespace (the format cannot hold it).
    """
    base = None if relative_to is None else os.path.abspath(relative_to)

    def text(p: Path) -> str:
        name = str(p) if base is None else os.path.relpath(p, base)
        if any(c.isspace() for c in name):
            raise ValueError(f"cannot write a trial path with whitespace: {name!r}")
        return name

    with atomic_open(path) as f:
        for trial in trials:
            f.write(f"{trial.label} {text(trial.path1)} {text(trial.path2)}\n")


def read_pairs(path: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """Read a ``path1,path2`` CSV of file pairs (other columns ignored).

    Relative paths are relative to the CSV's folder.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no ``path1`` and ``path2`` columns, an empty field (named by its line), or
            no pair.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"pair list not found: {csv_path}")
    pairs: list[tuple[Path, Path]] = []
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"path1", "path2"} <= set(reader.fieldnames or ()):
            raise ValueError(
                f"{csv_path}: expected a header with the columns path1,path2, got "
                f"{reader.fieldnames}"
            )
        for row in reader:
            if not row["path1"] or not row["path2"]:
                raise ValueError(f"{csv_path}, line {reader.line_num}: empty path1 or path2")
            pairs.append((csv_path.parent / row["path1"], csv_path.parent / row["path2"]))
    if not pairs:
        raise ValueError(f"{csv_path}: no pairs")
    return pairs


def write_scores(
    out: str | os.PathLike[str] | TextIO,
    pairs: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
    scores: dict[str, np.ndarray],
    labels: Sequence[int] | None = None,
) -> None:
    """Write one CSV line per pair: ``path1,path2``, each score column, ``label``.

    Args:
        out: the file to write (atomically; its folder is created if needed), or an open text
            stream (``sys.stdout``).
        pairs: the two files of each line (written normalised: ``a/../b`` as ``b``).
        scores: column name -> ``(len(pairs),)`` scores (written with 6 decimals).
        labels: 1 same speaker, 0 different, per pair; None leaves the column out.

    Raises:
        ValueError: a score column or ``labels`` does not have one value per pair.
    """
    columns = {**scores, **({} if labels is None else {"label": labels})}
    for name, column in columns.items():
        if len(column) != len(pairs):
            raise ValueError(f"{len(column)} values in column {name!r} for {len(pairs)} pairs")
    if not isinstance(out, (str, os.PathLike)):
        _write_score_rows(out, pairs, scores, labels)
        return
    with atomic_open(out) as f:
        _write_score_rows(f, pairs, scores, labels)


def _write_score_rows(
    f: TextIO,
    pairs: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
    scores: dict[str, np.ndarray],
    labels: Sequence[int] | None,
) -> None:
    writer = csv.writer(f)
    writer.writerow(["path1", "path2", *scores, *([] if labels is None else ["label"])])
    for k, (path1, path2) in enumerate(pairs):
        row = [os.path.normpath(path1), os.path.normpath(path2)]
        row += [f"{float(column[k]):.6f}" for column in scores.values()]
        writer.writerow(row + ([] if labels is None else [int(labels[k])]))


def _triangle(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair ``(a, b)`` with ``a < b`` for pair index ``m = b * (b - 1) / 2 + a``."""
    b = ((1 + np.sqrt(1 + 8 * m.astype(np.float64))) // 2).astype(np.int64)
    b -= (b * (b - 1) // 2) > m  # float rounding can overshoot by one
    b += ((b + 1) * b // 2) <= m
    return m - b * (b - 1) // 2, b


def _target_pairs(groups: list[np.ndarray], n: int | None, rng: np.random.Generator) -> np.ndarray:
    """``(n, 2)`` distinct same-speaker index pairs, uniformly drawn (all of them if n is None)."""
    sizes = np.array([len(g) * (len(g) - 1) // 2 for g in groups], dtype=np.int64)
    total = int(sizes.sum())
    picks = np.arange(total) if n is None or n >= total else rng.choice(total, n, replace=False)
    offsets = np.r_[0, np.cumsum(sizes)]
    group = np.searchsorted(offsets, picks, side="right") - 1
    local_a, local_b = _triangle(picks - offsets[group])
    pairs = np.empty((picks.size, 2), dtype=np.int64)
    for g in np.unique(group):
        sel = group == g
        pairs[sel, 0] = groups[g][local_a[sel]]
        pairs[sel, 1] = groups[g][local_b[sel]]
    return pairs


def _nontarget_pairs(
    speaker: np.ndarray, n: int | None, n_available: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n, 2)`` distinct cross-speaker index pairs ``(i < j)``, uniformly drawn (or all)."""
    n_items = speaker.size
    if n is None or 2 * n >= n_available:
        i, j = np.triu_indices(n_items, k=1)
        keep = speaker[i] != speaker[j]
        everything = np.stack([i[keep], j[keep]], axis=1)
        if n is None or n >= n_available:
            return everything
        return everything[np.sort(rng.choice(n_available, n, replace=False))]
    # fewer than half of all cross-speaker pairs: rejection sampling converges fast
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < n:
        size = 2 * (n - len(chosen)) + 16
        i = rng.integers(0, n_items, size)
        j = rng.integers(0, n_items, size)
        for a, b in zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist(), strict=True):
            if speaker[a] != speaker[b] and len(chosen) < n:
                chosen.add((a, b))
    return np.array(sorted(chosen), dtype=np.int64).reshape(-1, 2)


def generate_trials(
    items: Sequence[ManifestItem],
    n_trials: int | None = None,
    target_ratio: float = 0.5,
    seed: int = 0,
) -> list[Trial]:
    """Trials from a manifest: all pairs of files, or a seeded uniform sample of distinct pairs.

    Args:
        items: the files and speakers (at least two speakers, one with two or more files).
        n_trials: number of trials to draw; None takes every pair of files (N(N-1)/2 trials:
            mind large manifests).
        target_ratio: fraction of target trials among the ``n_trials`` drawn, in (0, 1).
            Ignored for all pairs. If the manifest has fewer same- (or different-) speaker pairs
            than asked, all of them are taken and a warning says so.
        seed: seed of the sampling.

    Returns:
        The trials, in random (seeded) order; within a trial the files keep manifest order.

    Raises:
        ValueError: a bad ``n_trials`` or ``target_ratio``, fewer than two speakers, or no
            speaker with two files.
    """
    if n_trials is not None and n_trials < 2:
        raise ValueError(f"n_trials must be >= 2 (or None for all pairs), got {n_trials}")
    if not 0.0 < target_ratio < 1.0:
        raise ValueError(f"target_ratio must be in (0, 1), got {target_ratio}")
    names, speaker = np.unique([item.speaker for item in items], return_inverse=True)
    if names.size < 2:
        raise ValueError(f"need files of at least two speakers for trials, got {names.size}")
    groups = [np.flatnonzero(speaker == k) for k in range(names.size)]
    n_target_available = sum(len(g) * (len(g) - 1) // 2 for g in groups)
    if n_target_available == 0:
        raise ValueError("no speaker has two files: no target trial is possible")
    n_nontarget_available = len(items) * (len(items) - 1) // 2 - n_target_available

    rng = np.random.default_rng(seed)
    if n_trials is None:
        n_target = n_nontarget = None
        logger.info("all pairs: %d trials", n_target_available + n_nontarget_available)
    else:
        n_target = min(max(1, round(n_trials * target_ratio)), n_trials - 1)
        n_nontarget = n_trials - n_target
        for kind, wanted, available in (
            ("target", n_target, n_target_available),
            ("non-target", n_nontarget, n_nontarget_available),
        ):
            if wanted > available:
                logger.warning(
                    "asked for %d %s trials but the manifest has only %d: taking all of them",
                    wanted,
                    kind,
                    available,
                )
    targets = _target_pairs(groups, n_target, rng)
    nontargets = _nontarget_pairs(speaker, n_nontarget, n_nontarget_available, rng)
    pairs = np.concatenate([targets, nontargets])
    labels = np.r_[np.ones(len(targets), dtype=np.int64), np.zeros(len(nontargets), np.int64)]
    order = rng.permutation(len(pairs))
    return [
        Trial(int(labels[k]), items[pairs[k, 0]].path, items[pairs[k, 1]].path)
        for k in order.tolist()
    ]
