"""The real server (``python -m voxvec serve`` in a subprocess) on a loopback port; real speech."""

from __future__ import annotations

import csv
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'voxvec[serve]'")
httpx = pytest.importorskip("httpx", reason="the service tests call the server with httpx")

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN_ENV = "VOXVEC_SERVE_TOKEN"


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running ``voxvec serve``: its base URL, store folder and the token it wants."""

    url: str
    store: Path
    token: str | None
    process: subprocess.Popen[bytes]

    def client(self, token: str | None = "") -> httpx.Client:
        """A client; ``token=""`` sends the server's own token, None sends none."""
        use = self.token if token == "" else token
        headers = {} if use is None else {"Authorization": f"Bearer {use}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    @staticmethod
    def files(field: str, *paths: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
        """Multipart entries of ``paths`` under form field ``field``."""
        return [(field, (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


@contextmanager
def run_server(
    store: Path,
    *options: str,
    log: Path,
    env: dict[str, str] | None = None,
    max_file_bytes: int | None = None,
) -> Iterator[Server]:
    """Start ``voxvec serve`` on a free loopback port; stop it (SIGINT) afterwards.

    ``env`` is added to the server's environment; ``max_file_bytes`` sets its file-size limit
    (RLIMIT_FSIZE): writes past it fail as on a full disk."""
    port = free_port()
    token = options[options.index("--token") + 1] if "--token" in options else None
    argv = [sys.executable, "-m", "voxvec", "serve", "--store", str(store), "--port", str(port),
            "--device", "cpu", *options]  # fmt: skip
    with log.open("wb") as out:
        limit = (max_file_bytes, max_file_bytes)
        inherited = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # only as given
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**inherited, **(env or {})},
            preexec_fn=None
            if max_file_bytes is None
            else lambda: resource.setrlimit(resource.RLIMIT_FSIZE, limit),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"voxvec serve exited {process.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"voxvec serve did not start: {log.read_text()}")
            time.sleep(0.3)
        yield Server(url, store, token, process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def start_server() -> object:
    """:func:`run_server`, for tests that need a server of their own."""
    return run_server


@pytest.fixture(scope="session")
def speech(shared_data: Path) -> dict[str, list[Path]]:
    """Real recordings by speaker: speechocean762 speakers so-0001 and so-0005."""
    root = shared_data / "speechocean762"
    with (root / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    by_speaker: dict[str, list[Path]] = {}
    for row in rows:
        by_speaker.setdefault(row["speaker"], []).append(root / row["path"])
    return {"alice": by_speaker["so-0001"], "bob": by_speaker["so-0005"]}


@pytest.fixture(scope="session")
def conversation(speech: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 23.5 s WAV: alice, alice, bob x3, alice, alice (0.25 s gaps); bob from 6.3 to 17.6 s."""
    from voxvec.audio import load

    a = [load(p, 16000) for p in speech["alice"][5:9]]
    b = [load(p, 16000) for p in speech["bob"][:4]]
    gap = np.zeros(4000, np.float32)
    parts = [a[0], gap, a[1], gap, b[0], gap, b[1], gap, b[2], gap, a[2], gap, a[3]]
    path = tmp_path_factory.mktemp("audio") / "conversation.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path


@pytest.fixture(scope="session")
def server(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server: a token, float32, 2 MiB uploads, 30 s audio, 4 files per field."""
    folder = tmp_path_factory.mktemp("served")
    with run_server(
        folder / "store",
        "--token", "test-token-Zq9", "--precision", "float32", "--max-upload-mb", "2",
        "--max-audio-s", "30", "--max-files", "4",
        log=folder / "server.log",
    ) as running:  # fmt: skip
        yield running
