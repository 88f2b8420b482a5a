"""Serve the model over HTTP: embed, verify, identify, enroll, diarize, and a web page at /.

The model loads once and is shared; the forward passes of concurrent requests are grouped into
shared batches by one worker thread (a bounded queue: when --max-pending requests are already
waiting, more get 503). The speaker store is --store (created on first use; without --model, a
store's own model is used); requests cannot reach any other folder. Uploads are limited by
--max-upload-mb per request (413), --max-audio-s per file (413) and --max-files per field
(422); a request that takes over --request-timeout-s to arrive gets 408, one still waiting for
the model then gets 503. With --token (or $VOXVEC_SERVE_TOKEN), every endpoint but /, /health
and /openapi.json needs 'Authorization: Bearer TOKEN' (401 before the body is read).

Endpoints: POST /embed, /verify, /identify, /enroll, /diarize; GET /speakers, /speakers/NAME;
DELETE /speakers/NAME; GET /health; the schema at /openapi.json. Needs the serve extra:
pip install 'voxvec[serve]'.

examples:
  voxvec serve --store speakers/
  voxvec serve --model campplus-zh-en --host 0.0.0.0 --port 8080 --store /srv/speakers \\
      --token "$(cat token.txt)" --max-upload-mb 10 --max-audio-s 120
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os

from voxvec.cli.enroll import add_store_argument, store_and_embedder
from voxvec.cli.model_options import add_model_arguments

HELP = "HTTP service with a web page: embed, verify, identify, enroll, diarize"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voxvec serve``."""
    from voxvec.serve.settings import TOKEN_ENV, ServeSettings

    defaults = ServeSettings()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    add_store_argument(parser)
    parser.add_argument(
        "--token",
        default=None,
        help=f"bearer token every API call must carry (default: ${TOKEN_ENV}; none: open)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=defaults.max_upload_mb,
        help=f"largest request body in MiB ({defaults.max_upload_mb:g})",
    )
    parser.add_argument(
        "--max-audio-s",
        type=float,
        default=defaults.max_audio_s,
        help=f"longest audio file in seconds ({defaults.max_audio_s:g})",
    )
    parser.add_argument(
        "--max-files",
        type=int,
        default=defaults.max_files,
        help=f"files per form field of a request ({defaults.max_files})",
    )
    parser.add_argument(
        "--request-timeout-s",
        type=float,
        default=defaults.request_timeout_s,
        help=f"seconds a request may take to arrive and to wait for the model "
        f"({defaults.request_timeout_s:g})",
    )
    parser.add_argument(
        "--max-pending",
        type=int,
        default=defaults.max_pending,
        help=f"requests that may wait for the model; more get 503 ({defaults.max_pending})",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=defaults.max_batch,
        help=f"waveforms per shared forward pass ({defaults.max_batch})",
    )
    parser.add_argument(
        "--segmentation",
        default=None,
        metavar="CHECKPOINT",
        help="pyannote segmentation-3.0 checkpoint for /diarize (default: "
        "$VOXVEC_SEGMENTATION when set, else VAD)",
    )
    add_model_arguments(parser)


def _require_serve_extra() -> None:
    """Fail fast, before the model loads, when FastAPI, uvicorn or python-multipart is missing."""
    missing = [
        name
        for name in ("fastapi", "uvicorn", "multipart")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ImportError(f"voxvec serve needs {', '.join(missing)}: pip install 'voxvec[serve]'")


def run(args: argparse.Namespace) -> int:
    """Load the model and the store, then serve until interrupted."""
    _require_serve_extra()
    import uvicorn

    from voxvec.apps.diarize import Diarizer, VadActivity
    from voxvec.apps.segmentation import (
        SegmentationActivity,
        default_segmentation_path,
        load_segmentation,
    )
    from voxvec.serve.app import Service, create_app
    from voxvec.serve.settings import TOKEN_ENV, ServeSettings

    settings = ServeSettings(
        max_upload_mb=args.max_upload_mb,
        max_audio_s=args.max_audio_s,
        max_files=args.max_files,
        request_timeout_s=args.request_timeout_s,
        max_pending=args.max_pending,
        max_batch=args.max_batch,
        token=args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None,
    )
    store, embedder = store_and_embedder(args, create=True)
    segmentation = args.segmentation or default_segmentation_path()
    activity = (
        SegmentationActivity(load_segmentation(segmentation))
        if segmentation is not None
        else VadActivity("auto")
    )
    service = Service(embedder, store, settings, Diarizer(embedder, activity=activity))
    logger.info(
        "serving %s with store %s (%d speakers) on http://%s:%d/%s",
        service.model_name,
        store.path,
        len(store),
        args.host,
        args.port,
        " (token required)" if settings.token else "",
    )
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="info")
    return 0
