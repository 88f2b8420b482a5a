"""Embedding batch jobs: collect audio inputs, embed them, read and write embedding files.

Inputs (:func:`collect_inputs`) are audio files, folders (searched recursively with
:func:`voxvec.audio.io.find_audio_files`) and ``path,speaker`` CSV manifests. Embedding files
(:func:`write_embeddings`, :func:`read_embeddings`) come in the formats of
:data:`OUTPUT_FORMATS`, chosen by the file's extension:

- ``.npy``: the ``(N, D)`` float32 matrix, rows in input order;
- ``.npz``: arrays ``embeddings`` ``(N, D)``, ``ids`` ``(N,)`` (the inputs' paths) and, when the
  inputs have speakers, ``speakers`` ``(N,)``;
- ``.csv``: a header ``id[,speaker],e0,...,e{D-1}``, then one row per input.

Files are written atomically (:mod:`voxvec.atomic`): an interrupted job leaves no truncated file.
:func:`embed_to_file` is the batch job: it embeds many inputs, reports each one that fails with
its reason and carries on, then writes what succeeded. It loses nothing when killed: the inputs
are embedded in fixed chunks and each finished chunk is appended to a journal beside the output
(``<out>.partial``), so a rerun with ``resume=True`` embeds only the chunks not yet done and
writes the same file an uninterrupted run writes. A lock file (``<out>.lock``) keeps a second
job from writing the same output at the same time, and every failed input is listed with its
reason in a report (``<out>.failed.csv``).

:func:`embed_sharded` is the same job shared by the processes of ``torchrun``: the chunks are
dealt out in turn (:func:`shard_indices`), each process writes its part with
:func:`embed_part` (``<out>.parts/rank-RRRRR<ext>``, an output like any other, so it is
journaled, locked and resumable), and rank 0 joins the parts with :func:`merge_parts` into the
``out`` and report a single process writes.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict, Unpack

import numpy as np
from tqdm import tqdm

from voxvec.atomic import atomic_open, atomic_path, write_error
from voxvec.audio.io import AUDIO_EXTENSIONS
from voxvec.data.manifest import CsvWriter, read_manifest

logger = logging.getLogger(__name__)

OUTPUT_FORMATS: tuple[str, ...] = (".npy", ".npz", ".csv")
"""Extensions of the embedding files :func:`write_embeddings` writes and :func:`read_embeddings`
reads."""

MANIFEST_SUFFIX = ".csv"
"""Inputs with this extension are ``path,speaker`` manifests, not audio."""

CHUNK_SIZE = 64
"""Inputs embedded, then journaled, together by :func:`embed_to_file`; a killed job redoes at
most one chunk. Chunks start at fixed input positions, so a resumed job embeds every input in the
same company as an uninterrupted one (and gets bit-identical embeddings)."""

_SIDE_FILE_ENDINGS = (".partial", ".lock", ".failed.csv")

JOURNAL_FORMAT = "voxvec-embed-journal"
JOURNAL_VERSION = 1


class SupportsIterEmbed(Protocol):
    """What a batch job needs of a model wrapper: :meth:`voxvec.inference.Embedder.iter_embed`.

    ``iter_embed(list_of_paths, batch_size=...)`` yields, per input and in order, a result with
    ``embedding`` (``(D,)`` or None) and ``error`` (the exception or None).
    """

    def iter_embed(self, *args: Any, **kwargs: Any) -> Iterator[Any]: ...


@dataclass(frozen=True)
class EmbeddingInputs:
    """The audio files of a batch job, as :func:`collect_inputs` expands them.

    Attributes:
        paths: the audio files, in order (folders expanded, manifests read).
        speakers: one speaker id per path when any input was a manifest (files that were not
            from a manifest get ``""``), else None.
        manifests: the manifests read.
        empty_folders: folders given that hold no audio file (skipped, each logged).
    """

    paths: list[Path]
    speakers: list[str] | None
    manifests: list[Path]
    empty_folders: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class FailedInput:
    """An input that could not be embedded.

    Attributes:
        index: its position in the inputs given.
        source: its path.
        reason: why it failed (the error's message).
    """

    index: int
    source: str
    reason: str

    @property
    def message(self) -> str:
        """The reason, prefixed with the source unless it already names it."""
        return self.reason if self.source in self.reason else f"{self.source}: {self.reason}"


@dataclass(frozen=True)
class EmbeddedInputs:
    """Outcome of :func:`embed_many`.

    Attributes:
        indices: positions (in the inputs given) of the inputs embedded, ascending.
        embeddings: their ``(D,)`` float32 unit vectors, aligned with ``indices``.
        failures: the inputs that failed, in input order.
    """

    indices: list[int]
    embeddings: list[np.ndarray]
    failures: list[FailedInput]


@dataclass(frozen=True)
class EmbedJobReport:
    """Outcome of :func:`embed_to_file`.

    Attributes:
        out: the file written, or None when no input could be embedded (nothing written, and
            an earlier file at that path removed).
        n_embedded: inputs embedded and written.
        failures: the inputs that failed, in input order.
        report: the failure report written (``index,path,reason`` CSV), or None when no input
            failed (an earlier report at that path is removed).
        n_resumed: inputs taken from the journal of an interrupted run instead of embedded.
    """

    out: Path | None
    n_embedded: int
    failures: list[FailedInput]
    report: Path | None = None
    n_resumed: int = 0


@dataclass(frozen=True)
class EmbeddingTable:
    """The contents of an embedding file, as :func:`read_embeddings` returns them.

    Attributes:
        embeddings: ``(N, D)`` float32 matrix.
        ids: ``N`` input names, or None (a ``.npy`` file holds only the matrix).
        speakers: ``N`` speaker ids, or None when the file has none.
    """

    embeddings: np.ndarray
    ids: list[str] | None
    speakers: list[str] | None


def find_inputs_in_folder(folder: str | os.PathLike[str]) -> list[Path]:
    """The audio files below ``folder``, following symbolic links, sorted by path.

    Like :func:`voxvec.audio.io.find_audio_files` (hidden names skipped, extensions of
    :data:`~voxvec.audio.io.AUDIO_EXTENSIONS` matched case-insensitively), except that linked
    folders are searched too, each real folder once (a link back to a folder above is a loop:
    logged and not followed). A broken link with an audio extension is kept, so that the job
    reports it as a failed input, and logged; one without is logged and left out.

    Args:
        folder: the folder to search.

    Returns:
        The files found, sorted.
    """
    suffixes = tuple(ext.lower() for ext in AUDIO_EXTENSIONS)
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            logger.warning(
                "%s: symbolic link loop (folder already searched), not followed", dirpath
            )
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath, name)
            if name.startswith("."):
                continue
            audio = name.lower().endswith(suffixes)
            if path.is_symlink() and not path.exists():
                logger.warning(
                    "%s: broken symbolic link (to %s)%s",
                    path,
                    os.readlink(path),
                    " (reported as a failed input)" if audio else ", skipped",
                )
            if audio:
                found.append(path)
    return sorted(found)


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> EmbeddingInputs:
    """Expand audio files, folders and manifests into the list of files to embed.

    Folders are searched recursively (:func:`find_inputs_in_folder`: linked folders followed,
    loops cut, broken links kept as inputs that will fail); a folder without audio files is
    logged and skipped. ``.csv`` inputs are ``path,speaker`` manifests
    (:func:`~voxvec.data.manifest.read_manifest`); anything else is taken as an audio file as it
    is (a missing one fails when it is embedded, not here).

    Args:
        inputs: audio files, folders and manifests, in the order their files should come.

    Returns:
        The files, with speakers when any input was a manifest.

    Raises:
        ValueError: no input given, the inputs hold no file at all (every folder empty), or a
            manifest is malformed.
        FileNotFoundError: a manifest does not exist.
    """
    if not inputs:
        raise ValueError("no input given: pass audio files, folders or path,speaker CSVs")
    paths: list[Path] = []
    speakers: list[str] = []
    manifests: list[Path] = []
    empty: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = find_inputs_in_folder(path)
            if not found:
                logger.warning(
                    "no audio files (%s) found in %s: skipped", ", ".join(AUDIO_EXTENSIONS), path
                )
                empty.append(path)
            paths.extend(found)
            speakers.extend([""] * len(found))
        elif path.suffix.lower() == MANIFEST_SUFFIX:
            items = read_manifest(path)
            manifests.append(path)
            paths.extend(item.path for item in items)
            speakers.extend(item.speaker for item in items)
        else:
            paths.append(path)
            speakers.append("")
    if not paths:
        where = ", ".join(map(str, empty)) or ", ".join(map(str, manifests))
        raise ValueError(
            f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {where}: nothing to embed"
        )
    return EmbeddingInputs(paths, speakers if manifests else None, manifests, empty)


def embed_many(
    embedder: SupportsIterEmbed,
    paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 16,
    progress: bool = False,
    on_failure: Callable[[FailedInput], None] | None = None,
) -> EmbeddedInputs:
    """Embed files in batches; one that fails is reported and skipped, the others go on.

    Args:
        embedder: the model wrapper (``voxvec.inference.Embedder``).
        paths: the audio files; each is embedded (a repeated path is embedded again).
        batch_size: inputs (or windows of long inputs) per forward pass.
        progress: show a progress bar on stderr.
        on_failure: called with each failure as it happens; None logs it as a warning.

    Returns:
        The embeddings of the files that succeeded and the failures.

    Raises:
        ValueError: ``batch_size`` is below 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    indices: list[int] = []
    embeddings: list[np.ndarray] = []
    failures: list[FailedInput] = []
    results = embedder.iter_embed(list(paths), batch_size=batch_size)
    bar = tqdm(results, total=len(paths), desc="embedding", unit="file", disable=not progress)
    for index, (path, result) in enumerate(zip(paths, bar, strict=True)):
        if result.error is None:
            indices.append(index)
            embeddings.append(np.asarray(result.embedding, dtype=np.float32))
            continue
        failure = FailedInput(index, os.fspath(path), str(result.error))
        failures.append(failure)
        if on_failure is None:
            logger.warning("%s (skipped)", failure.message)
        else:
            on_failure(failure)
    return EmbeddedInputs(indices, embeddings, failures)


def check_output(out: str | os.PathLike[str], inputs: EmbeddingInputs) -> Path:
    """Check that ``out`` can receive embeddings without destroying an input.

    Args:
        out: the embedding file to write.
        inputs: the inputs of the job.

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: ``out``'s extension is not one of :data:`OUTPUT_FORMATS`, or ``out`` is one
            of the inputs (a manifest or an audio file).
    """
    path = Path(out)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(
            f"cannot write embeddings to {path}: the name must end in one of {OUTPUT_FORMATS}"
        )
    target = path.resolve()
    for given in (*inputs.manifests, *inputs.paths):
        if given.resolve() == target:
            raise ValueError(
                f"the output {path} is also an input ({given}); writing it would destroy that "
                "input: choose another output file"
            )
    return path


def write_embeddings(
    out: str | os.PathLike[str],
    embeddings: np.ndarray,
    ids: Sequence[str],
    speakers: Sequence[str] | None = None,
) -> Path:
    """Write embeddings atomically, in the format of ``out``'s extension (see the module doc).

    Args:
        out: the ``.npy``, ``.npz`` or ``.csv`` file; its folder is created if needed.
        embeddings: ``(N, D)`` matrix, written as float32.
        ids: ``N`` input names (not stored in ``.npy``).
        speakers: ``N`` speaker ids, or None to store no speaker (not stored in ``.npy``).

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: the extension is not one of :data:`OUTPUT_FORMATS`, ``embeddings`` is not
            2-D, or ``ids`` or ``speakers`` does not have one entry per row.
    """
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(f"{path}: embedding files end in one of {OUTPUT_FORMATS}")
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be an (N, D) matrix, got shape {matrix.shape}")
    for name, values in (("ids", ids), ("speakers", speakers)):
        if values is not None and len(values) != len(matrix):
            raise ValueError(f"{len(values)} {name} for {len(matrix)} embeddings")
    if suffix == ".csv":
        with atomic_open(path) as f:
            writer = CsvWriter(f)
            speaker_column = [] if speakers is None else ["speaker"]
            writer.writerow(["id", *speaker_column, *(f"e{i}" for i in range(matrix.shape[1]))])
            for k, row in enumerate(matrix):
                prefix = [ids[k]] if speakers is None else [ids[k], speakers[k]]
                writer.writerow([*prefix, *(f"{v:.9g}" for v in row)])
        return path
    with atomic_path(path) as tmp, tmp.open("xb") as f:
        if suffix == ".npy":
            np.save(f, matrix)
        else:
            arrays: dict[str, Any] = {"embeddings": matrix, "ids": np.array(list(ids), dtype=str)}
            if speakers is not None:
                arrays["speakers"] = np.array(list(speakers), dtype=str)
            np.savez(f, **arrays)
    return path


def read_embeddings(path: str | os.PathLike[str]) -> EmbeddingTable:
    """Read an embedding file written by :func:`write_embeddings` (or ``voxvec embed``).

    Args:
        path: a ``.npy``, ``.npz`` or ``.csv`` embedding file.

    Returns:
        The embeddings with their ids and speakers where the format stores them.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the extension is not one of :data:`OUTPUT_FORMATS`, or the file is not an
            embedding file of that format (the message says what is wrong).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(f"{path}: embedding files end in one of {OUTPUT_FORMATS}")
    if not path.is_file():
        raise FileNotFoundError(f"embedding file not found: {path}")
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".npy":
        return EmbeddingTable(_matrix(np.load(path, allow_pickle=False), path), None, None)
    with np.load(path, allow_pickle=False) as data:
        if "embeddings" not in data or "ids" not in data:
            raise ValueError(f"{path}: expected arrays 'embeddings' and 'ids', got {data.files}")
        speakers = data["speakers"].tolist() if "speakers" in data else None
        return EmbeddingTable(_matrix(data["embeddings"], path), data["ids"].tolist(), speakers)


def _matrix(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim != 2:
        raise ValueError(f"{path}: expected an (N, D) embedding matrix, got shape {array.shape}")
    return array.astype(np.float32, copy=False)


def _read_csv(path: Path) -> EmbeddingTable:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header 'id[,speaker],e0,...'")
    header = rows[0]
    n_meta = 2 if header[1:2] == ["speaker"] else 1
    dims = header[n_meta:]
    if header[0] != "id" or not dims or dims != [f"e{i}" for i in range(len(dims))]:
        raise ValueError(f"{path}: header {header[:4]}... is not 'id[,speaker],e0,...,e<D-1>'")
    for line, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise ValueError(
                f"{path}, line {line}: {len(row)} fields, the header has {len(header)}"
            )
    try:
        matrix = np.array([[float(v) for v in row[n_meta:]] for row in rows[1:]], np.float32)
    except ValueError as err:
        raise ValueError(f"{path}: a value is not a number ({err})") from None
    speakers = [row[1] for row in rows[1:]] if n_meta == 2 else None
    return EmbeddingTable(matrix.reshape(-1, len(dims)), [row[0] for row in rows[1:]], speakers)


class OutputLockedError(RuntimeError):
    """Another job holds the lock of the output file (see :func:`output_lock`)."""


def side_files(out: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """The files :func:`embed_to_file` keeps beside ``out``: ``(journal, lock, report)``.

    ``<out>.partial`` is the journal of the finished chunks (removed when the job ends),
    ``<out>.lock`` the lock file (held while the job runs) and ``<out>.failed.csv`` the
    failure report.
    """
    path = Path(out)
    journal, lock, report = (path.with_name(path.name + end) for end in _SIDE_FILE_ENDINGS)
    return journal, lock, report


@contextlib.contextmanager
def output_lock(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``<out>.lock`` exclusively (``flock``) while the block runs.

    The lock dies with its process, so a killed job never leaves a stale lock; the file is
    removed when the block ends (a job that opened it just before checks that it still holds
    the file at that path, and takes a fresh one otherwise).

    Yields:
        The lock file.

    Raises:
        OutputLockedError: another process holds the lock.
    """
    import fcntl  # POSIX only: imported here so that the rest of the module works elsewhere

    lock = side_files(out)[1]
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(
                f"{out} is being written by another job (it holds {lock}); wait for it to end "
                "or choose another output file"
            ) from None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder removed that file while we waited for it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@dataclass(frozen=True)
class _Chunk:
    """The outcome of one journaled chunk: inputs ``start`` to ``start + n - 1``."""

    start: int
    n: int
    indices: list[int]
    embeddings: np.ndarray  # (len(indices), D) float32
    failures: list[FailedInput]

    def to_line(self) -> bytes:
        record = {
            "start": self.start,
            "n": self.n,
            "indices": self.indices,
            "shape": list(self.embeddings.shape),
            "embeddings": base64.b64encode(self.embeddings.astype("<f4").tobytes()).decode(),
            "failures": [[f.index, f.source, f.reason] for f in self.failures],
        }
        return json.dumps(record).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> _Chunk:
        record = json.loads(line)
        raw = base64.b64decode(record["embeddings"], validate=True)
        matrix = np.frombuffer(raw, "<f4").astype(np.float32).reshape(record["shape"])
        failures = [FailedInput(int(i), str(src), str(why)) for i, src, why in record["failures"]]
        return cls(
            int(record["start"]), int(record["n"]), list(record["indices"]), matrix, failures
        )


def _fingerprint(inputs: EmbeddingInputs, job: str, chunk_size: int) -> str:
    """What a journal must match to be resumed: the inputs, the job's settings, the chunking."""
    content = [[os.fspath(p) for p in inputs.paths], inputs.speakers, job, chunk_size]
    return hashlib.sha256(json.dumps(content).encode("utf-8", "surrogateescape")).hexdigest()


def _read_journal(journal: Path, fingerprint: str) -> dict[int, _Chunk]:
    """The finished chunks in ``journal``, by start; a torn last line (a kill while appending
    it) is dropped.

    Raises:
        ValueError: the journal is not one, or was made for other inputs or settings.
    """
    *lines, _torn = journal.read_bytes().split(b"\n")
    try:
        header = json.loads(lines[0]) if lines else {}
        chunks = [_Chunk.from_line(line) for line in lines[1:]]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{journal} is damaged ({err}); delete it (or run without --resume) to start over"
        ) from None
    if header.get("format") != JOURNAL_FORMAT or header.get("version") != JOURNAL_VERSION:
        raise ValueError(f"{journal} is not a voxvec embed journal; delete it to start over")
    if header.get("fingerprint") != fingerprint:
        raise ValueError(
            f"{journal} was written by a job with other inputs or settings (model, windows, VAD, "
            "precision); rerun that job to resume it, or run without --resume to start over"
        )
    return {chunk.start: chunk for chunk in chunks}


def _write_report(report: Path, failures: Sequence[FailedInput]) -> None:
    with atomic_open(report) as f:
        writer = CsvWriter(f)
        writer.writerow(["index", "path", "reason"])
        writer.writerows([f.index, f.source, f.reason] for f in failures)


def embed_to_file(
    embedder: SupportsIterEmbed,
    inputs: EmbeddingInputs,
    out: str | os.PathLike[str],
    *,
    batch_size: int = 16,
    progress: bool = False,
    on_failure: Callable[[FailedInput], None] | None = None,
    resume: bool = False,
    job: str = "",
    chunk_size: int = CHUNK_SIZE,
) -> EmbedJobReport:
    """The batch job: embed every input, skip and report those that fail, write the rest.

    ``out`` is checked before anything is embedded (:func:`check_output`) and locked for the
    whole job (:func:`output_lock`). Inputs are embedded in chunks of ``chunk_size``; each
    finished chunk is appended to the journal ``<out>.partial`` and flushed to disk. At the end
    ``out`` is written atomically (rows in input order, failed inputs left out), the failures
    are listed in ``<out>.failed.csv`` (``index,path,reason``) and the journal is removed.
    When every input failed nothing is written and an earlier ``out`` is removed, so that it is
    never taken for this job's result; a report from an earlier job is removed when none failed.

    Args:
        embedder: the model wrapper (``voxvec.inference.Embedder``).
        inputs: the files to embed (:func:`collect_inputs`).
        out: the embedding file to write (:data:`OUTPUT_FORMATS`).
        batch_size: inputs (or windows of long inputs) per forward pass.
        progress: show a progress bar on stderr.
        on_failure: called with each failure (those taken from the journal too); None logs it
            as a warning.
        resume: continue the interrupted job whose journal is beside ``out``: its finished
            chunks are kept (their failures are not retried), the others embedded. Without it
            a journal is discarded. With it and no journal, the job starts afresh.
        job: the settings that change the embeddings (model, windows, ...); a journal written
            under other settings is refused for resuming.
        chunk_size: inputs embedded and journaled together (see :data:`CHUNK_SIZE`); a
            journal written with another chunk size is refused for resuming.

    Returns:
        What was written and what failed.

    Raises:
        ValueError: ``out`` is not a valid output (see :func:`check_output`), ``batch_size`` or
            ``chunk_size`` is below 1, or the journal to resume is damaged or from another job.
        OutputLockedError: another job is writing ``out``.
        OSError: a file cannot be written (the message names it); the journal is kept, so the
            job can be resumed once the cause (e.g. a full disk) is fixed.
    """
    path = check_output(out, inputs)
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    journal, _, report = side_files(path)
    fingerprint = _fingerprint(inputs, job, chunk_size)
    n = len(inputs.paths)
    with output_lock(path):
        chunks: dict[int, _Chunk] = {}
        if journal.exists():
            if resume:
                chunks = _read_journal(journal, fingerprint)
            else:
                logger.warning("discarding %s, the journal of an interrupted job", journal)
        n_resumed = sum(chunk.n for chunk in chunks.values())
        if n_resumed:
            logger.info("resuming: %d of %d inputs already done in %s", n_resumed, n, journal)
        header = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "fingerprint": fingerprint}
        try:
            with atomic_path(journal) as tmp, tmp.open("xb") as f:
                f.write(json.dumps(header).encode() + b"\n")
                f.writelines(chunks[start].to_line() for start in sorted(chunks))
        except OSError as err:
            raise write_error(journal, err) from err
        report_failure = on_failure or (lambda f: logger.warning("%s (skipped)", f.message))
        bar = tqdm(total=n, initial=n_resumed, desc="embedding", unit="file", disable=not progress)
        with bar, journal.open("ab") as f:
            for start in range(0, n, chunk_size):
                chunk = chunks.get(start) or _embed_chunk(
                    embedder, inputs.paths[start : start + chunk_size], start, batch_size
                )
                for failure in chunk.failures:
                    report_failure(failure)
                if start not in chunks:
                    try:
                        f.write(chunk.to_line())
                        f.flush()
                        os.fsync(f.fileno())
                    except OSError as err:
                        raise write_error(journal, err) from err
                    chunks[start] = chunk
                    bar.update(chunk.n)
        done = [chunks[start] for start in sorted(chunks) if chunks[start].indices]
        indices = [i for chunk in done for i in chunk.indices]
        failures = [failure for start in sorted(chunks) for failure in chunks[start].failures]
        matrix = np.concatenate([chunk.embeddings for chunk in done]) if done else None
        written = _write_outcome(path, inputs, indices, matrix, failures)
        journal.unlink()
    return EmbedJobReport(written, len(indices), failures, report if failures else None, n_resumed)


def _embed_chunk(
    embedder: SupportsIterEmbed, paths: Sequence[Path], start: int, batch_size: int
) -> _Chunk:
    """Embed ``paths``, inputs ``start`` on (failures are not reported here)."""
    result = embed_many(embedder, paths, batch_size=batch_size, on_failure=lambda _: None)
    vectors = np.stack(result.embeddings) if result.embeddings else np.zeros((0, 0), np.float32)
    failures = [FailedInput(start + f.index, f.source, f.reason) for f in result.failures]
    return _Chunk(start, len(paths), [start + i for i in result.indices], vectors, failures)


def _write_outcome(
    path: Path,
    inputs: EmbeddingInputs,
    indices: Sequence[int],
    matrix: np.ndarray | None,
    failures: Sequence[FailedInput],
) -> Path | None:
    """Write a job's result: the embeddings of inputs ``indices`` (rows of ``matrix``, in input
    order) to ``path`` and the failures to its report.

    With no embedding an earlier ``path`` is removed; with no failure an earlier report is.

    Returns:
        ``path``, or None when nothing was embedded.

    Raises:
        OSError: a file cannot be written (the message names it).
    """
    report = side_files(path)[2]
    try:
        if matrix is None:
            written = None
            if path.exists():
                path.unlink()
                logger.warning(
                    "removed %s, the output of an earlier job: no input was embedded", path
                )
        else:
            speakers = None if inputs.speakers is None else [inputs.speakers[i] for i in indices]
            ids = [os.fspath(inputs.paths[i]) for i in indices]
            written = write_embeddings(path, matrix, ids, speakers)
            logger.debug("wrote %d embeddings to %s", len(indices), path)
        if failures:
            _write_report(report, failures)
        elif report.exists():
            report.unlink()
            logger.info("removed %s, the failure report of an earlier job", report)
    except OSError as err:
        raise write_error(path, err) from err
    return written


PART_FORMAT = "voxvec-embed-part"
PART_VERSION = 1


# Why merge_parts may miss a part that its process wrote: the parts folder is not on a file
# system that every machine of the job shares.
_NOT_VISIBLE = "its process finished it, but rank 0 does not see it: every machine must share"


class JobPartsError(RuntimeError):
    """A job shared by several processes ended without its merged output: a process's part is
    missing (the message says which, and why), or the parts could not be merged."""


def parts_folder(out: str | os.PathLike[str]) -> Path:
    """Where the processes of a sharded job (:func:`embed_sharded`) keep their parts:
    ``<out>.parts``."""
    path = Path(out)
    return path.with_name(path.name + ".parts")


def part_files(out: str | os.PathLike[str], rank: int) -> tuple[Path, Path]:
    """Process ``rank``'s part of ``out`` and its record: ``(<out>.parts/rank-RRRRR<ext>,
    <out>.parts/rank-RRRRR.json)``.

    The part is an embedding file in ``out``'s format (with its journal, lock and report beside
    it, as for any output of :func:`embed_to_file`); the record, written once the part is
    complete, says which inputs the part holds and which failed.
    """
    path = Path(out)
    folder = parts_folder(path)
    return folder / f"rank-{rank:05d}{path.suffix}", folder / f"rank-{rank:05d}.json"


def shard_indices(n: int, rank: int, world_size: int, chunk_size: int = CHUNK_SIZE) -> list[int]:
    """The inputs process ``rank`` of ``world_size`` embeds: every ``world_size``-th chunk.

    The inputs are cut into the chunks of :func:`embed_to_file` (``chunk_size`` inputs from
    position 0); chunk ``k`` goes to process ``k % world_size``. So every input is embedded in
    the same company as in a single process (the same embeddings), and the long or short files
    of one part of a manifest are shared out instead of falling to one process.

    Args:
        n: the number of inputs.
        rank: the process, in [0, world_size).
        world_size: the number of processes, >= 1.
        chunk_size: inputs per chunk, >= 1.

    Returns:
        The positions of its inputs, ascending.

    Raises:
        ValueError: ``rank``, ``world_size`` or ``chunk_size`` is out of range.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    starts = range(rank * chunk_size, n, world_size * chunk_size)
    return [i for start in starts for i in range(start, min(start + chunk_size, n))]


@dataclass(frozen=True)
class _PartRecord:
    """What a finished part holds (the JSON record beside it)."""

    fingerprint: str
    indices: list[int]  # the inputs embedded, ascending
    failures: list[FailedInput]  # index: the position in the whole job's inputs

    def write(self, record: Path) -> None:
        content = {
            "format": PART_FORMAT,
            "version": PART_VERSION,
            "fingerprint": self.fingerprint,
            "indices": self.indices,
            "failures": [[f.index, f.source, f.reason] for f in self.failures],
        }
        try:
            with atomic_open(record) as f:
                json.dump(content, f)
        except OSError as err:
            raise write_error(record, err) from err

    @classmethod
    def read(cls, record: Path, fingerprint: str) -> _PartRecord:
        """Raises: FileNotFoundError (no record), ValueError (damaged, or another job's)."""
        try:
            content = json.loads(record.read_text(encoding="utf-8"))
            if content.get("format") != PART_FORMAT or content.get("version") != PART_VERSION:
                raise ValueError("not a voxvec embed part record")
            failures = [FailedInput(int(i), str(s), str(r)) for i, s, r in content["failures"]]
            found = cls(str(content["fingerprint"]), list(map(int, content["indices"])), failures)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{record} is damaged ({err})") from None
        if found.fingerprint != fingerprint:
            raise ValueError(
                f"{record} was written by a job with other inputs, settings or number of "
                "processes; rerun that job to resume it, or run without --resume to start over"
            )
        return found


def _job_fingerprint(inputs: EmbeddingInputs, job: str, chunk_size: int, world_size: int) -> str:
    return _fingerprint(inputs, f"{job} world_size={world_size}", chunk_size)


def embed_part(
    embedder: SupportsIterEmbed,
    inputs: EmbeddingInputs,
    out: str | os.PathLike[str],
    *,
    rank: int,
    world_size: int,
    batch_size: int = 16,
    progress: bool = False,
    on_failure: Callable[[FailedInput], None] | None = None,
    resume: bool = False,
    job: str = "",
    chunk_size: int = CHUNK_SIZE,
) -> EmbedJobReport:
    """Process ``rank``'s share of a job of ``world_size`` processes: its part of ``out``.

    The process embeds its inputs (:func:`shard_indices`) with :func:`embed_to_file` into its
    part (:func:`part_files`: journaled, locked, written atomically), then writes the part's
    record. :func:`merge_parts` joins the parts into ``out``.

    Args:
        embedder, inputs, out, batch_size, progress, job, chunk_size: as for
            :func:`embed_to_file`, with the whole job's inputs and output.
        rank: this process, in [0, world_size).
        world_size: the number of processes of the job.
        on_failure: called with each failure (positions in the whole job's inputs); None logs.
        resume: keep a finished part of the same job (nothing embedded again), or resume an
            interrupted one from its journal. Without it the part is embedded afresh.

    Returns:
        This part's outcome: the part written (or None when none of its inputs was embedded),
        the inputs embedded, the failures (positions in the whole job's inputs).

    Raises:
        ValueError: as for :func:`embed_to_file`, or ``rank`` is out of range, or the part to
            resume belongs to another job.
        OutputLockedError: another process is writing this part.
        OSError: a file cannot be written (the message names it).
    """
    path = check_output(out, inputs)
    shard = shard_indices(len(inputs.paths), rank, world_size, chunk_size)
    part, record = part_files(path, rank)
    fingerprint = _job_fingerprint(inputs, job, chunk_size, world_size)
    report_failure = on_failure or (lambda f: logger.warning("%s (skipped)", f.message))
    if resume and record.exists():
        done = _PartRecord.read(record, fingerprint)
        for failure in done.failures:
            report_failure(failure)
        logger.info("rank %d: keeping %s, finished by an earlier run of this job", rank, part)
        return EmbedJobReport(
            part if done.indices else None,
            len(done.indices),
            done.failures,
            side_files(part)[2] if done.failures else None,
            len(shard),
        )
    record.unlink(missing_ok=True)  # a record is only ever beside the part it describes
    speakers = inputs.speakers
    own = EmbeddingInputs(
        [inputs.paths[i] for i in shard],
        None if speakers is None else [speakers[i] for i in shard],
        inputs.manifests,
    )

    def in_job(failure: FailedInput) -> FailedInput:
        return FailedInput(shard[failure.index], failure.source, failure.reason)

    result = embed_to_file(
        embedder,
        own,
        part,
        batch_size=batch_size,
        progress=progress,
        on_failure=lambda failure: report_failure(in_job(failure)),
        resume=resume,
        job=f"{job} rank={rank}/{world_size}",
        chunk_size=chunk_size,
    )
    failures = [in_job(failure) for failure in result.failures]
    failed = {failure.index for failure in failures}
    _PartRecord(fingerprint, [i for i in shard if i not in failed], failures).write(record)
    return EmbedJobReport(result.out, result.n_embedded, failures, result.report, result.n_resumed)


def merge_parts(
    inputs: EmbeddingInputs,
    out: str | os.PathLike[str],
    *,
    world_size: int,
    job: str = "",
    chunk_size: int = CHUNK_SIZE,
    errors: dict[int, str] | None = None,
) -> EmbedJobReport:
    """Join the parts of every process (:func:`embed_part`) into ``out``, in input order.

    ``out`` and its failure report come out as a single process's :func:`embed_to_file` writes
    them (the same rows, bit for bit, and one report of every failed input); then the parts
    folder is removed. When a part is missing nothing is written and every part is kept.

    Args:
        inputs, out, job, chunk_size: those of the job, as given to :func:`embed_part`.
        world_size: the number of processes of the job.
        errors: by rank, why that process's part may be missing (its error, or that it wrote
            the part where this process cannot see it); used only to name a missing part.

    Returns:
        What was written and what failed (``n_resumed`` is 0: see the parts' reports).

    Raises:
        JobPartsError: a part is missing or from another job (each one named, with why).
        OutputLockedError: another job is writing ``out``.
        ValueError: ``out`` is not a valid output, or a part does not hold what its record says.
        OSError: a file cannot be written (the message names it).
    """
    path = check_output(out, inputs)
    fingerprint = _job_fingerprint(inputs, job, chunk_size, world_size)
    errors = errors or {}
    with output_lock(path):
        records: list[_PartRecord] = []
        missing: list[str] = []
        for rank in range(world_size):
            part, record = part_files(path, rank)
            try:
                records.append(_PartRecord.read(record, fingerprint))
            except FileNotFoundError:
                why = errors.get(rank, "the process did not finish it")
                missing.append(f"rank {rank} ({part.name}): {why}")
            except ValueError as err:
                missing.append(f"rank {rank}: {err}")
        if missing:
            kept = world_size - len(missing)
            raise JobPartsError(
                f"{path} not written: {len(missing)} of {world_size} parts missing: "
                f"{'; '.join(missing)}. The {kept} finished parts are kept in "
                f"{parts_folder(path)}: run the same command with --resume to embed only the rest"
            )
        indices: list[int] = []
        matrices: list[np.ndarray] = []
        for rank, found in enumerate(records):
            if found.indices:
                part = part_files(path, rank)[0]
                table = read_embeddings(part)
                ids = [os.fspath(inputs.paths[i]) for i in found.indices]
                if len(table.embeddings) != len(ids) or table.ids not in (None, ids):
                    raise ValueError(
                        f"{part} does not hold the {len(ids)} inputs its record lists; delete "
                        f"{parts_folder(path)} and run the job again"
                    )
                indices.extend(found.indices)
                matrices.append(table.embeddings)
        order = np.argsort(indices, kind="stable")
        matrix = np.concatenate(matrices)[order] if matrices else None
        failures = sorted((f for found in records for f in found.failures), key=lambda f: f.index)
        written = _write_outcome(path, inputs, [indices[k] for k in order], matrix, failures)
        shutil.rmtree(parts_folder(path))
    report = side_files(path)[2] if failures else None
    return EmbedJobReport(written, len(indices), failures, report)


class PartOptions(TypedDict, total=False):
    """The options of :func:`embed_part` that :func:`embed_sharded` passes on as they are."""

    batch_size: int
    progress: bool
    on_failure: Callable[[FailedInput], None] | None
    resume: bool


def embed_sharded(
    embedder: SupportsIterEmbed,
    inputs: EmbeddingInputs,
    out: str | os.PathLike[str],
    *,
    rank: int,
    world_size: int,
    gather: Callable[[Any], list[Any]],
    job: str = "",
    chunk_size: int = CHUNK_SIZE,
    **options: Unpack[PartOptions],
) -> EmbedJobReport:
    """The batch job of :func:`embed_to_file` shared by ``world_size`` processes.

    Every process of the job calls this with the same inputs and options. Each embeds its
    part (:func:`embed_part`); when all are done, rank 0 merges them into ``out``
    (:func:`merge_parts`) and every process returns (or raises) rank 0's outcome. A process
    that fails leaves the others' parts in place, and the merge names the missing part; a
    rerun with ``resume=True`` keeps the finished parts and embeds only the rest.

    Args:
        embedder, inputs, out, job, chunk_size: as for :func:`embed_part`.
        rank: this process, in [0, world_size).
        world_size: the number of processes of the job.
        gather: the collective: called by every process with an object, returns every
            process's, by rank (:func:`voxvec.distributed.all_gather_objects`). It is called
            three times: before the parts (every process must see the same inputs), after
            them and after the merge.
        options: ``batch_size``, ``progress``, ``on_failure``, ``resume``: passed on to
            :func:`embed_part`.

    Returns:
        The merged job's outcome (``n_resumed`` counts every part's), the same on every process.

    Raises:
        JobPartsError: on every process, when the processes see different inputs (nothing is
            embedded) or ``out`` was not written; rank 0's message says why (which part is
            missing and why, or why the merge failed).
    """
    fingerprints = gather(_job_fingerprint(inputs, job, chunk_size, world_size))
    differ = [r for r, f in enumerate(fingerprints) if f != fingerprints[0]]
    if differ:
        raise JobPartsError(
            f"the processes of ranks {', '.join(map(str, differ))} see other inputs or settings "
            "than rank 0 (every machine must see the same inputs at the same paths, and resolve "
            "the options, e.g. precision auto, alike); nothing was embedded"
        )
    outcome: EmbedJobReport | str
    try:
        outcome = embed_part(
            embedder,
            inputs,
            out,
            rank=rank,
            world_size=world_size,
            job=job,
            chunk_size=chunk_size,
            **options,
        )
    except (OSError, ValueError, RuntimeError) as err:
        logger.error("rank %d: %s", rank, err)
        outcome = str(err)
    outcomes = gather(outcome)
    merged: EmbedJobReport | str | None = None
    if rank == 0:
        errors = {
            r: o if isinstance(o, str) else f"{_NOT_VISIBLE} {parts_folder(out)}"
            for r, o in enumerate(outcomes)
        }
        try:
            result = merge_parts(
                inputs, out, world_size=world_size, job=job, chunk_size=chunk_size, errors=errors
            )
            resumed = sum(o.n_resumed for o in outcomes if isinstance(o, EmbedJobReport))
            merged = dataclasses.replace(result, n_resumed=resumed)
        except (OSError, ValueError, RuntimeError) as err:
            merged = str(err)
    merged = gather(merged)[0]
    if isinstance(merged, EmbedJobReport):
        return merged
    raise JobPartsError(merged if rank == 0 else f"rank {rank}: {out} not written (see rank 0)")
