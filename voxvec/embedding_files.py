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
its reason and carries on, then writes what succeeded.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from voxvec.atomic import atomic_open, atomic_path
from voxvec.audio.io import AUDIO_EXTENSIONS, find_audio_files
from voxvec.data.manifest import read_manifest

logger = logging.getLogger(__name__)

OUTPUT_FORMATS: tuple[str, ...] = (".npy", ".npz", ".csv")
"""Extensions of the embedding files :func:`write_embeddings` writes and :func:`read_embeddings`
reads."""

MANIFEST_SUFFIX = ".csv"
"""Inputs with this extension are ``path,speaker`` manifests, not audio."""


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
    """

    paths: list[Path]
    speakers: list[str] | None
    manifests: list[Path]


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
        out: the file written, or None when no input could be embedded (nothing written).
        n_embedded: inputs embedded and written.
        failures: the inputs that failed, in input order.
    """

    out: Path | None
    n_embedded: int
    failures: list[FailedInput]


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


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> EmbeddingInputs:
    """Expand audio files, folders and manifests into the list of files to embed.

    Folders are searched recursively for :data:`~voxvec.audio.io.AUDIO_EXTENSIONS` files
    (hidden ones skipped, sorted); ``.csv`` inputs are ``path,speaker`` manifests
    (:func:`~voxvec.data.manifest.read_manifest`); anything else is taken as an audio file as it
    is (a missing one fails when it is embedded, not here).

    Args:
        inputs: audio files, folders and manifests, in the order their files should come.

    Returns:
        The files, with speakers when any input was a manifest.

    Raises:
        ValueError: no input given, a folder holds no audio file, or a manifest is malformed.
        FileNotFoundError: a manifest does not exist.
    """
    if not inputs:
        raise ValueError("no input given: pass audio files, folders or path,speaker CSVs")
    paths: list[Path] = []
    speakers: list[str] = []
    manifests: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = find_audio_files(path)
            if not found:
                raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {path}")
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
    return EmbeddingInputs(paths, speakers if manifests else None, manifests)


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
            writer = csv.writer(f, lineterminator="\n")
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


def embed_to_file(
    embedder: SupportsIterEmbed,
    inputs: EmbeddingInputs,
    out: str | os.PathLike[str],
    *,
    batch_size: int = 16,
    progress: bool = False,
    on_failure: Callable[[FailedInput], None] | None = None,
) -> EmbedJobReport:
    """The batch job: embed every input, skip and report those that fail, write the rest.

    ``out`` is checked before anything is embedded (:func:`check_output`). Rows keep the input
    order; failed inputs are left out. Nothing is written when every input failed.

    Args:
        embedder: the model wrapper (``voxvec.inference.Embedder``).
        inputs: the files to embed (:func:`collect_inputs`).
        out: the embedding file to write (:data:`OUTPUT_FORMATS`).
        batch_size: inputs (or windows of long inputs) per forward pass.
        progress: show a progress bar on stderr.
        on_failure: called with each failure as it happens; None logs it as a warning.

    Returns:
        What was written and what failed.

    Raises:
        ValueError: ``out`` is not a valid output (see :func:`check_output`), or
            ``batch_size`` is below 1.
    """
    path = check_output(out, inputs)
    done = embed_many(
        embedder, inputs.paths, batch_size=batch_size, progress=progress, on_failure=on_failure
    )
    if not done.indices:
        return EmbedJobReport(None, 0, done.failures)
    speakers = None if inputs.speakers is None else [inputs.speakers[i] for i in done.indices]
    write_embeddings(
        path,
        np.stack(done.embeddings),
        [os.fspath(inputs.paths[i]) for i in done.indices],
        speakers,
    )
    logger.debug("wrote %d embeddings to %s", len(done.indices), path)
    return EmbedJobReport(path, len(done.indices), done.failures)
