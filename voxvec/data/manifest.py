"""``path,speaker`` CSV manifests: the training and evaluation file lists.

A manifest is a CSV file whose header names (at least) the columns ``path`` and ``speaker``; each
row is one audio file and the id of the person speaking in it. Relative paths are relative to the
folder holding the CSV, so a corpus folder with its manifest can be moved as one.
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

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "speaker")


class CsvWriter:
    """A ``csv.writer`` (``\\n`` line ends) whose rows read back as written, whatever they hold.

    ``csv`` quotes a field that holds the delimiter, a quote or a character of the line
    terminator, but its reader also ends a line at a carriage return: a row with one in a field
    (file names may hold one) is written with every field quoted.

    Args:
        f: the text file, opened with ``newline=""``.
    """

    def __init__(self, f: TextIO) -> None:
        self._plain = csv.writer(f, lineterminator="\n")
        self._quoted = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, row: Sequence[object]) -> None:
        """Write one row."""
        quote = any("\r" in value for value in row if isinstance(value, str))
        (self._quoted if quote else self._plain).writerow(row)

    def writerows(self, rows: Iterable[Sequence[object]]) -> None:
        """Write rows."""
        for row in rows:
            self.writerow(row)


@dataclass(frozen=True)
class ManifestItem:
    """One audio file and its speaker id."""

    path: Path
    speaker: str


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestItem]:
    """Read a ``path,speaker`` CSV.

    The file is UTF-8, with or without a byte-order mark (as spreadsheet programs save it).
    Extra columns are ignored; whitespace around a field is dropped (so a path cannot begin
    or end with a space). Relative paths are resolved against the CSV's folder; absolute
    paths are kept. The files themselves are not checked. A row that repeats an earlier one is
    kept (it counts twice) and logged as a warning with both line numbers.

    Args:
        path: the CSV file.

    Returns:
        The items in file order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not UTF-8 text or not CSV, the header lacks ``path`` or
            ``speaker``, a row (named by its line number) has an empty path or speaker, a path
            with a NUL byte or the wrong number of fields, or one file is listed with two
            speakers.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"manifest not found: {csv_path}")
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            return _read_rows(csv_path, f)
    except UnicodeDecodeError:
        raw = csv_path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:  # the whole file: offsets from its start
            line = raw.count(b"\n", 0, err.start) + 1
            raise ValueError(
                f"{csv_path}, line {line}: not UTF-8 text (byte {raw[err.start : err.start + 1]!r}"
                f" at offset {err.start}); save the manifest as UTF-8"
            ) from None
        raise


def _read_rows(csv_path: Path, text: TextIO) -> list[ManifestItem]:
    """The items of an open manifest (see :func:`read_manifest`)."""
    reader = csv.reader(text)
    folder = csv_path.parent
    items: list[ManifestItem] = []
    first_line: dict[ManifestItem, int] = {}
    duplicates: list[str] = []
    try:
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{csv_path}: empty file; expected a header line 'path,speaker'")
        header = [name.strip() for name in header]
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise ValueError(
                f"{csv_path}: header {header} lacks column(s) {missing}; "
                "expected a header line 'path,speaker'"
            )
        i_path, i_speaker = header.index("path"), header.index("speaker")
        speaker_of: dict[Path, tuple[str, int]] = {}
        for row in reader:
            line = reader.line_num
            if not row or all(not field.strip() for field in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{csv_path}, line {line}: {len(row)} field(s), the header has "
                    f"{len(header)} ({','.join(header)}); quote paths that contain commas"
                )
            raw_path, speaker = row[i_path].strip(), row[i_speaker].strip()
            if not raw_path or not speaker:
                raise ValueError(f"{csv_path}, line {line}: empty path or speaker in {row}")
            if "\0" in raw_path:
                raise ValueError(f"{csv_path}, line {line}: the path {raw_path!r} holds a NUL byte")
            item = ManifestItem(folder / raw_path, speaker)
            earlier, earlier_line = speaker_of.setdefault(item.path, (speaker, line))
            if earlier != speaker:
                raise ValueError(
                    f"{csv_path}, line {line}: {raw_path} is listed as speaker {speaker!r} here "
                    f"and as {earlier!r} on line {earlier_line}; a file has one speaker"
                )
            if item in first_line:
                duplicates.append(f"line {line} repeats line {first_line[item]}")
            first_line.setdefault(item, line)
            items.append(item)
    except csv.Error as err:
        raise ValueError(f"{csv_path}, line {reader.line_num}: not valid CSV ({err})") from None
    if duplicates:
        logger.warning(
            "%s: %d duplicated row(s), each used as often as it appears: %s",
            csv_path,
            len(duplicates),
            "; ".join(duplicates[:5]) + ("; ..." if len(duplicates) > 5 else ""),
        )
    return items


def write_manifest(
    items: Iterable[ManifestItem],
    path: str | os.PathLike[str],
    relative_to: str | os.PathLike[str] | None = None,
) -> None:
    """Write items as a ``path,speaker`` CSV (atomically: a temporary file, then a rename).

    Args:
        items: the files and their speakers.
        path: the CSV to write; its folder is created if needed.
        relative_to: write paths relative to this folder (with ``..`` where needed); usually the
            CSV's own folder, so that :func:`read_manifest` finds the files again. None writes
            the paths as they are.

    Raises:
        ValueError: an item has an empty speaker id.
    """
    base = None if relative_to is None else os.path.abspath(relative_to)
    with atomic_open(path) as f:
        writer = CsvWriter(f)
        writer.writerow(REQUIRED_COLUMNS)
        for item in items:
            if not item.speaker:
                raise ValueError(f"empty speaker id for {item.path}")
            out = str(item.path) if base is None else os.path.relpath(item.path, base)
            writer.writerow((out, item.speaker))


def group_by_speaker(items: Iterable[ManifestItem]) -> dict[str, list[ManifestItem]]:
    """Items grouped by speaker id, speakers in first-seen order, files in input order."""
    groups: dict[str, list[ManifestItem]] = {}
    for item in items:
        groups.setdefault(item.speaker, []).append(item)
    return groups


def split_by_speaker(
    items: Sequence[ManifestItem], n_valid: int, n_test: int = 0, seed: int = 0
) -> tuple[list[ManifestItem], list[ManifestItem], list[ManifestItem]]:
    """Split items into speaker-disjoint train, valid and test parts.

    Speakers are shuffled with ``seed`` (from their sorted ids, so the input order does not
    matter); the first ``n_test`` go to test, the next ``n_valid`` to valid and the rest to train.

    Args:
        items: the files to split.
        n_valid: number of validation speakers (>= 0).
        n_test: number of test speakers (>= 0).
        seed: seed of the speaker shuffle.

    Returns:
        ``(train, valid, test)`` items, each in input order; no speaker is in two of them.

    Raises:
        ValueError: a negative count, or fewer than ``n_valid + n_test + 1`` speakers (train
            must keep at least one).
    """
    if n_valid < 0 or n_test < 0:
        raise ValueError(f"speaker counts must be >= 0, got n_valid={n_valid}, n_test={n_test}")
    speakers = sorted({item.speaker for item in items})
    if n_valid + n_test >= len(speakers):
        raise ValueError(
            f"cannot hold out {n_valid} validation + {n_test} test speakers from "
            f"{len(speakers)}: at least one speaker must remain for training"
        )
    order = np.random.default_rng(seed).permutation(len(speakers))
    shuffled = [speakers[i] for i in order]
    test = set(shuffled[:n_test])
    valid = set(shuffled[n_test : n_test + n_valid])
    parts: tuple[list[ManifestItem], list[ManifestItem], list[ManifestItem]] = ([], [], [])
    for item in items:
        part = 2 if item.speaker in test else 1 if item.speaker in valid else 0
        parts[part].append(item)
    return parts
