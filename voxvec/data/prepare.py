"""Corpus preparation: ``path,speaker`` CSVs from the standard speech corpus layouts.

One scanner per layout turns a corpus folder into :class:`~voxvec.data.manifest.ManifestItem`
rows whose speaker ids carry a corpus prefix (``ls-``, ``vctk-``, ``cv-``, ``vox1-``, ``vox2-``
or the folder name for the generic layout), so that several corpora merge without clashes.
:func:`prepare` runs several scanners, optionally checks that every file opens, splits the
speakers into disjoint train / valid / test sets and writes ``train.csv``, ``valid.csv`` and
``test.csv`` (absolute paths).

Layouts:

- LibriSpeech: ``<root>/<subset>/<speaker>/<chapter>/*.flac``; ``root`` may also be one subset.
- VCTK: ``<root>/wav48_silence_trimmed/<speaker>/*_mic1.flac`` (release 0.92, one microphone) or
  ``<root>/wav48/<speaker>/*.wav`` (0.80); ``root`` may also be either audio folder.
- Common Voice: ``<root>/validated.tsv`` (columns ``client_id`` and ``path``) with the audio in
  ``<root>/clips/``; ``root`` may also hold one such folder per locale.
- VoxCeleb 1 and 2: ``<root>/<idNNNNN>/<video>/<nnnnn>.wav|.m4a``, also below ``<root>/wav``,
  ``<root>/aac``, ``<root>/dev/aac`` etc. as the official archives unpack.
- Generic: ``<root>/<speaker>/**/<file>`` with any audio extension soundfile reads.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from voxvec.atomic import atomic_open
from voxvec.audio.io import AUDIO_EXTENSIONS, find_audio_files
from voxvec.data.manifest import (
    CsvWriter,
    ManifestItem,
    read_manifest,
    split_by_speaker,
    write_manifest,
)

logger = logging.getLogger(__name__)

VOXCELEB_EXTENSIONS = (".wav", ".m4a", ".flac", ".ogg", ".opus")
VOXCELEB_SUBDIRS = ("", "wav", "aac", "dev/wav", "dev/aac", "test/wav", "test/aac")
_VOXCELEB_SPEAKER = re.compile(r"id\d+")

CORPORA = ("librispeech", "vctk", "commonvoice", "vox1", "vox2", "folders", "manifest")
"""Corpus kinds :func:`prepare` accepts."""


@dataclass
class CorpusScan:
    """What one scanner found under one root.

    Attributes:
        corpus: the corpus kind (one of :data:`CORPORA`).
        root: the folder scanned.
        items: the audio files with prefixed speaker ids, sorted by path.
        unreadable: ``(path, reason)`` for files listed by the corpus but missing or unreadable.
    """

    corpus: str
    root: Path
    items: list[ManifestItem]
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def n_speakers(self) -> int:
        """Number of distinct speakers found."""
        return len({item.speaker for item in self.items})


@dataclass
class PrepareReport:
    """Outcome of :func:`prepare`.

    Attributes:
        corpora: one scan summary per source (its items are the files before the split).
        splits: split name (``train``, ``valid``, ``test``) -> ``(n_files, n_speakers)``.
        outputs: split name -> the CSV written.
        unreadable: ``(path, reason)`` for every file left out.
        unreadable_csv: where that list was written (``unreadable.csv``), None if empty.
    """

    corpora: list[CorpusScan]
    splits: dict[str, tuple[int, int]]
    outputs: dict[str, Path]
    unreadable: list[tuple[Path, str]]
    unreadable_csv: Path | None

    def format_table(self) -> str:
        """A plain-text summary: files and speakers per corpus and per split."""
        lines = [f"{'source':<40} {'files':>9} {'speakers':>9}"]
        for scan in self.corpora:
            name = f"{scan.corpus}: {scan.root}"
            lines.append(f"{name:<40} {len(scan.items):>9} {scan.n_speakers:>9}")
        for split, (n_files, n_speakers) in self.splits.items():
            name = f"-> {self.outputs[split]}"
            lines.append(f"{name:<40} {n_files:>9} {n_speakers:>9}")
        if self.unreadable:
            lines.append(
                f"{len(self.unreadable)} file(s) left out, listed in {self.unreadable_csv}"
            )
        return "\n".join(lines)


def _check_root(root: str | os.PathLike[str], corpus: str) -> Path:
    path = Path(root).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"{corpus} root is not a folder: {path}")
    return path


def _subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name; empty if it is not a folder."""
    try:
        with os.scandir(folder) as entries:
            dirs = [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(dirs)


def _nothing_found(corpus: str, root: Path, expected: str) -> ValueError:
    return ValueError(f"no {corpus} audio found under {root}: expected {expected}")


def scan_librispeech(root: str | os.PathLike[str]) -> CorpusScan:
    """Scan LibriSpeech: ``<root>/<subset>/<speaker>/<chapter>/*.flac`` (or ``root`` = a subset).

    Speaker ids are ``ls-<speaker>`` (LibriSpeech speaker numbers are unique across subsets).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no audio in the expected layout.
    """
    base = _check_root(root, "LibriSpeech")

    def speaker_dirs(folder: Path) -> list[Path]:
        return [d for d in _subdirs(folder) if d.name.isdigit()]

    subsets = [base] if speaker_dirs(base) else _subdirs(base)
    items = [
        ManifestItem(path, f"ls-{speaker.name}")
        for subset in subsets
        for speaker in speaker_dirs(subset)
        for chapter in _subdirs(speaker)
        for path in find_audio_files(chapter, (".flac",), recursive=False)
    ]
    if not items:
        raise _nothing_found(
            "LibriSpeech",
            base,
            "<root>/<subset>/<speaker>/<chapter>/*.flac or, with root a "
            "subset such as train-clean-100, <root>/<speaker>/<chapter>/*.flac",
        )
    return CorpusScan("librispeech", base, sorted(items, key=lambda i: i.path))


def scan_vctk(root: str | os.PathLike[str], mic: str = "mic1") -> CorpusScan:
    """Scan VCTK: ``wav48_silence_trimmed/<spk>/*_<mic>.flac`` (0.92) or ``wav48/<spk>/*.wav``.

    When both audio folders exist the silence-trimmed one is used. Speaker ids are
    ``vctk-<spk>``.

    Args:
        root: the corpus folder, or the audio folder itself.
        mic: which microphone of release 0.92 to keep (``mic1`` or ``mic2``).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no audio in the expected layout.
    """
    base = _check_root(root, "VCTK")
    audio_dir = next(
        (base / sub for sub in ("wav48_silence_trimmed", "wav48") if (base / sub).is_dir()), base
    )
    suffix = f"_{mic}.flac"
    items: list[ManifestItem] = []
    for speaker in _subdirs(audio_dir):
        for path in find_audio_files(speaker, (".wav", ".flac"), recursive=False):
            if path.suffix.lower() == ".wav" or path.name.endswith(suffix):
                items.append(ManifestItem(path, f"vctk-{speaker.name}"))
    if not items:
        raise _nothing_found(
            "VCTK",
            base,
            f"<root>/wav48_silence_trimmed/<speaker>/*{suffix} or <root>/wav48/<speaker>/*.wav",
        )
    return CorpusScan("vctk", base, sorted(items, key=lambda i: i.path))


def _scan_commonvoice_locale(folder: Path, tsv_name: str) -> CorpusScan:
    tsv = folder / tsv_name
    clips = folder / "clips"
    if not clips.is_dir():
        raise FileNotFoundError(f"Common Voice: {tsv} found but no audio folder {clips}")
    with os.scandir(clips) as entries:
        present = {e.name for e in entries if e.is_file()}
    items: list[ManifestItem] = []
    unreadable: list[tuple[Path, str]] = []
    with tsv.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        if "client_id" not in header or "path" not in header:
            raise ValueError(f"{tsv}: header {header} lacks the columns 'client_id' and 'path'")
        i_client, i_path = header.index("client_id"), header.index("path")
        for row in reader:
            if not row:
                continue
            if len(row) <= max(i_client, i_path) or not row[i_client] or not row[i_path]:
                raise ValueError(f"{tsv}, line {reader.line_num}: no client_id or path in {row}")
            name = row[i_path]
            path = clips / name
            if name not in present:
                unreadable.append((path, f"listed in {tsv_name} but missing from {clips}"))
                continue
            items.append(ManifestItem(path, f"cv-{row[i_client]}"))
    return CorpusScan("commonvoice", folder, items, unreadable)


def scan_commonvoice(root: str | os.PathLike[str], tsv_name: str = "validated.tsv") -> CorpusScan:
    """Scan Common Voice: ``<root>/<tsv_name>`` (``client_id``, ``path``) with audio in ``clips/``.

    ``root`` is a locale folder (``cv-corpus-*/en``) or a folder of locale folders (all are
    read). Speaker ids are ``cv-<client_id>``. Clips the TSV lists but ``clips/`` lacks are
    reported in :attr:`CorpusScan.unreadable`.

    Args:
        root: the locale folder or the release folder.
        tsv_name: which list to read (``validated.tsv``, ``train.tsv``, ``dev.tsv``, ...).

    Raises:
        FileNotFoundError: ``root`` is not a folder, or a locale has no ``clips/``.
        ValueError: no TSV found, a TSV lacks the columns, or no clip was found.
    """
    base = _check_root(root, "Common Voice")
    locales = (
        [base]
        if (base / tsv_name).is_file()
        else [d for d in _subdirs(base) if (d / tsv_name).is_file()]
    )
    if not locales:
        raise _nothing_found(
            "Common Voice", base, f"<root>/{tsv_name} and <root>/clips/, or <root>/<locale>/..."
        )
    scans = [_scan_commonvoice_locale(folder, tsv_name) for folder in locales]
    items = sorted((item for s in scans for item in s.items), key=lambda i: i.path)
    unreadable = [entry for s in scans for entry in s.unreadable]
    if not items:
        raise _nothing_found(
            "Common Voice",
            base,
            f"clips listed in {tsv_name} to exist in clips/ "
            f"({len(unreadable)} listed clip(s) missing)",
        )
    return CorpusScan("commonvoice", base, items, unreadable)


def scan_voxceleb(root: str | os.PathLike[str], corpus: str = "vox1") -> CorpusScan:
    """Scan VoxCeleb 1 or 2: ``<root>/<idNNNNN>/<video>/<nnnnn>.wav|.m4a``.

    Speaker folders are also looked for in ``wav``, ``aac``, ``dev/wav``, ``dev/aac``,
    ``test/wav`` and ``test/aac`` below ``root`` (the official archives' layout); all found are
    merged. Speaker ids are ``<corpus>-<idNNNNN>``. libsndfile cannot decode AAC: ``.m4a`` files
    are listed with a warning, convert them (e.g. with ffmpeg) before training.

    Args:
        root: the corpus folder.
        corpus: ``vox1`` or ``vox2``, the speaker id prefix.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no audio in the expected layout, or an unknown ``corpus``.
    """
    if corpus not in ("vox1", "vox2"):
        raise ValueError(f"VoxCeleb corpus must be 'vox1' or 'vox2', got {corpus!r}")
    base = _check_root(root, f"VoxCeleb ({corpus})")
    items: list[ManifestItem] = []
    for sub in VOXCELEB_SUBDIRS:
        for speaker in _subdirs(base / sub):
            if not _VOXCELEB_SPEAKER.fullmatch(speaker.name):
                continue
            items.extend(
                ManifestItem(path, f"{corpus}-{speaker.name}")
                for video in _subdirs(speaker)
                for path in find_audio_files(video, VOXCELEB_EXTENSIONS, recursive=False)
            )
    if not items:
        raise _nothing_found(
            f"VoxCeleb ({corpus})", base, "<root>[/wav|/aac|/dev/aac]/<idNNNNN>/<video>/*.wav|.m4a"
        )
    n_aac = sum(item.path.suffix.lower() == ".m4a" for item in items)
    if n_aac:
        logger.warning(
            "%s: %d AAC (.m4a) file(s); libsndfile cannot decode AAC, convert them to WAV or "
            "FLAC (e.g. with ffmpeg) before training",
            base,
            n_aac,
        )
    return CorpusScan(corpus, base, sorted(items, key=lambda i: i.path))


def scan_folders(root: str | os.PathLike[str], prefix: str | None = None) -> CorpusScan:
    """Scan a generic layout: one folder per speaker, audio files anywhere below it.

    Speaker ids are ``<prefix>-<folder name>``; files directly in ``root`` are ignored.

    Args:
        root: the folder holding the speaker folders.
        prefix: speaker id prefix; None uses the name of ``root``.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no audio file in any speaker folder.
    """
    base = _check_root(root, "speaker-folder")
    tag = prefix or base.name
    items = [
        ManifestItem(path, f"{tag}-{speaker.name}")
        for speaker in _subdirs(base)
        for path in find_audio_files(speaker)
    ]
    if not items:
        raise _nothing_found(
            "speaker-folder", base, f"<root>/<speaker>/**/<file> with {', '.join(AUDIO_EXTENSIONS)}"
        )
    return CorpusScan("folders", base, sorted(items, key=lambda i: i.path))


def scan_manifest(csv_path: str | os.PathLike[str]) -> CorpusScan:
    """Take an existing ``path,speaker`` CSV as one corpus (speaker ids kept as they are).

    Files it lists that do not exist are left out and reported, like a corpus's missing clips.

    Raises:
        FileNotFoundError: the CSV does not exist.
        ValueError: a malformed CSV, or no listed file exists.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"manifest not found: {csv_path}")
    items, missing = [], []
    for item in read_manifest(csv_path):
        if item.path.is_file():
            items.append(item)
        else:
            missing.append((item.path, "listed in the manifest but not found"))
    if not items:
        raise ValueError(f"none of the {len(missing)} files listed in {csv_path} exists")
    return CorpusScan("manifest", csv_path.parent, sorted(items, key=lambda i: i.path), missing)


def _held_out(n_speakers: int, fraction: float, minimum: int) -> int:
    """Speakers to hold out of ``n_speakers`` for a split of ``fraction`` (0 means none)."""
    return 0 if fraction <= 0 else max(minimum, round(fraction * n_speakers))


def check_readable(
    items: Sequence[ManifestItem], progress: bool = False
) -> tuple[list[ManifestItem], list[tuple[Path, str]]]:
    """Open every file's header with ``soundfile.info``; keep those that hold audio.

    Args:
        items: the files to check.
        progress: show a progress bar.

    Returns:
        ``(readable items, [(path, reason), ...] for the others)``.
    """
    import soundfile

    good: list[ManifestItem] = []
    bad: list[tuple[Path, str]] = []
    for item in tqdm(items, desc="checking audio", unit="file", disable=not progress):
        try:
            info = soundfile.info(str(item.path))
        except (RuntimeError, OSError, ValueError) as err:
            bad.append((item.path, str(err).strip() or type(err).__name__))
            continue
        if info.frames <= 0:
            bad.append((item.path, "no audio frames"))
        else:
            good.append(item)
    return good, bad


def _scanners(vctk_mic: str, commonvoice_tsv: str) -> dict[str, Callable[[Path], CorpusScan]]:
    return {
        "librispeech": scan_librispeech,
        "vctk": functools.partial(scan_vctk, mic=vctk_mic),
        "commonvoice": functools.partial(scan_commonvoice, tsv_name=commonvoice_tsv),
        "vox1": functools.partial(scan_voxceleb, corpus="vox1"),
        "vox2": functools.partial(scan_voxceleb, corpus="vox2"),
        "folders": scan_folders,
        "manifest": scan_manifest,
    }


def _dedupe(items: Iterable[ManifestItem]) -> list[ManifestItem]:
    """Items with each path once (a corpus given twice, or a subset and its parent)."""
    seen: dict[Path, ManifestItem] = {}
    n_items = 0
    for item in items:
        n_items += 1
        earlier = seen.setdefault(item.path, item)
        if earlier.speaker != item.speaker:
            raise ValueError(
                f"{item.path} is found as speaker {earlier.speaker!r} and {item.speaker!r}: "
                "two sources overlap"
            )
    if n_items > len(seen):
        logger.warning("%d file(s) found twice, kept once", n_items - len(seen))
    return list(seen.values())


def prepare(
    sources: Sequence[tuple[str, str | os.PathLike[str]]],
    out_dir: str | os.PathLike[str],
    *,
    n_valid: int = 0,
    n_test: int = 0,
    seed: int = 0,
    valid_fraction: float = 0.0,
    test_fraction: float = 0.0,
    relative_paths: bool = False,
    check_audio: bool = False,
    vctk_mic: str = "mic1",
    commonvoice_tsv: str = "validated.tsv",
    progress: bool = False,
) -> PrepareReport:
    """Scan corpora, split speakers and write ``train.csv`` (+ ``valid.csv``, ``test.csv``).

    Files found twice (the same corpus given twice) are kept once. Files left out (missing
    clips, or unreadable with ``check_audio``) are listed in ``<out_dir>/unreadable.csv``
    (``path,reason``) and logged; they do not stop the run. CSVs of an earlier run in
    ``out_dir`` that this run does not write (e.g. ``valid.csv`` with ``n_valid=0``) are
    removed, so the folder always holds one consistent split.

    Args:
        sources: ``(corpus kind, root)`` pairs; kinds are those of :data:`CORPORA`.
        out_dir: where the CSVs go (created if needed).
        n_valid: speakers held out for ``valid.csv`` (written only when > 0).
        n_test: speakers held out for ``test.csv`` (written only when > 0).
        valid_fraction: instead of ``n_valid``, hold out this fraction of the speakers of each
            source separately (at least one per source), so every corpus is represented.
        test_fraction: instead of ``n_test``, this fraction of each source's speakers (at least
            two per source, so that each corpus has non-target test trials).
        relative_paths: write paths relative to ``out_dir`` (portable split files) instead of
            absolute ones.
        seed: seed of the speaker split.
        check_audio: open every file's header with soundfile and leave out those that fail.
        vctk_mic: the VCTK 0.92 microphone to keep.
        commonvoice_tsv: the Common Voice list to read.
        progress: show a progress bar while checking audio.

    Returns:
        A :class:`PrepareReport` (per-corpus and per-split counts, files written, files left out).

    Raises:
        ValueError: no source, an unknown corpus kind, a layout with no audio, no file left
            after checking, or too few speakers for the held-out counts.
        FileNotFoundError: a root is not a folder.
    """
    if not sources:
        raise ValueError(f"no corpus given; pass at least one of {', '.join(CORPORA)}")
    scanners = _scanners(vctk_mic, commonvoice_tsv)
    unknown = sorted({kind for kind, _ in sources} - set(scanners))
    if unknown:
        raise ValueError(f"unknown corpus kind(s) {unknown}; valid: {', '.join(CORPORA)}")
    scans = []
    for kind, root in sources:
        scan = scanners[kind](Path(root))
        logger.info(
            "%s %s: %d files, %d speakers", kind, scan.root, len(scan.items), scan.n_speakers
        )
        scans.append(scan)
    items = _dedupe(item for scan in scans for item in scan.items)
    unreadable = [entry for scan in scans for entry in scan.unreadable]
    if check_audio:
        items, bad = check_readable(items, progress=progress)
        unreadable.extend(bad)
    if not items:
        raise ValueError(f"no readable audio file left out of {len(unreadable)} found")
    items.sort(key=lambda i: (i.speaker, str(i.path)))

    if valid_fraction > 0 or test_fraction > 0:
        if n_valid or n_test:
            raise ValueError("give held-out speakers as counts or as fractions, not both")
        train: list[ManifestItem] = []
        valid: list[ManifestItem] = []
        test: list[ManifestItem] = []
        for scan in scans:
            kept = {item.path for item in scan.items}
            part = [item for item in items if item.path in kept]
            n_speakers = len({item.speaker for item in part})
            split = split_by_speaker(
                part,
                _held_out(n_speakers, valid_fraction, 1),
                _held_out(n_speakers, test_fraction, 2),
                seed,
            )
            for whole, piece in zip((train, valid, test), split, strict=True):
                whole.extend(piece)
    else:
        train, valid, test = split_by_speaker(items, n_valid, n_test, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = {"train": train, "valid": valid, "test": test}
    splits: dict[str, tuple[int, int]] = {}
    outputs: dict[str, Path] = {}
    for name, part in parts.items():
        if not part:
            # a split from an earlier run here would no longer be speaker-disjoint from train
            (out / f"{name}.csv").unlink(missing_ok=True)
            continue
        outputs[name] = out / f"{name}.csv"
        write_manifest(part, outputs[name], relative_to=out if relative_paths else None)
        splits[name] = (len(part), len({item.speaker for item in part}))

    unreadable_csv = None
    (out / "unreadable.csv").unlink(missing_ok=True)
    if unreadable:
        unreadable_csv = out / "unreadable.csv"
        with atomic_open(unreadable_csv) as f:
            writer = CsvWriter(f)
            writer.writerow(("path", "reason"))
            writer.writerows((str(path), reason) for path, reason in unreadable)
        shown = "; ".join(f"{path}: {reason}" for path, reason in unreadable[:3])
        logger.warning(
            "%d file(s) left out (listed in %s), e.g. %s", len(unreadable), unreadable_csv, shown
        )
    return PrepareReport(scans, splits, outputs, unreadable, unreadable_csv)
