"""The FastAPI application of ``voxvec serve``: endpoints, limits, authentication, web page.

Endpoints (multipart uploads; JSON answers; errors are ``{"detail": "..."}`` naming the problem):

- ``POST /embed``: the embedding of each uploaded file.
- ``POST /verify``: are sides ``a`` and ``b`` (one or several files each) the same speaker?
  (:func:`voxvec.apps.verify.verify`).
- ``POST /identify``: who is speaking in each file, among the store's speakers (open set:
  :meth:`voxvec.apps.store.SpeakerStore.identify`).
- ``POST /enroll``: add recordings of a speaker to the store.
- ``GET /speakers``, ``GET /speakers/{name}``, ``DELETE /speakers/{name}``: the store.
- ``POST /diarize``: who spoke when in one recording (:class:`voxvec.apps.diarize.Diarizer`).
- ``GET /health``: model, store size, limits, queue (never needs the token).
- ``GET /``: the web page; ``GET /openapi.json``: the schema.

The speaker store is the one folder given at start-up; names are data (the store's rule,
:func:`voxvec.apps.store.check_name`), so no request reaches a path outside it. Uploads go to a
private temporary folder that is removed when the request ends.

Status codes: 400 a body that is not multipart; 401 without the right bearer token (when the
server has one); 404 an unknown speaker; 408 an upload slower than the request time limit; 409
identification with an empty store; 413 a body over the upload limit or audio over the
duration limit; 422 anything the library refuses (not audio, too short, no speech, a bad name
or option: one message, also for form validation); 503 the model's queue is full or the request
ran out of time waiting for it (with ``Retry-After``).
"""

import asyncio
import copy
import hmac
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import soundfile as sf
from fastapi import FastAPI, File, Form, HTTPException, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxvec._version import __version__
from voxvec.apps.calibration import identification_threshold
from voxvec.apps.diarize import Diarizer, store_namer
from voxvec.apps.identity import ModelIdentity
from voxvec.apps.store import SpeakerStore, StoreError
from voxvec.apps.verify import verify
from voxvec.audio.io import count_frames, header_frames
from voxvec.inference import Embedder
from voxvec.serve.settings import ServeSettings
from voxvec.serve.worker import BatchWorker, Overloaded, QueuedEmbedder, TimedOut, deadline

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

# --------------------------------------------------------------------------- schema


class Error(BaseModel):
    """An error: what was wrong, in words."""

    detail: str


class Embedding(BaseModel):
    file: str
    duration_s: float
    embedding: list[float]


class EmbedResponse(BaseModel):
    model: str
    embed_dim: int
    results: list[Embedding]


class VerifyResponse(BaseModel):
    a: list[str]
    b: list[str]
    score: float
    llr: float | None
    same: bool | None
    threshold: float | None
    threshold_source: str
    n_a: int
    n_b: int


class Candidate(BaseModel):
    speaker: str
    score: float


class Identified(BaseModel):
    file: str
    speaker: str | None
    score: float
    decision: str
    candidates: list[Candidate]


class IdentifyResponse(BaseModel):
    threshold: float
    threshold_source: str
    margin: float
    results: list[Identified]


class SpeakerInfo(BaseModel):
    name: str
    count: int
    sources: list[str]
    metadata: dict[str, Any]
    enrolled: str
    updated: str


class EnrollResponse(BaseModel):
    added: int
    speaker: SpeakerInfo


class SpeakersResponse(BaseModel):
    model: str
    speakers: list[SpeakerInfo]


class RemoveResponse(BaseModel):
    removed: str
    speakers: int


class Turn(BaseModel):
    start_s: float
    end_s: float
    speaker: str


class DiarizeResponse(BaseModel):
    source: str
    duration_s: float
    speakers: list[str]
    segments: list[Turn]
    exclusive_segments: list[Turn]


class Health(BaseModel):
    status: str
    version: str
    model: str
    embed_dim: int
    sample_rate: int
    speakers: int
    auth: bool
    limits: dict[str, Any]
    queue: dict[str, int]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Error} for code in (400, 401, 413, 422, 503, *codes)}


# --------------------------------------------------------------------------- limits


PUBLIC_PATHS = ("/", "/health", "/openapi.json")
"""What needs no token (with ``/static/``: the web page's files)."""


def _token_problem(headers: list[tuple[bytes, bytes]], token: str) -> tuple[int, str] | None:
    """401 unless the ``Authorization`` header carries ``Bearer <token>``."""
    given = dict(headers).get(b"authorization", b"")
    scheme, _, credentials = given.partition(b" ")
    if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token.encode()):
        return None
    return 401, (
        "missing or wrong bearer token: send 'Authorization: Bearer <token>' (the server's "
        "--token or $VOXVEC_SERVE_TOKEN)"
    )


class _Guard:
    """ASGI middleware, before the application reads anything: 401 without the token (when
    the server has one; :data:`PUBLIC_PATHS` and ``/static/`` excepted), 413 for a body over
    the upload limit (by its Content-Length, else as it streams in), 408 for a body that takes
    over the time limit to arrive."""

    def __init__(self, app: ASGIApp, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings

    def _too_large(self) -> tuple[int, str]:
        return 413, (
            f"the request body is over the upload limit of {self.settings.max_upload_mb:g} MiB "
            "(--max-upload-mb); send fewer or smaller files"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token, path = self.settings.token, scope["path"]
        if token is not None and path not in PUBLIC_PATHS and not path.startswith("/static/"):
            refused = _token_problem(scope["headers"], token)
            if refused is not None:
                await _send_error(send, *refused)
                return
        limit, timeout_s = self.settings.max_upload_bytes, self.settings.request_timeout_s
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await _send_error(send, *self._too_large())
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        received, complete, started = 0, False, False
        problem: tuple[int, str] | None = None

        async def limited_receive() -> Message:
            nonlocal received, complete, problem
            if complete:  # the body is in; later calls wait for a disconnect, untimed
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, end - loop.time()))
            except asyncio.TimeoutError:
                problem = (
                    408,
                    (
                        f"the request took over {timeout_s:g} s to arrive (--request-timeout-s); "
                        "send it faster or smaller"
                    ),
                )
                raise _Refused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > limit:
                    problem = self._too_large()
                    raise _Refused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if problem is None:  # else the app's answer to a refused body is replaced
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if problem is None:
                raise
        if problem is not None and not started:
            await _send_error(send, *problem)


class _Refused(Exception):
    """Raised into the application when :class:`_Guard` refuses the body."""


async def _send_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    else:  # the rest of a refused body is not read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- uploads

_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


@dataclass(frozen=True)
class Saved:
    """The uploads of one form field, saved: their paths, client-side names and durations."""

    paths: list[Path]
    names: list[str]
    durations_s: list[float]


class _Request:
    """A request's uploads, saved in its private temporary folder."""

    def __init__(self, folder: Path, settings: ServeSettings, store: Path) -> None:
        self.folder = folder
        self.settings = settings
        self.store = store
        self.saved: dict[Path, str] = {}

    def save(self, files: Sequence[UploadFile], field: str) -> Saved:
        """Save the files of form field ``field``.

        Raises:
            HTTPException: 422 no file or too many; 413 audio over the duration limit; 503 the
                server's disk refused the file.
        """
        limit = self.settings.max_files
        if not files:
            raise HTTPException(422, f"{field}: give at least one audio file")
        if len(files) > limit:
            raise HTTPException(422, f"{field}: {len(files)} files; at most {limit} per request")
        out = Saved([], [], [])
        for k, upload in enumerate(files):
            suffix = Path(upload.filename or "").suffix.lower()
            path = self.folder / f"{field}-{k}{suffix if _SAFE_SUFFIX.fullmatch(suffix) else ''}"
            try:
                with path.open("xb") as f:
                    shutil.copyfileobj(upload.file, f)
            except OSError as err:  # the server's disk, not the client's input
                logger.error("cannot save an upload to %s: %s", path, err)
                raise HTTPException(
                    503, f"the server cannot store the upload now ({err.strerror}); retry later"
                ) from None
            name = os.path.basename(upload.filename or "").strip() or f"{field}[{k}]"
            self.saved[path] = name
            out.paths.append(path)
            out.names.append(name)
            out.durations_s.append(self._duration(path, name))
        return out

    def _duration(self, path: Path, name: str) -> float:
        """The file's duration in seconds; 413 when it is over the limit.

        Frames are counted (decoded, not kept) up to the limit, so a header that understates
        the length, or gives none (a streamed FLAC), cannot bring in hours of audio; 0 when the
        file does not open (the decoder then says what is wrong).

        Raises:
            HTTPException: 413 longer than the limit.
        """
        limit_s = self.settings.max_audio_s
        too_long = f"this server takes at most {limit_s:g} s per file (--max-audio-s)"
        try:
            f = sf.SoundFile(str(path))
        except (sf.SoundFileError, RuntimeError, OSError):
            return 0.0
        with f:
            rate, claimed = f.samplerate, header_frames(f)
            cap = int(limit_s * rate) + 1
            if claimed is not None and claimed >= cap:
                raise HTTPException(413, f"{name!r} is {claimed / rate:.1f} s long; {too_long}")
            try:
                counted = count_frames(f, cap)
            except (sf.SoundFileError, RuntimeError):
                return 0.0
        if counted >= cap:
            raise HTTPException(413, f"{name!r} is over {limit_s:g} s long; {too_long}")
        return counted / rate

    def client_text(self, text: str) -> str:
        """``text`` with each saved file's path replaced by its client-side name (and no
        server path: the folders are named, not shown)."""
        for path, name in self.saved.items():
            text = text.replace(str(path), name)
        return _hide_store(text.replace(str(self.folder), "upload"), self.store)


class Service:
    """What the endpoints share: the model, its worker, the store and the limits.

    Args:
        embedder: the model (loaded once; its forward passes are moved to a worker thread).
        store: the speaker store (its folder is the only one requests touch).
        settings: limits and token.
        diarizer: the diarization pipeline for ``embedder``'s model (its stages are used,
            its namer replaced by the store's); None builds the default.

    Raises:
        voxvec.apps.identity.ModelMismatchError: the store holds another model's embeddings.
    """

    def __init__(
        self,
        embedder: Embedder,
        store: SpeakerStore,
        settings: ServeSettings,
        diarizer: Diarizer | None = None,
    ) -> None:
        self.settings = settings
        self.identity = ModelIdentity.of(embedder)
        store.model.check(self.identity, f"speaker store {store.path}")
        self.store = store
        self.store_lock = threading.Lock()
        self.worker = BatchWorker(
            embedder.model,
            embedder.precision,
            max_batch=settings.max_batch,
            max_pending=settings.max_pending,
        )
        self.embedder = QueuedEmbedder(embedder, self.worker)
        self.diarizer = copy.copy(diarizer or Diarizer(embedder))
        self.diarizer.embedder = QueuedEmbedder(self.diarizer.embedder, self.worker)
        self.diarizer.namer = None
        self.naming_diarizer = copy.copy(self.diarizer)
        self.naming_diarizer.namer = self.name_clusters
        self.model_name = str(embedder.card.get("name") or self.identity.name)

    def close(self) -> None:
        """Stop the model worker (after the jobs already queued)."""
        self.worker.close()

    @contextmanager
    def request(self) -> Iterator[_Request]:
        """A private folder for the request's uploads (removed afterwards); the library's
        errors inside the block become HTTP errors that name the uploads, not their paths.

        Raises:
            HTTPException: 422 what the library refuses (not audio, too short, no speech, a bad
                name...); 404 an unknown speaker; 503 the queue is full or time ran out.
        """
        with tempfile.TemporaryDirectory(prefix="voxvec-serve-") as tmp:
            request = _Request(Path(tmp), self.settings, self.store.path)
            try:
                with deadline(self.settings.request_timeout_s):
                    yield request
            except KeyError as err:
                raise HTTPException(404, request.client_text(str(err.args[0]))) from None
            except (Overloaded, TimedOut) as err:
                raise HTTPException(503, str(err), headers={"Retry-After": "1"}) from None
            except (OSError, ValueError) as err:
                raise HTTPException(422, request.client_text(str(err))) from None

    def name_clusters(self, centroids: np.ndarray) -> list[str | None]:
        """The diarizer's namer: each cluster's enrolled name, or None (the store's speakers
        now, with the identification threshold for their number)."""
        with self.store_lock:
            store = self.refreshed_store()
            point = identification_threshold(None, self.embedder, max(1, len(store)))
            if not len(store) or point is None:
                return [None] * len(centroids)
            return list(store_namer(store, self.embedder, point.value)(centroids))

    def refreshed_store(self) -> SpeakerStore:
        """The store, re-read if another process changed it (call with :attr:`store_lock`)."""
        self.store.refresh()
        return self.store


def _threshold(text: str | None) -> float | str | None:
    """A threshold field: a finite number (a cosine score), an operating-point name, or None."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return text.strip()
    if not math.isfinite(value):
        raise HTTPException(422, f"threshold must be a finite number or a name, got {text!r}")
    return value


# --------------------------------------------------------------------------- app


def create_app(service: Service) -> FastAPI:
    """The FastAPI application serving ``service`` (run it with uvicorn).

    Args:
        service: the model, store and limits.

    Returns:
        The application; its lifespan closes the service's worker at shutdown.
    """
    settings = service.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        lifespan=lifespan,
        title="voxvec",
        version=__version__,
        summary="Speaker embeddings, verification, identification and diarization.",
        docs_url=None,  # Swagger UI loads from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.add_middleware(_Guard, settings=settings)
    # The token is checked by _Guard before the body is read; this declares it in the schema.
    guarded = [Security(HTTPBearer(auto_error=False, description="the server's --token"))]
    Files = Annotated[list[UploadFile], File(description="audio files (WAV, FLAC, Ogg, MP3)")]

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(part) for part in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
            for e in err.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return JSONResponse(
            {"detail": f"internal error ({type(err).__name__}); details are in the server log"},
            status_code=500,
        )

    @app.post("/embed", response_model=EmbedResponse, responses=_errors(), dependencies=guarded)
    def embed(files: Files) -> EmbedResponse:
        """The speaker embedding of each file: a unit vector, one per file."""
        with service.request() as request:
            up = request.save(files, "files")
            emb = service.embedder.embed(up.paths)
        results = [
            Embedding(file=name, duration_s=duration, embedding=row.tolist())
            for name, duration, row in zip(up.names, up.durations_s, emb, strict=True)
        ]
        return EmbedResponse(
            model=service.model_name, embed_dim=service.embedder.embed_dim, results=results
        )

    @app.post("/verify", response_model=VerifyResponse, responses=_errors(), dependencies=guarded)
    def verify_sides(
        a: Annotated[list[UploadFile], File(description="side a: one or more recordings")],
        b: Annotated[list[UploadFile], File(description="side b: one or more recordings")],
        threshold: Annotated[
            str | None,
            Form(description="a cosine score, or an operating point of the card (eer, far1)"),
        ] = None,
    ) -> VerifyResponse:
        """Whether the two sides are the same speaker: score, decision and its threshold."""
        chosen = _threshold(threshold)
        with service.request() as request:
            up_a, up_b = request.save(a, "a"), request.save(b, "b")
            result = verify(service.embedder, up_a.paths, up_b.paths, threshold=chosen)
        return VerifyResponse(a=up_a.names, b=up_b.names, **result.to_dict())

    @app.post(
        "/identify", response_model=IdentifyResponse, responses=_errors(409), dependencies=guarded
    )
    def identify(
        files: Files,
        threshold: Annotated[
            str | None,
            Form(description="a cosine score or an operating point; default the card's far1"),
        ] = None,
        margin: Annotated[
            float, Form(ge=0.0, le=2.0, description="least lead over the runner-up")
        ] = 0.05,
        top_k: Annotated[int, Form(ge=1, le=100, description="candidates reported")] = 5,
    ) -> IdentifyResponse:
        """Who is speaking in each file: an enrolled name, or null (unknown), with candidates."""
        chosen = _threshold(threshold)
        with service.request() as request:
            up = request.save(files, "files")
            emb = service.embedder.embed(up.paths)
            with service.store_lock:
                store = service.refreshed_store()
                if not len(store):
                    raise HTTPException(409, "the speaker store is empty: enroll speakers first")
                point = identification_threshold(chosen, service.embedder, len(store))
                if point is None:
                    raise ValueError("the model card has no far1 threshold: give a threshold")
                matches = store.identify(
                    emb, model=service.identity, threshold=point.value, margin=margin, top_k=top_k
                )
        results = [
            Identified(file=n, **m.to_dict()) for n, m in zip(up.names, matches, strict=True)
        ]
        return IdentifyResponse(
            threshold=point.value, threshold_source=point.source, margin=margin, results=results
        )

    @app.post("/enroll", response_model=EnrollResponse, responses=_errors(), dependencies=guarded)
    def enroll(
        name: Annotated[str, Form(description="the speaker's name (any text)")],
        files: Files,
        metadata: Annotated[
            str | None, Form(description="a JSON object merged into the speaker's metadata")
        ] = None,
    ) -> EnrollResponse:
        """Add recordings of a speaker to the store (a new name is created)."""
        meta = _metadata(metadata)
        with service.request() as request:
            up = request.save(files, "files")
            emb = service.embedder.embed(up.paths)
            with service.store_lock:
                speaker = service.refreshed_store().enroll(
                    name, emb, model=service.identity, sources=up.names, metadata=meta
                )
        return EnrollResponse(added=len(emb), speaker=SpeakerInfo(**speaker.to_dict()))

    @app.get(
        "/speakers", response_model=SpeakersResponse, responses=_errors(), dependencies=guarded
    )
    def speakers() -> SpeakersResponse:
        """Every enrolled speaker with its recordings' count, sources and metadata."""
        with service.store_lock:
            listed = service.refreshed_store().speakers()
        return SpeakersResponse(
            model=service.store.model.name, speakers=[SpeakerInfo(**s.to_dict()) for s in listed]
        )

    @app.get(
        "/speakers/{name:path}",
        response_model=SpeakerInfo,
        responses=_errors(404),
        dependencies=guarded,
    )
    def speaker(name: str) -> SpeakerInfo:
        """One enrolled speaker."""
        with service.store_lock, _store_errors(service.store.path):
            return SpeakerInfo(**service.refreshed_store().get(name).to_dict())

    @app.delete(
        "/speakers/{name:path}",
        response_model=RemoveResponse,
        responses=_errors(404),
        dependencies=guarded,
    )
    def remove(name: str) -> RemoveResponse:
        """Forget a speaker."""
        with service.store_lock, _store_errors(service.store.path):
            store = service.refreshed_store()
            store.remove(name)
            return RemoveResponse(removed=name, speakers=len(store))

    @app.post("/diarize", response_model=DiarizeResponse, responses=_errors(), dependencies=guarded)
    def diarize(
        file: Annotated[UploadFile, File(description="one recording")],
        num_speakers: Annotated[
            int | None, Form(ge=1, le=20, description="the exact count")
        ] = None,
        min_speakers: Annotated[int | None, Form(ge=1, le=20, description="lower bound")] = None,
        max_speakers: Annotated[int | None, Form(ge=1, le=20, description="upper bound")] = None,
        names: Annotated[
            bool, Form(description="name turns after the store's speakers (when they match)")
        ] = True,
    ) -> DiarizeResponse:
        """Who spoke when: speaker turns (overlapping where two talk at once)."""
        with service.request() as request:
            up = request.save([file], "file")
            result = (service.naming_diarizer if names else service.diarizer)(
                up.paths[0],
                num_speakers=num_speakers,
                min_speakers=min_speakers,
                max_speakers=max_speakers,
            )
        return DiarizeResponse(**{**result.to_dict(), "source": up.names[0]})

    @app.get("/health", response_model=Health)
    def health() -> Health:
        """Model, store size, limits and the model queue (no token needed)."""
        stats = service.worker.stats
        with service.store_lock:
            n_speakers = len(service.refreshed_store())
        return Health(
            status="ok",
            version=__version__,
            model=service.model_name,
            embed_dim=service.embedder.embed_dim,
            sample_rate=service.embedder.sample_rate,
            speakers=n_speakers,
            auth=settings.token is not None,
            limits=settings.limits(),
            queue={
                "pending": service.worker.pending,
                "jobs": stats.jobs,
                "waveforms": stats.waveforms,
                "batches": stats.batches,
                "refused": stats.refused,
                "timed_out": stats.timed_out,
            },
        )

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _metadata(text: str | None) -> dict[str, Any]:
    """The ``metadata`` field: a JSON object, or nothing."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as err:
        raise HTTPException(422, f"metadata must be a JSON object: {err}") from None
    if not isinstance(value, dict):
        raise HTTPException(422, f"metadata must be a JSON object, got {type(value).__name__}")
    return value


def _hide_store(text: str, store: Path) -> str:
    return text.replace(f"store {store}", "store").replace(str(store), "the store")


@contextmanager
def _store_errors(store: Path) -> Iterator[None]:
    """A store's KeyError (unknown speaker) as 404 and its StoreError (bad name) as 422."""
    try:
        yield
    except KeyError as err:
        raise HTTPException(404, _hide_store(str(err.args[0]), store)) from None
    except StoreError as err:
        raise HTTPException(422, _hide_store(str(err), store)) from None
