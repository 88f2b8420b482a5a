"""``voxvec serve``: its start-up checks, the token from the environment, the time limit."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxvec.apps.identity import ModelIdentity
from voxvec.apps.store import SpeakerStore
from voxvec.cli import main
from voxvec.serve.settings import TOKEN_ENV, ServeSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_help_imports_neither_torch_nor_fastapi() -> None:
    probe = (
        "import sys\nfrom voxvec.cli import main\ntry:\n    main(['serve', '--help'])\n"
        "except SystemExit:\n    pass\n"
        "print('imported', [m for m in ('torch', 'fastapi', 'uvicorn') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "usage: voxvec serve" in result.stdout and "--max-upload-mb" in result.stdout
    assert result.stdout.rstrip().endswith("imported []")


def test_without_the_serve_extra_it_fails_fast_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    assert main(["serve", "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "voxvec serve: error: voxvec serve needs fastapi: pip install 'voxvec[serve]'"
    assert not (tmp_path / "store").exists()  # refused before the model or the store


def test_a_store_of_another_model_is_refused_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    SpeakerStore.create(tmp_path / "store", ModelIdentity("other", "ab" * 32, 256, 16000))
    args = ["serve", "--store", str(tmp_path / "store"), "--model", "voxvec-default",
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "voxvec serve: error: speaker store" in err and "was made with model 'other'" in err


def test_settings_refuse_bad_limits() -> None:
    assert ServeSettings().max_upload_bytes == 25 * 2**20
    for bad in ({"max_upload_mb": 0}, {"max_audio_s": float("inf")}, {"max_files": 0},
                {"max_batch": 1.5}, {"token": " "}):  # fmt: skip
        with pytest.raises(ValueError):
            ServeSettings(**bad)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def strict_server(shared_data: Path, start_server, tmp_path_factory) -> Iterator[object]:
    """A server with its token from the environment, a 1 s time limit and an empty store."""
    folder = tmp_path_factory.mktemp("strict")
    with start_server(
        folder / "store",
        "--request-timeout-s",
        "1",
        log=folder / "server.log",
        env={TOKEN_ENV: "from-the-environment"},
    ) as running:
        yield running


def test_the_token_can_come_from_the_environment(strict_server) -> None:
    with strict_server.client(token=None) as client:
        assert client.get("/health").json()["auth"] is True
        assert client.get("/speakers").status_code == 401
    with strict_server.client(token="from-the-environment") as client:
        assert client.get("/speakers").json()["speakers"] == []


def test_identify_with_an_empty_store_is_409(strict_server, speech) -> None:
    with strict_server.client(token="from-the-environment") as client:
        response = client.post("/identify", files=strict_server.files("files", speech["bob"][0]))
    assert response.status_code == 409
    assert response.json()["detail"] == "the speaker store is empty: enroll speakers first"


def test_an_upload_slower_than_the_time_limit_is_408(strict_server) -> None:
    def slowly() -> Iterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.wav"\r\n\r\n'
        time.sleep(2.5)
        yield b"RIFF"

    with strict_server.client(token="from-the-environment") as client:
        started = time.monotonic()
        kind = {"content-type": "multipart/form-data; boundary=x"}
        response = client.post("/embed", content=slowly(), headers=kind)
    assert response.status_code == 408
    assert response.json()["detail"] == (
        "the request took over 1 s to arrive (--request-timeout-s); send it faster or smaller"
    )
    assert time.monotonic() - started < 10


def test_a_full_disk_is_503_not_the_clients_fault(
    shared_data: Path, start_server, speech, tmp_path: Path
) -> None:
    from voxvec.audio import load

    wav = np.concatenate([load(p, 16000) for p in speech["alice"][:4]])
    upload = tmp_path / "alice.wav"
    sf.write(upload, wav, 16000)  # about 330 KB: held in memory by the form parser
    with start_server(tmp_path / "store", log=tmp_path / "log", max_file_bytes=200_000) as running:
        with running.client() as client:
            response = client.post("/embed", files=running.files("files", upload))
            assert response.status_code == 503
            assert response.json()["detail"] == (
                "the server cannot store the upload now (File too large); retry later"
            )
            small = client.post("/embed", files=running.files("files", speech["alice"][0]))
            assert small.status_code == 200  # and it carries on
