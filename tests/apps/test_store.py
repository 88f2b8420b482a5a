"""Tests of voxvec.apps.store: enrollment, open-set identification, persistence, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from voxvec.apps.identity import ModelIdentity, ModelMismatchError
from voxvec.apps.store import MANIFEST, SpeakerStore, StoreError, check_name

REPO = Path(__file__).resolve().parents[2]
ASSET = REPO / "tests" / "assets" / "speaker-store-v1"
MODEL = ModelIdentity("test-model", "ab" * 32, 8, 16000)
OTHER = ModelIdentity("other-model", "cd" * 32, 8, 16000)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def voices() -> np.ndarray:
    """Four orthogonal 'voices' in 8 dimensions."""
    return np.eye(8, dtype=np.float32)[:4]


def recordings(voice: np.ndarray, n: int, seed: int, noise: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return unit(voice + noise * rng.standard_normal((n, voice.size)))


def test_enroll_keeps_mean_exemplars_count_sources_and_metadata(
    tmp_path: Path, voices: np.ndarray
) -> None:
    store = SpeakerStore.create(tmp_path / "s", MODEL)
    first = recordings(voices[0], 2, 0)
    alice = store.enroll(
        "alice", first, model=MODEL, sources=["a1.wav", "a2.wav"], metadata={"team": "red"}
    )
    assert alice.count == 2 and alice.sources == ("a1.wav", "a2.wav")
    np.testing.assert_allclose(alice.mean, unit(first.mean(0)), atol=1e-6)
    # more audio for a known name updates it: exemplars appended, mean recomputed, metadata merged
    more = recordings(voices[0], 3, 1)
    alice = store.enroll("alice", more, model=MODEL, metadata={"age": 40})
    assert alice.count == 5 and alice.sources == ("a1.wav", "a2.wav", "", "", "")
    np.testing.assert_allclose(alice.exemplars, np.concatenate([first, more]), atol=1e-6)
    np.testing.assert_allclose(alice.mean, unit(np.concatenate([first, more]).mean(0)), atol=1e-6)
    assert alice.metadata == {"team": "red", "age": 40}
    assert alice.updated >= alice.enrolled
    # everything survives a reopen
    again = SpeakerStore.open(tmp_path / "s").get("alice")
    np.testing.assert_array_equal(again.exemplars, alice.exemplars)
    np.testing.assert_array_equal(again.mean, alice.mean)
    assert again.to_dict() == alice.to_dict()


def test_open_set_identification(tmp_path: Path, voices: np.ndarray) -> None:
    store = SpeakerStore.create(tmp_path / "s", MODEL)
    store.enroll_many(
        [(name, recordings(voices[i], 3, i), None, None) for i, name in enumerate("abc")],
        model=MODEL,
    )
    queries = np.stack(
        [
            recordings(voices[1], 1, 10)[0],  # b
            voices[3],  # a stranger: orthogonal to everyone
            unit(voices[0] + voices[2]),  # halfway between a and c: no margin
        ]
    )
    matches = store.identify(queries, model=MODEL, threshold=0.5, margin=0.1, top_k=3)
    assert [m.speaker for m in matches] == ["b", None, None]
    assert matches[0].decision == "accepted" and matches[0].candidates[0].speaker == "b"
    assert matches[1].decision.startswith("below threshold 0.5000")
    assert matches[2].score > 0.5 and "margin" in matches[2].decision
    assert {c.speaker for c in matches[2].candidates[:2]} == {"a", "c"}
    for m in matches:  # candidates: all three, best first, exact cosines
        assert len(m.candidates) == 3
        assert [c.score for c in m.candidates] == sorted(
            (c.score for c in m.candidates), reverse=True
        )
    expected = unit(queries) @ np.stack([store.get(n).mean for n in "abc"]).T
    got = {c.speaker: c.score for c in matches[0].candidates}
    np.testing.assert_allclose([got[n] for n in "abc"], expected[0], atol=1e-5)
    assert matches[0].to_dict()["candidates"][0] == {"speaker": "b", "score": matches[0].score}
    # top_k 1 reports one candidate but still applies the margin to the runner-up
    assert (
        len(
            store.identify(queries[2], model=MODEL, threshold=0.5, margin=0.1, top_k=1)[
                0
            ].candidates
        )
        == 1
    )
    assert store.identify(queries[2], model=MODEL, threshold=0.5, margin=0.0)[0].speaker in "ac"


def test_another_model_is_refused(tmp_path: Path, voices: np.ndarray) -> None:
    store = SpeakerStore.create(tmp_path / "s", MODEL)
    store.enroll("a", voices[0], model=MODEL)
    with pytest.raises(ModelMismatchError, match="made with model 'test-model'.*'other-model'"):
        store.enroll("b", voices[1], model=OTHER)
    with pytest.raises(ModelMismatchError, match="not comparable"):
        store.identify(voices[0], model=OTHER, threshold=0.5)
    assert store.names() == ["a"]
    with pytest.raises(StoreError, match=r"expected \(K, 8\)"):
        store.enroll("b", np.ones(4), model=MODEL)


def test_remove_and_rename(tmp_path: Path, voices: np.ndarray) -> None:
    store = SpeakerStore.create(tmp_path / "s", MODEL)
    for i, name in enumerate("abc"):
        store.enroll(name, recordings(voices[i], i + 1, i), model=MODEL)
    c_before = store.get("c")
    store.remove("b")
    store.rename("c", "carol")
    reopened = SpeakerStore.open(tmp_path / "s")
    assert reopened.names() == ["a", "carol"]
    carol = reopened.get("carol")
    np.testing.assert_array_equal(carol.exemplars, c_before.exemplars)
    np.testing.assert_array_equal(carol.mean, c_before.mean)
    match = reopened.identify(voices[2], model=MODEL, threshold=0.5)[0]
    assert match.speaker == "carol"
    with pytest.raises(KeyError, match="no speaker 'b'.*'a', 'carol'"):
        reopened.remove("b")
    with pytest.raises(StoreError, match="'a' is already enrolled"):
        reopened.rename("carol", "a")
    assert [s.count for s in reopened.speakers()] == [1, 3]


def test_names_are_data_never_paths(tmp_path: Path, voices: np.ndarray) -> None:
    root = tmp_path / "s"
    store = SpeakerStore.create(root, MODEL)
    before = {p.name for p in tmp_path.iterdir()}
    tricky = ["../evil", "/etc/passwd", "..", "a/b\\c", "C:\\x", "名前 ✓"]
    for i, name in enumerate(tricky):
        store.enroll(name, voices[i % 4], model=MODEL)
    assert SpeakerStore.open(root).names() == tricky
    assert {p.name for p in tmp_path.iterdir()} == before  # nothing written beside the store
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == sorted(
        [
            MANIFEST,
            "exemplars-5.npy",
            "exemplars-6.npy",
            "means-5.npy",
            "means-6.npy",
            "owners-5.npy",
            "owners-6.npy",
        ]
    )
    for bad, message in [
        ("a\0b", "control character"),
        ("", "empty"),
        ("  ", "empty"),
        ("x\ny", "control character"),
        ("x" * 201, "over 200"),
        (3, "text"),
    ]:
        with pytest.raises(StoreError, match=message):
            check_name(bad)
        with pytest.raises(StoreError, match=message):
            store.enroll(bad, voices[0], model=MODEL)  # type: ignore[arg-type]
    assert check_name("  bob ") == "bob"


def test_checksums_and_versions(tmp_path: Path, voices: np.ndarray) -> None:
    root = tmp_path / "s"
    SpeakerStore.create(root, MODEL).enroll("a", voices[0], model=MODEL)
    manifest = root / MANIFEST
    document = json.loads(manifest.read_text())

    array_file = root / document["arrays"]["means"]["file"]
    good = array_file.read_bytes()
    array_file.write_bytes(good[:-4] + b"\0\0\0\1")
    with pytest.raises(StoreError, match=f"{array_file.name}: checksum mismatch"):
        SpeakerStore.open(root)
    array_file.write_bytes(good)

    edited = dict(document, speakers=[{**document["speakers"][0], "name": "mallory"}])
    manifest.write_text(json.dumps(edited))
    with pytest.raises(StoreError, match="checksum mismatch: the file was changed"):
        SpeakerStore.open(root)

    manifest.write_text(json.dumps(dict(document, version=7)))
    with pytest.raises(StoreError, match="version 7 was written by a newer voxvec.*upgrade"):
        SpeakerStore.open(root)
    manifest.write_text(json.dumps(dict(document, format="something")))
    with pytest.raises(StoreError, match="not a voxvec speaker store"):
        SpeakerStore.open(root)
    manifest.write_text("{broken")
    with pytest.raises(StoreError, match="not a speaker store file"):
        SpeakerStore.open(root)
    with pytest.raises(FileNotFoundError, match="no speaker store in"):
        SpeakerStore.open(tmp_path / "nothing")
    with pytest.raises(StoreError, match="already holds a speaker store"):
        SpeakerStore.create(root, MODEL)


def test_a_store_of_format_version_1_still_opens() -> None:
    """The checked-in store was written by the first release of the format; it must keep
    opening (and answering) in every later voxvec."""
    store = SpeakerStore.open(ASSET)
    assert store.model == ModelIdentity("voxvec-default", "0" * 64, 8, 16000)
    assert store.names() == ["alice", "bob"]
    assert [s.count for s in store.speakers()] == [2, 1]
    assert store.get("alice").metadata == {"team": "red"}
    match = store.identify(np.eye(8)[1], model=store.model, threshold=0.5)[0]
    assert match.speaker == "bob" and match.score == pytest.approx(1.0)


def test_old_generations_are_removed(tmp_path: Path, voices: np.ndarray) -> None:
    store = SpeakerStore.create(tmp_path / "s", MODEL)
    for i in range(5):
        store.enroll(f"s{i}", voices[i % 4], model=MODEL)
    files = sorted(p.name for p in (tmp_path / "s").glob("means-*.npy"))
    assert files == ["means-4.npy", "means-5.npy"]  # this generation and the one before


def test_an_open_store_sees_changes_of_another_process(tmp_path: Path, voices: np.ndarray) -> None:
    first = SpeakerStore.create(tmp_path / "s", MODEL)
    second = SpeakerStore.open(tmp_path / "s")
    first.enroll("a", voices[0], model=MODEL)
    second.enroll("b", voices[1], model=MODEL)  # must not drop "a"
    first.enroll("a", voices[0], model=MODEL)
    assert SpeakerStore.open(tmp_path / "s").names() == ["a", "b"]
    assert SpeakerStore.open(tmp_path / "s").get("a").count == 2


WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from voxvec.apps.identity import ModelIdentity
    from voxvec.apps.store import SpeakerStore

    root, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    model = ModelIdentity("test-model", "ab" * 32, 8, 16000)
    store = SpeakerStore.open_or_create(root, model)
    rng = np.random.default_rng(worker)
    for i in range(n):
        store.enroll(f"w{worker}-{i}", rng.standard_normal(8), model=model)
        store.enroll("shared", rng.standard_normal(8), model=model, sources=[f"w{worker}-{i}"])
    """
)


def test_concurrent_processes_never_lose_an_enrollment(tmp_path: Path) -> None:
    root = tmp_path / "s"
    n_workers, n_each = 4, 12
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), str(w), str(n_each)],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(n_workers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    store = SpeakerStore.open(root)  # checksums verified
    expected = {f"w{w}-{i}" for w in range(n_workers) for i in range(n_each)} | {"shared"}
    assert set(store.names()) == expected
    shared = store.get("shared")
    assert shared.count == n_workers * n_each
    assert sorted(shared.sources) == sorted(
        f"w{w}-{i}" for w in range(n_workers) for i in range(n_each)
    )
    np.testing.assert_allclose(shared.mean, unit(shared.exemplars.mean(0)), atol=1e-6)
    assert len(store.get("w0-0").exemplars) == 1
