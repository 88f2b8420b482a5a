"""What a ``voxvec serve`` instance allows: its limits and its optional bearer token."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

TOKEN_ENV = "VOXVEC_SERVE_TOKEN"
"""The environment variable ``voxvec serve`` reads the token from when ``--token`` is not given."""


@dataclass(frozen=True)
class ServeSettings:
    """Limits and authentication of the HTTP service.

    Attributes:
        max_upload_mb: the largest request body, in MiB (all files of a request together);
            larger ones get 413 before they are read.
        max_audio_s: the longest audio file, in seconds (from its header); longer ones get 413.
        max_files: files per request (per side for ``/verify``); more get 422.
        request_timeout_s: seconds a request may take to arrive (else 408) and to wait for the
            model (else 503).
        max_pending: requests waiting for the model at most; more get 503 at once.
        max_batch: waveforms (or windows) per shared forward pass.
        token: the bearer token every API call must carry, or None (open).
    """

    max_upload_mb: float = 25.0
    max_audio_s: float = 600.0
    max_files: int = 16
    request_timeout_s: float = 60.0
    max_pending: int = 64
    max_batch: int = 32
    token: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_audio_s", "request_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("max_files", "max_pending", "max_batch"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.token is not None and not self.token.strip():
            raise ValueError("the token must not be empty (give none for an open server)")

    @property
    def max_upload_bytes(self) -> int:
        """:attr:`max_upload_mb` in bytes."""
        return int(self.max_upload_mb * 2**20)

    def limits(self) -> dict[str, Any]:
        """The limits as JSON (everything but the token), for ``/health``."""
        return {k: v for k, v in asdict(self).items() if k != "token"}
