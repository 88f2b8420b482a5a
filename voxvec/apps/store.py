"""Who is this? A persistent store of enrolled speakers and open-set identification.

A :class:`SpeakerStore` is a folder. Each enrolled speaker keeps its name (data, never a path),
the embedding of every recording enrolled (its exemplars), their count and sources, the
normalised mean of the exemplars (what queries are scored against), free metadata and the
times it was enrolled and updated. The store records the :class:`~voxvec.apps.identity.
ModelIdentity` of the model that made its embeddings and refuses enrollment or queries with
another model.

Identification (:meth:`SpeakerStore.identify`) is open-set: a query is given the best speaker's
name only if its cosine score clears ``threshold`` and beats the runner-up by ``margin``;
otherwise it is unknown, and the best candidates are still reported. Search is exact by default
(:class:`~voxvec.apps.index.ExactIndex`); ``index="faiss"`` uses an approximate index.

On disk::

    DIR/store.json            format, version, generation, model, speakers (names, counts,
                              sources, metadata, times), each array's file and sha256, and a
                              sha256 of the document itself
    DIR/means-<gen>.npy       (N, D) float32 unit means, row i = speakers[i]
    DIR/exemplars-<gen>.npy   (E, D) float32 exemplar embeddings
    DIR/owners-<gen>.npy      (E,) int64 row of each exemplar's speaker
    DIR/.lock                 the writers' file lock

Every change is a transaction: take the lock, re-read the store if another process changed it,
apply the change, write new array files and then ``store.json`` atomically (fsynced), release.
Array files of the generation before are kept (a reader may still be loading them), older ones
removed. So concurrent processes never lose each other's enrollments and a crash leaves the last
complete store; a checksum mismatch or a missing file is reported, never silently read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from voxvec._version import __version__
from voxvec.apps.identity import ModelIdentity
from voxvec.apps.index import INDEXES, SearchIndex, build_index
from voxvec.atomic import atomic_path

logger = logging.getLogger(__name__)

FORMAT = "voxvec-speaker-store"
VERSION = 1
"""The store format this voxvec writes; it reads every version in :data:`READABLE_VERSIONS`."""
READABLE_VERSIONS = (1,)
MANIFEST = "store.json"
LOCK = ".lock"
MAX_NAME_LENGTH = 200
LOCK_TIMEOUT_S = 120.0
ARRAYS = ("means", "exemplars", "owners")


class StoreError(ValueError):
    """A store cannot be opened or changed as asked (the message says why and what to do)."""


def check_name(name: object) -> str:
    """A speaker name as stored: any text (``../x`` and ``/etc`` are just names, never paths).

    Args:
        name: the name given.

    Returns:
        The name with surrounding white space removed.

    Raises:
        StoreError: not a string, empty, longer than :data:`MAX_NAME_LENGTH`, or holding a NUL
            or another control character.
    """
    if not isinstance(name, str):
        raise StoreError(f"a speaker name must be text, got {type(name).__name__}")
    text = name.strip()
    if not text:
        raise StoreError("a speaker name must not be empty")
    if len(text) > MAX_NAME_LENGTH:
        raise StoreError(f"speaker name {text[:40]!r}... is over {MAX_NAME_LENGTH} characters")
    bad = [c for c in text if unicodedata.category(c) == "Cc"]
    if bad:
        raise StoreError(
            f"speaker name {text!r} holds control character(s) {bad!r} (NUL, newline, tab...); "
            "names may hold any other text"
        )
    return text


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _unit_rows(x: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or (norms == 0).any():
        raise StoreError(f"{what}: embeddings must be finite and non-zero")
    return (x / norms).astype(np.float32)


@dataclass(frozen=True)
class Speaker:
    """One enrolled speaker.

    Attributes:
        name: the speaker's name.
        count: recordings enrolled.
        mean: ``(D,)`` float32 unit mean of the exemplars.
        exemplars: ``(count, D)`` float32 embeddings of the recordings enrolled.
        sources: where each exemplar came from (a file name, or "" when not given).
        metadata: free JSON-able data.
        enrolled: ISO time of the first enrollment (UTC).
        updated: ISO time of the last change.
    """

    name: str
    count: int
    mean: np.ndarray = field(repr=False)
    exemplars: np.ndarray = field(repr=False)
    sources: tuple[str, ...]
    metadata: dict[str, Any]
    enrolled: str
    updated: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no vectors)."""
        return {
            "name": self.name,
            "count": self.count,
            "sources": list(self.sources),
            "metadata": self.metadata,
            "enrolled": self.enrolled,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class Candidate:
    """A speaker and its cosine score against a query."""

    speaker: str
    score: float


@dataclass(frozen=True)
class Match:
    """The open-set identification of one query.

    Attributes:
        speaker: the name given, or None (unknown).
        score: the best candidate's cosine score.
        candidates: the top-k speakers and scores, best first (also when unknown).
        decision: why, in words (``"accepted"``, ``"below threshold"``, ``"margin ..."``).
    """

    speaker: str | None
    score: float
    candidates: list[Candidate]
    decision: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "speaker": self.speaker,
            "score": self.score,
            "decision": self.decision,
            "candidates": [{"speaker": c.speaker, "score": c.score} for c in self.candidates],
        }


@dataclass
class _State:
    """The store's contents in memory: rows of ``means`` follow ``speakers``."""

    generation: int
    model: ModelIdentity
    speakers: list[dict[str, Any]]  # name, count, sources, metadata, enrolled, updated
    means: np.ndarray  # (N, D) float32
    exemplars: np.ndarray  # (E, D) float32
    owners: np.ndarray  # (E,) int64


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _document_checksum(document: Mapping[str, Any]) -> str:
    body = {k: v for k, v in document.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _write_synced(path: Path, write: Any) -> None:
    """Write a file atomically through ``write(file)`` and fsync it before it is renamed."""
    with atomic_path(path) as tmp, tmp.open("xb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


class SpeakerStore:
    """A folder of enrolled speakers (see the module doc). Open with :meth:`open` or
    :meth:`create`.

    Attributes:
        path: the store's folder.
        index_kind: the search index, one of :data:`voxvec.apps.index.INDEXES`.
    """

    def __init__(self, path: Path, state: _State, index_kind: str) -> None:
        self.path = path
        self._state = state
        self.index_kind = index_kind
        self._index: SearchIndex | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], model: ModelIdentity, *, index: str = "exact"
    ) -> SpeakerStore:
        """A new, empty store in ``path`` (created if needed) for embeddings of ``model``.

        Raises:
            StoreError: ``path`` already holds a store, or an unknown ``index``.
        """
        folder = Path(path)
        _check_index(index)
        folder.mkdir(parents=True, exist_ok=True)
        empty = _State(
            generation=0,
            model=model,
            speakers=[],
            means=np.zeros((0, model.embed_dim), np.float32),
            exemplars=np.zeros((0, model.embed_dim), np.float32),
            owners=np.zeros(0, np.int64),
        )
        store = cls(folder, empty, index)
        with store._lock():
            if (folder / MANIFEST).exists():
                raise StoreError(f"{folder} already holds a speaker store; open it instead")
            store._write(empty)
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, index: str = "exact") -> SpeakerStore:
        """Open an existing store.

        Args:
            path: the store's folder.
            index: the search index for :meth:`identify` (``"exact"``, or ``"faiss"``: needs
                ``pip install 'voxvec[index]'``).

        Raises:
            FileNotFoundError: no store there.
            StoreError: a newer or unknown format, a checksum mismatch, a missing or malformed
                file (the message names it), or an unknown ``index``.
        """
        _check_index(index)
        folder = Path(path)
        return cls(folder, _read(folder), index)

    @classmethod
    def open_or_create(
        cls, path: str | os.PathLike[str], model: ModelIdentity, *, index: str = "exact"
    ) -> SpeakerStore:
        """Open the store in ``path``, or create it for ``model`` when there is none.

        Raises:
            StoreError: as :meth:`open` and :meth:`create`.
        """
        folder = Path(path)
        if (folder / MANIFEST).exists():
            return cls.open(folder, index=index)
        try:
            return cls.create(folder, model, index=index)
        except StoreError:  # another process created it meanwhile
            return cls.open(folder, index=index)

    # ------------------------------------------------------------------ reading

    @property
    def model(self) -> ModelIdentity:
        """The model whose embeddings this store holds."""
        return self._state.model

    def refresh(self) -> None:
        """Re-read the store from disk if another process changed it."""
        generation = _read_generation(self.path)
        if generation != self._state.generation:
            self._state = _read(self.path)
            self._index = None

    def __len__(self) -> int:
        return len(self._state.speakers)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._row(name.strip()) is not None

    def names(self) -> list[str]:
        """The enrolled names, in enrollment order."""
        return [s["name"] for s in self._state.speakers]

    def speakers(self) -> list[Speaker]:
        """Every enrolled speaker, in enrollment order."""
        order = np.argsort(self._state.owners, kind="stable")
        ends = np.cumsum(np.bincount(self._state.owners, minlength=len(self)))
        groups = np.split(self._state.exemplars[order], ends[:-1])
        return [self._speaker(i, groups[i]) for i in range(len(self))]

    def get(self, name: str) -> Speaker:
        """The speaker called ``name``.

        Raises:
            KeyError: no such speaker (the message lists a few names).
        """
        row = self._row(check_name(name))
        if row is None:
            raise KeyError(self._missing(name))
        return self._speaker(row, self._state.exemplars[self._state.owners == row])

    # ------------------------------------------------------------------ changing

    def enroll(
        self,
        name: str,
        embeddings: np.ndarray,
        *,
        model: ModelIdentity,
        sources: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Speaker:
        """Enroll recordings of one speaker; a known name gets the new recordings added.

        Args:
            name: the speaker's name (see :func:`check_name`).
            embeddings: ``(K, D)`` (or ``(D,)``) embeddings of K recordings.
            model: the model that made them (must be the store's).
            sources: K names of the recordings (e.g. files), for :meth:`get`.
            metadata: merged into the speaker's metadata (JSON-able).

        Returns:
            The speaker as stored.

        Raises:
            StoreError: a bad name, shape, source count or metadata.
            voxvec.apps.identity.ModelMismatchError: another model.
        """
        self.enroll_many([(name, embeddings, sources, metadata)], model=model)
        return self.get(name)

    def enroll_many(
        self,
        entries: Sequence[tuple[str, np.ndarray, Sequence[str] | None, Mapping[str, Any] | None]],
        *,
        model: ModelIdentity,
    ) -> None:
        """Enroll many speakers in one transaction (one write): ``(name, embeddings, sources,
        metadata)`` each, as :meth:`enroll` takes them.

        Raises:
            As :meth:`enroll`.
        """
        prepared = []  # (name, number of vectors, sources, metadata)
        blocks = []
        for name, embeddings, sources, metadata in entries:
            clean = check_name(name)
            vectors = np.asarray(embeddings, dtype=np.float32)
            vectors = vectors[None] if vectors.ndim == 1 else vectors
            if vectors.ndim != 2 or vectors.shape[1] != model.embed_dim or len(vectors) == 0:
                raise StoreError(
                    f"{clean!r}: expected (K, {model.embed_dim}) embeddings with K >= 1, got "
                    f"shape {np.shape(embeddings)}"
                )
            names = [""] * len(vectors) if sources is None else [str(s) for s in sources]
            if len(names) != len(vectors):
                raise StoreError(f"{clean!r}: {len(names)} sources for {len(vectors)} embeddings")
            meta = dict(metadata or {})
            if meta:
                try:
                    json.dumps(meta)
                except TypeError as err:
                    raise StoreError(f"{clean!r}: metadata must be JSON-able ({err})") from None
            prepared.append((clean, len(vectors), names, meta))
            blocks.append(vectors)
        if not prepared:
            return
        added = _unit_rows(np.concatenate(blocks), "the embeddings enrolled")
        with self._transaction(model) as state:
            rows = {s["name"]: i for i, s in enumerate(state.speakers)}
            owners = np.empty(len(added), np.int64)
            start = 0
            now = _now()
            for name, count, names, meta in prepared:
                row = rows.get(name)
                if row is None:
                    row = rows[name] = len(state.speakers)
                    state.speakers.append(
                        {"name": name, "count": 0, "sources": [], "metadata": {}, "enrolled": now}
                    )
                entry = state.speakers[row]
                entry["count"] += count
                entry["sources"].extend(names)
                entry["metadata"].update(meta)
                entry["updated"] = now
                owners[start : start + count] = row
                start += count
            state.exemplars = np.concatenate([state.exemplars, added])
            state.owners = np.concatenate([state.owners, owners])
            state.means = _means(state, set(owners.tolist()))

    def remove(self, name: str) -> None:
        """Forget a speaker (its exemplars and metadata).

        Raises:
            KeyError: no such speaker.
        """
        with self._transaction() as state:
            row = _find(state, check_name(name))
            if row is None:
                raise KeyError(self._missing(name))
            keep = state.owners != row
            state.exemplars = state.exemplars[keep]
            state.owners = state.owners[keep] - (state.owners[keep] > row)
            state.means = np.delete(state.means, row, axis=0)
            del state.speakers[row]

    def rename(self, old: str, new: str) -> None:
        """Give a speaker another name.

        Raises:
            KeyError: no speaker ``old``.
            StoreError: ``new`` is taken or not a valid name.
        """
        new_name = check_name(new)
        with self._transaction() as state:
            row = _find(state, check_name(old))
            if row is None:
                raise KeyError(self._missing(old))
            if _find(state, new_name) is not None:
                raise StoreError(f"cannot rename {old!r}: {new_name!r} is already enrolled")
            state.speakers[row]["name"] = new_name
            state.speakers[row]["updated"] = _now()

    # ------------------------------------------------------------------ identifying

    def identify(
        self,
        embeddings: np.ndarray,
        *,
        model: ModelIdentity,
        threshold: float,
        margin: float = 0.05,
        top_k: int = 5,
    ) -> list[Match]:
        """Open-set identification of each query against the enrolled speakers.

        A query is given the best speaker's name when its cosine score is ``>= threshold`` and
        exceeds the runner-up's by at least ``margin`` (with one speaker enrolled, the margin
        does not apply); otherwise the speaker is None (unknown).

        Args:
            embeddings: ``(Q, D)`` (or ``(D,)``) query embeddings of ``model``.
            model: the model that made them (must be the store's).
            threshold: the cosine threshold (see
                :func:`voxvec.apps.calibration.identification_threshold`).
            margin: the least lead over the runner-up, in cosine (>= 0).
            top_k: candidates reported per query (>= 1).

        Returns:
            One :class:`Match` per query.

        Raises:
            StoreError: the store is empty, or bad shapes or options.
            voxvec.apps.identity.ModelMismatchError: another model.
        """
        self.model.check(model, f"speaker store {self.path}")
        if not len(self):
            raise StoreError(f"speaker store {self.path} has no speakers: enroll some first")
        if margin < 0 or top_k < 1:
            raise StoreError(f"need margin >= 0 and top_k >= 1, got {margin} and {top_k}")
        queries = np.asarray(embeddings, dtype=np.float32)
        queries = queries[None] if queries.ndim == 1 else queries
        if queries.ndim != 2 or queries.shape[1] != self.model.embed_dim:
            raise StoreError(
                f"expected (Q, {self.model.embed_dim}) query embeddings, got {np.shape(embeddings)}"
            )
        if self._index is None:
            self._index = build_index(self.index_kind, self._state.means)
        scores, rows = self._index.search(_unit_rows(queries, "queries"), max(top_k, 2))
        names = self.names()
        matches = []
        for q_scores, q_rows in zip(scores, rows, strict=True):
            candidates = [
                Candidate(names[r], float(s)) for s, r in zip(q_scores, q_rows, strict=True)
            ]
            best = candidates[0]
            lead = best.score - candidates[1].score if len(candidates) > 1 else np.inf
            if best.score < threshold:
                speaker, why = None, f"below threshold {threshold:.4f}"
            elif lead < margin:
                speaker = None
                why = f"margin {lead:.4f} over {candidates[1].speaker!r} is below {margin:g}"
            else:
                speaker, why = best.speaker, "accepted"
            matches.append(Match(speaker, best.score, candidates[:top_k], why))
        return matches

    # ------------------------------------------------------------------ internals

    def _row(self, name: str) -> int | None:
        return _find(self._state, name)

    def _missing(self, name: str) -> str:
        shown = ", ".join(repr(n) for n in self.names()[:5]) or "none"
        return f"no speaker {name!r} in store {self.path} (enrolled: {shown}; {len(self)} in all)"

    def _speaker(self, row: int, exemplars: np.ndarray) -> Speaker:
        entry = self._state.speakers[row]
        return Speaker(
            name=entry["name"],
            count=entry["count"],
            mean=self._state.means[row],
            exemplars=exemplars,
            sources=tuple(entry["sources"]),
            metadata=dict(entry["metadata"]),
            enrolled=entry["enrolled"],
            updated=entry["updated"],
        )

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.path / LOCK), timeout=LOCK_TIMEOUT_S)
        try:
            with lock:
                yield
        except Timeout:
            raise StoreError(
                f"speaker store {self.path} stayed locked for {LOCK_TIMEOUT_S:g} s by another "
                f"process (lock file {self.path / LOCK})"
            ) from None

    @contextlib.contextmanager
    def _transaction(self, model: ModelIdentity | None = None) -> Iterator[_State]:
        """Lock, bring the state up to date, let the caller change a copy, write it."""
        with self._lock():
            self.refresh()
            if model is not None:
                self.model.check(model, f"speaker store {self.path}")
            state = self._state
            work = _State(
                state.generation + 1,
                state.model,
                [
                    {**s, "sources": list(s["sources"]), "metadata": dict(s["metadata"])}
                    for s in state.speakers
                ],
                state.means,
                state.exemplars,
                state.owners,
            )
            yield work
            self._write(work)
            self._state = work
            self._index = None

    def _write(self, state: _State) -> None:
        arrays = {"means": state.means, "exemplars": state.exemplars, "owners": state.owners}
        files = {}
        for key, array in arrays.items():
            file = self.path / f"{key}-{state.generation}.npy"
            _write_synced(file, lambda f, a=array: np.save(f, a, allow_pickle=False))
            files[key] = {
                "file": file.name,
                "sha256": _sha256_file(file),
                "shape": list(array.shape),
            }
        document: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "written_by": f"voxvec {__version__}",
            "generation": state.generation,
            "model": state.model.to_dict(),
            "speakers": state.speakers,
            "arrays": files,
        }
        document["checksum"] = _document_checksum(document)
        text = json.dumps(document, ensure_ascii=False) + "\n"  # one line: the C encoder
        _write_synced(self.path / MANIFEST, lambda f: f.write(text.encode("utf-8")))
        with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for old in self.path.glob("*-*.npy"):
            stem, _, gen = old.stem.rpartition("-")
            if stem in ARRAYS and gen.isdigit() and int(gen) < state.generation - 1:
                old.unlink(missing_ok=True)


def _check_index(index: str) -> None:
    if index not in INDEXES:
        raise StoreError(f"unknown index {index!r}; choose one of {INDEXES}")


def _find(state: _State, name: str) -> int | None:
    for i, entry in enumerate(state.speakers):
        if entry["name"] == name:
            return i
    return None


def _means(state: _State, rows: set[int]) -> np.ndarray:
    """``state.means`` with the rows in ``rows`` recomputed from the exemplars."""
    n = len(state.speakers)
    means = np.zeros((n, state.model.embed_dim), np.float32)
    means[: len(state.means)] = state.means
    if rows:
        picked = np.array(sorted(rows))
        changed = np.flatnonzero(np.isin(state.owners, picked))
        order = changed[np.argsort(state.owners[changed], kind="stable")]
        owners = state.owners[order]
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        sums = np.add.reduceat(state.exemplars[order].astype(np.float64), starts, axis=0)
        means[owners[starts]] = _unit_rows(sums, "speaker means")
    return means


def _read_document(folder: Path) -> dict[str, Any]:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(
            f"no speaker store in {folder} (no {MANIFEST}); enroll a speaker to create one"
        )
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"{manifest}: not a speaker store file ({err})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StoreError(f'{manifest}: not a voxvec speaker store (no "format": "{FORMAT}")')
    version = document.get("version")
    if version not in READABLE_VERSIONS:
        newer = isinstance(version, int) and version > VERSION
        raise StoreError(
            f"{manifest}: store format version {version!r} "
            + (
                f"was written by a newer voxvec ({document.get('written_by', '?')}); this "
                f"voxvec {__version__} reads versions {READABLE_VERSIONS}: upgrade voxvec"
                if newer
                else f"is not one this voxvec reads ({READABLE_VERSIONS})"
            )
        )
    if document.get("checksum") != _document_checksum(document):
        raise StoreError(
            f"{manifest}: checksum mismatch: the file was changed or damaged outside voxvec"
        )
    return document


def _read_generation(folder: Path) -> int:
    return int(_read_document(folder)["generation"])


def _load_arrays(folder: Path, document: Mapping[str, Any]) -> dict[str, np.ndarray]:
    arrays = {}
    for key in ARRAYS:
        info = document["arrays"][key]
        file = folder / info["file"]
        if _sha256_file(file) != info["sha256"]:
            raise StoreError(
                f"{file}: checksum mismatch with {folder / MANIFEST}: the file was changed or "
                "damaged outside voxvec"
            )
        arrays[key] = np.load(file, allow_pickle=False)
    return arrays


def _read(folder: Path) -> _State:
    """The store in ``folder``; read again when a writer replaced it while it was being read."""
    attempts = 0
    while True:
        document = _read_document(folder)
        try:
            arrays = _load_arrays(folder, document)
            break
        except FileNotFoundError:
            attempts += 1
            if attempts == 3:
                raise StoreError(
                    f"speaker store {folder}: an array file named in {MANIFEST} is missing"
                ) from None
    model = ModelIdentity.from_dict(document["model"], str(folder / MANIFEST))
    state = _State(
        generation=int(document["generation"]),
        model=model,
        speakers=list(document["speakers"]),
        means=arrays["means"].astype(np.float32, copy=False),
        exemplars=arrays["exemplars"].astype(np.float32, copy=False),
        owners=arrays["owners"].astype(np.int64, copy=False),
    )
    n, e, dim = len(state.speakers), len(state.owners), model.embed_dim
    if state.means.shape != (n, dim) or state.exemplars.shape != (e, dim):
        raise StoreError(
            f"speaker store {folder}: arrays of shapes {state.means.shape} and "
            f"{state.exemplars.shape} do not fit {n} speakers and {e} exemplars"
        )
    return state
