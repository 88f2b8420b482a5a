"""The HTTP service end to end: the real server on a loopback port, real speech, real uploads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

import voxvec
from voxvec.apps.verify import verify
from voxvec.inference import Embedder
from voxvec.weights import ALIASES, DEFAULT_MODEL


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """The server's model in-process: the default model, float32, on the CPU."""
    return voxvec.load(device="cpu", precision="float32")


@pytest.fixture
def api(server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_health_needs_no_token_and_names_the_limits(server) -> None:
    with server.client(token=None) as client:
        health = client.get("/health").json()
    assert health["status"] == "ok" and health["auth"] is True
    assert health["model"] == ALIASES[DEFAULT_MODEL] and health["embed_dim"] == 256
    assert health["limits"]["max_upload_mb"] == 2 and health["limits"]["max_audio_s"] == 30
    assert "token" not in health["limits"]


@pytest.mark.parametrize("token", [None, "wrong", ""])
def test_every_api_call_needs_the_token(server, speech, token: str | None) -> None:
    with server.client(token=token if token != "" else "x" + server.token) as client:
        for method, path, kwargs in [
            ("GET", "/speakers", {}),
            ("DELETE", "/speakers/alice", {}),
            ("POST", "/embed", {"files": server.files("files", speech["alice"][0])}),
        ]:
            response = client.request(method, path, **kwargs)
            assert response.status_code == 401, (path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "bearer token" in response.json()["detail"]
        big = np.zeros(3 * 2**20, np.uint8).tobytes()  # refused before the body is read: 401
        response = client.post("/embed", files=[("files", ("big.wav", big, "audio/wav"))])
        assert response.status_code == 401


def test_embed_equals_the_in_process_embedder(api, server, speech, embedder) -> None:
    paths = [speech["alice"][0], speech["bob"][0]]
    response = api.post("/embed", files=server.files("files", *paths))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["embed_dim"] == 256 and [r["file"] for r in body["results"]] == [
        p.name for p in paths
    ]
    got = np.array([r["embedding"] for r in body["results"]], dtype=np.float32)
    np.testing.assert_allclose(got, embedder.embed(paths), atol=1e-5)
    assert all(r["duration_s"] == pytest.approx(sf.info(p).duration) for r, p in
               zip(body["results"], paths, strict=True))  # fmt: skip


def test_concurrent_requests_share_batches_and_keep_their_answers(
    api, server, speech, embedder
) -> None:
    paths = speech["alice"][:6] + speech["bob"][:6]
    before = api.get("/health").json()["queue"]
    answers: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(paths))

    def one(k: int) -> None:
        with server.client() as client:
            start.wait()
            response = client.post("/embed", files=server.files("files", paths[k]))
            assert response.status_code == 200, response.text
            answers[k] = np.array(response.json()["results"][0]["embedding"], np.float32)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == len(paths)
    got = np.stack([answers[k] for k in range(len(paths))])
    np.testing.assert_allclose(got, embedder.embed(paths), atol=1e-4)  # batching is exact
    after = api.get("/health").json()["queue"]
    jobs, batches = after["jobs"] - before["jobs"], after["batches"] - before["batches"]
    assert jobs == len(paths) and batches < jobs  # some requests shared a forward pass


def test_verify_matches_the_library(api, server, speech, embedder) -> None:
    a, same, other = speech["alice"][:2], speech["alice"][2], speech["bob"][0]
    results = {}
    for name, b in (("same", same), ("other", other)):
        response = api.post("/verify", files=server.files("a", *a) + server.files("b", b))
        assert response.status_code == 200, response.text
        results[name] = body = response.json()
        expected = verify(embedder, a, [b])
        assert body["score"] == pytest.approx(expected.score, abs=1e-5)
        assert body["same"] is expected.same and body["threshold"] == expected.threshold
        assert body["a"] == [p.name for p in a] and body["b"] == [b.name] and body["n_a"] == 2
        assert "'eer'" in body["threshold_source"]
    assert results["same"]["score"] > results["other"]["score"]
    response = api.post(
        "/verify",
        files=server.files("a", same) + server.files("b", other),
        data={"threshold": "far1"},
    )
    assert response.status_code == 200 and "'far1'" in response.json()["threshold_source"]


def test_enroll_list_identify_remove_round_trip(api, server, speech) -> None:
    response = api.post(
        "/enroll",
        data={"name": "alice-rt", "metadata": '{"team": "red"}'},
        files=server.files("files", *speech["alice"][:3]),
    )
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 3
    bob = api.post(
        "/enroll", data={"name": "bob-rt"}, files=server.files("files", *speech["bob"][:3])
    )
    assert bob.status_code == 200
    listed = {s["name"]: s for s in api.get("/speakers").json()["speakers"]}
    assert listed["alice-rt"]["count"] == 3 and listed["alice-rt"]["metadata"] == {"team": "red"}
    assert listed["alice-rt"]["sources"] == [p.name for p in speech["alice"][:3]]
    assert api.get("/speakers/bob-rt").json()["count"] == 3

    queries = [speech["alice"][12], speech["bob"][12]]
    response = api.post("/identify", files=server.files("files", *queries), data={"top_k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "'far1'" in body["threshold_source"] and body["margin"] == 0.05
    top = [r["candidates"][0]["speaker"] for r in body["results"]]
    assert top == ["alice-rt", "bob-rt"]
    for r in body["results"]:
        assert len(r["candidates"]) == 2
        assert r["speaker"] in (None, r["candidates"][0]["speaker"])
        assert (r["speaker"] is not None) == (r["decision"] == "accepted")

    assert api.delete("/speakers/bob-rt").json()["removed"] == "bob-rt"
    missing = api.delete("/speakers/bob-rt")
    assert missing.status_code == 404
    assert "no speaker 'bob-rt'" in missing.json()["detail"]
    assert str(server.store) not in missing.json()["detail"]  # no server path in answers
    assert api.get("/speakers/bob-rt").status_code == 404
    assert api.delete("/speakers/alice-rt").status_code == 200


def test_diarize_finds_the_turns_and_names_enrolled_speakers(
    api, server, speech, conversation
) -> None:
    def speaker_at(body: dict, t: float) -> str:
        return next(
            s["speaker"] for s in body["exclusive_segments"] if s["start_s"] <= t <= s["end_s"]
        )

    upload = server.files("file", conversation)
    response = api.post("/diarize", files=upload, data={"num_speakers": 2, "names": "false"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "conversation.wav"
    assert body["duration_s"] == pytest.approx(23.5, abs=0.01)
    assert sorted(body["speakers"]) == ["SPEAKER_00", "SPEAKER_01"]
    assert speaker_at(body, 1.0) == speaker_at(body, 20.0) != speaker_at(body, 12.0)

    enrolled = api.post("/enroll", data={"name": "carol"},
                        files=server.files("files", *speech["alice"][5:9]))  # fmt: skip
    assert enrolled.status_code == 200, enrolled.text
    try:
        named = api.post("/diarize", files=upload, data={"num_speakers": 2}).json()
        assert speaker_at(named, 1.0) == speaker_at(named, 20.0) == "carol"
        assert speaker_at(named, 12.0).startswith("SPEAKER_")
    finally:
        api.delete("/speakers/carol")


# --------------------------------------------------------------------------- limits


def test_a_body_over_the_upload_limit_is_413(api, server) -> None:
    big = np.random.default_rng(0).bytes(3 * 2**20)
    response = api.post("/embed", files=[("files", ("big.wav", big, "audio/wav"))])
    assert response.status_code == 413
    assert "upload limit of 2 MiB" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield b'--x\r\nContent-Disposition: form-data; name="files"; filename="b.wav"\r\n\r\n'
        for _ in range(48):
            yield big[: 2**16]

    streamed = api.post(
        "/embed", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert streamed.status_code == 413 and "upload limit" in streamed.json()["detail"]
    assert api.get("/health").status_code == 200  # the server carries on


def test_audio_over_the_duration_limit_is_413(api, server, speech, tmp_path) -> None:
    from voxvec.audio import load

    wav = np.concatenate([load(p, 16000) for p in speech["alice"][:16]])[: 16000 * 40]
    long = tmp_path / "long.flac"
    sf.write(long, wav, 16000)
    assert long.stat().st_size < 2**21  # under the upload limit: the duration is what is refused
    response = api.post("/embed", files=server.files("files", long))
    assert response.status_code == 413
    assert response.json()["detail"] == (
        "'long.flac' is 40.0 s long; this server takes at most 30 s per file (--max-audio-s)"
    )


def streamed_flac(wav: np.ndarray, rate: int, path: Path) -> Path:
    """``wav`` as a FLAC whose header gives no length, as an encoder writing to a pipe leaves
    it: STREAMINFO's 36-bit total-sample count and its MD5 are 0 ("unknown"). (libsndfile
    itself cannot write one: on a pipe it appends the STREAMINFO it cannot seek back to.)"""
    sf.write(path, wav, rate)
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO is the first block
    data[21] &= 0xF0
    data[22:42] = bytes(20)
    path.write_bytes(bytes(data))
    with sf.SoundFile(path) as f:
        assert f.frames >= 2**62  # libsndfile: "unknown"
    return path


def test_a_streamed_flac_is_embedded_like_any_other(
    api, server, speech, embedder, tmp_path
) -> None:
    """A FLAC whose header gives no length (it used to be refused with a 422) is counted by
    decoding it: its duration, and its embedding, are those of the same audio in a plain FLAC."""
    from voxvec.audio import load

    wav = load(speech["alice"][0], 16000)
    path = streamed_flac(wav, 16000, tmp_path / "streamed.flac")
    response = api.post("/embed", files=server.files("files", path))
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["file"] == "streamed.flac"
    assert result["duration_s"] == pytest.approx(len(wav) / 16000)
    np.testing.assert_allclose(
        np.array(result["embedding"], np.float32), embedder.embed(wav, 16000)[0], atol=1e-5
    )


def test_a_streamed_flac_over_the_duration_limit_is_413(api, server, speech, tmp_path) -> None:
    from voxvec.audio import load

    wav = np.concatenate([load(p, 16000) for p in speech["alice"][:16]])[: 16000 * 40]
    path = streamed_flac(wav, 16000, tmp_path / "long-streamed.flac")
    assert path.stat().st_size < 2**21  # under the upload limit: the duration is what is refused
    response = api.post("/embed", files=server.files("files", path))
    assert response.status_code == 413
    assert response.json()["detail"] == (
        "'long-streamed.flac' is over 30 s long; this server takes at most 30 s per file "
        "(--max-audio-s)"
    )


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("notes.txt", b"these are not audio samples\n" * 50, "cannot decode 'notes.txt'"),
        ("song.m4a", b"\x00\x00\x00\x20ftypM4A " + bytes(600), ".m4a files are not supported"),
        ("empty.wav", b"", "cannot decode 'empty.wav'"),
    ],
)
def test_bytes_that_are_not_audio_are_422_naming_the_upload(
    api, name: str, content: bytes, expected: str
) -> None:
    response = api.post("/embed", files=[("files", (name, content, "audio/wav"))])
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert expected in detail and "/tmp" not in detail and "voxvec-serve-" not in detail


def test_too_little_speech_and_bad_options_are_422(api, server, speech, tmp_path) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, sf.read(speech["alice"][0])[0][:3200], 16000)
    response = api.post("/embed", files=server.files("files", short))
    assert response.status_code == 422 and "short.wav" in response.json()["detail"]
    assert "min_speech_s" in response.json()["detail"]

    too_many = api.post("/embed", files=server.files("files", *speech["alice"][:5]))
    assert too_many.status_code == 422
    assert too_many.json()["detail"] == "files: 5 files; at most 4 per request"

    one = server.files("a", speech["alice"][0]) + server.files("b", speech["bob"][0])
    for threshold, expected in (("nan", "finite number"), ("far7", "no decision threshold")):
        bad = api.post("/verify", files=one, data={"threshold": threshold})
        assert bad.status_code == 422 and expected in bad.json()["detail"]
    bad_k = api.post("/identify", files=server.files("files", speech["alice"][0]),
                     data={"top_k": 0})  # fmt: skip
    assert bad_k.status_code == 422
    meta = api.post("/enroll", files=server.files("files", speech["alice"][0]),
                    data={"name": "x", "metadata": "[1, 2]"})  # fmt: skip
    assert meta.status_code == 422 and "JSON object" in meta.json()["detail"]


def _tree(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_speaker_names_are_data_never_paths(api, server, speech) -> None:
    outside = server.store.parent
    before_outside = _tree(outside) - _tree(server.store)
    names = ["../../escape", "/etc/passwd", "..", "a/../../b"]
    for name in names:
        response = api.post("/enroll", data={"name": name},
                            files=server.files("files", speech["alice"][0]))  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json()["speaker"]["name"] == name
    assert _tree(outside) - _tree(server.store) == before_outside  # nothing written outside
    assert not (outside.parent / "escape").exists() and not (outside / "b").exists()
    listed = {s["name"] for s in api.get("/speakers").json()["speakers"]}
    assert set(names) <= listed
    for name in names:
        quoted = "".join(f"%{b:02X}" for b in name.encode())  # every byte escaped, dots too
        assert api.get(f"/speakers/{quoted}").json()["name"] == name
        assert api.delete(f"/speakers/{quoted}").status_code == 200
    bad = api.post(
        "/enroll", data={"name": "a\nb"}, files=server.files("files", speech["alice"][0])
    )
    assert bad.status_code == 422 and "control character" in bad.json()["detail"]
    assert api.get("/speakers/%00").status_code == 422
    assert api.get("/static/%2E%2E/%2E%2E/pyproject.toml").status_code == 404


def test_the_web_page_and_schema_are_served(server) -> None:
    with server.client(token=None) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<title>voxvec</title>" in page.text
        assert "http://" not in page.text and "https://" not in page.text  # no CDN
        script = client.get("/static/app.js")
        assert script.status_code == 200 and "MediaRecorder" in script.text
        schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {
        "/embed", "/verify", "/identify", "/enroll", "/speakers", "/speakers/{name}", "/diarize",
        "/health",
    }  # fmt: skip
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
