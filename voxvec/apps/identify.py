"""Files in, names out: enrollment and open-set identification of audio files with a model and a
:class:`~voxvec.apps.store.SpeakerStore` (what ``voxvec enroll`` and ``voxvec identify`` run).

A file that cannot be embedded (missing, unreadable, too short) is reported and skipped; the
others go on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from voxvec.apps.identity import ModelIdentity
from voxvec.apps.store import Match, SpeakerStore, StoreError
from voxvec.embedding_files import FailedInput, embed_many

if TYPE_CHECKING:
    from voxvec.inference import Embedder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnrollReport:
    """Outcome of :func:`enroll_files`.

    Attributes:
        enrolled: name -> recordings added.
        failures: the files that could not be embedded.
    """

    enrolled: dict[str, int]
    failures: list[FailedInput]


@dataclass(frozen=True)
class FileMatch:
    """The identification of one file.

    Attributes:
        file: the file.
        match: the open-set match, or None when the file failed.
        error: why the file failed, or None.
    """

    file: str
    match: Match | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``file``, ``speaker``, ``score``, ``decision``, ``candidates`` (and
        ``error`` for a file that failed, with ``speaker`` and ``score`` None)."""
        if self.match is None:
            return {
                "file": self.file,
                "speaker": None,
                "score": None,
                "candidates": [],
                "error": self.error,
            }
        return {"file": self.file, **self.match.to_dict()}


def enroll_files(
    store: SpeakerStore,
    embedder: Embedder,
    files_by_name: Mapping[str, Sequence[str | os.PathLike[str]]],
    *,
    metadata: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    progress: bool = False,
    on_failure: Callable[[FailedInput], None] | None = None,
) -> EnrollReport:
    """Embed each speaker's files and enroll them all in one transaction.

    Args:
        store: the store (of ``embedder``'s model).
        embedder: the model.
        files_by_name: speaker name -> its recordings.
        metadata: merged into every enrolled speaker's metadata.
        batch_size: inputs per forward pass.
        progress: show a progress bar.
        on_failure: called with each file that fails; None logs a warning.

    Returns:
        What was enrolled and what failed.

    Raises:
        StoreError: no file of any speaker could be embedded, or a bad name.
        voxvec.apps.identity.ModelMismatchError: the store holds another model's embeddings.
    """
    model = ModelIdentity.of(embedder)
    store.model.check(model, f"speaker store {store.path}")
    names = list(files_by_name)
    paths = [p for name in names for p in files_by_name[name]]
    owner = [name for name in names for _ in files_by_name[name]]
    done = embed_many(
        embedder, paths, batch_size=batch_size, progress=progress, on_failure=on_failure
    )
    grouped: dict[str, list[int]] = {}
    for index in done.indices:
        grouped.setdefault(owner[index], []).append(index)
    if not grouped:
        raise StoreError(f"nothing enrolled: none of the {len(paths)} file(s) could be embedded")
    row = {index: k for k, index in enumerate(done.indices)}
    entries = [
        (
            name,
            np.stack([done.embeddings[row[i]] for i in indices]),
            [os.fspath(paths[i]) for i in indices],
            metadata,
        )
        for name, indices in grouped.items()
    ]
    store.enroll_many(entries, model=model)
    return EnrollReport({name: len(indices) for name, indices in grouped.items()}, done.failures)


def identify_files(
    store: SpeakerStore,
    embedder: Embedder,
    files: Sequence[str | os.PathLike[str]],
    *,
    threshold: float,
    margin: float = 0.05,
    top_k: int = 5,
    batch_size: int = 16,
    chunk_size: int = 256,
) -> Iterator[FileMatch]:
    """Identify each file (open set), ``chunk_size`` files at a time, in order.

    Args:
        store: the store (of ``embedder``'s model).
        embedder: the model.
        files: the audio files.
        threshold, margin, top_k: as :meth:`SpeakerStore.identify`.
        batch_size: inputs per forward pass.
        chunk_size: files embedded and searched together.

    Yields:
        One :class:`FileMatch` per file.

    Raises:
        As :meth:`SpeakerStore.identify`.
    """
    model = ModelIdentity.of(embedder)
    store.model.check(model, f"speaker store {store.path}")
    for first in range(0, len(files), chunk_size):
        chunk = files[first : first + chunk_size]
        done = embed_many(embedder, chunk, batch_size=batch_size, on_failure=lambda f: None)
        matches = (
            store.identify(
                np.stack(done.embeddings),
                model=model,
                threshold=threshold,
                margin=margin,
                top_k=top_k,
            )
            if done.indices
            else []
        )
        found = dict(zip(done.indices, matches, strict=True))
        errors = {failure.index: failure.message for failure in done.failures}
        for k, path in enumerate(chunk):
            yield FileMatch(os.fspath(path), found.get(k), errors.get(k))
