"""Tests for voxvec.embedding_files: input collection, embedding files, the batch job."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from voxvec.audio.io import AudioError
from voxvec.data.manifest import ManifestItem, write_manifest
from voxvec.embedding_files import (
    OUTPUT_FORMATS,
    EmbeddingInputs,
    FailedInput,
    check_output,
    collect_inputs,
    embed_many,
    embed_to_file,
    read_embeddings,
    write_embeddings,
)


class TableEmbedder:
    """A stand-in model: a file's embedding is looked up by its name; other files fail."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def iter_embed(self, paths: Sequence[Path], batch_size: int = 16) -> Iterator[SimpleNamespace]:
        self.calls.append([str(p) for p in paths])
        for path in paths:
            if Path(path).name in self.table:
                yield SimpleNamespace(embedding=self.table[Path(path).name], error=None)
            else:
                yield SimpleNamespace(embedding=None, error=AudioError(f"cannot decode '{path}'"))


def vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# --------------------------------------------------------------------------- inputs


def test_collect_files_folders_and_manifests_in_order(tmp_path: Path) -> None:
    single = touch(tmp_path / "single.wav")
    folder = tmp_path / "rec"
    found = [touch(folder / "b" / "x.flac"), touch(folder / "a.WAV")]
    touch(folder / "notes.txt")
    manifest = tmp_path / "m.csv"
    write_manifest(
        [ManifestItem(tmp_path / "s1.wav", "ann"), ManifestItem(single, "bob")], manifest
    )

    inputs = collect_inputs([str(single), folder, manifest])

    assert inputs.paths == [single, found[1], found[0], tmp_path / "s1.wav", single]
    assert inputs.speakers == ["", "", "", "ann", "bob"]
    assert inputs.manifests == [manifest]
    assert collect_inputs([folder]).speakers is None  # no manifest, no speakers


def test_collect_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    touch(tmp_path / "empty" / "readme.txt")
    with pytest.raises(ValueError, match="no audio files .* found in .*empty"):
        collect_inputs([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        collect_inputs([tmp_path / "nope.csv"])
    with pytest.raises(ValueError, match="no input given"):
        collect_inputs([])
    missing_audio = collect_inputs([tmp_path / "later.wav"])  # fails when embedded, not here
    assert missing_audio.paths == [tmp_path / "later.wav"]


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", OUTPUT_FORMATS)
@pytest.mark.parametrize("speakers", [None, ["ann", "bob", "ann"]])
def test_write_read_roundtrip(tmp_path: Path, suffix: str, speakers: list[str] | None) -> None:
    matrix = vectors(3)
    ids = ["a/1.wav", "b, with comma.wav", "c.flac"]
    out = write_embeddings(tmp_path / "deep" / f"emb{suffix}", matrix, ids, speakers)
    assert out == tmp_path / "deep" / f"emb{suffix}"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left

    table = read_embeddings(out)

    np.testing.assert_array_equal(table.embeddings, matrix)  # exact, also through CSV text
    assert table.embeddings.dtype == np.float32
    if suffix == ".npy":
        assert table.ids is None and table.speakers is None
    else:
        assert table.ids == ids and table.speakers == speakers


def test_csv_layout(tmp_path: Path) -> None:
    out = write_embeddings(tmp_path / "e.csv", vectors(2, dim=3), ["x", "y"], ["s1", "s2"])
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "speaker", "e0", "e1", "e2"]
    assert [row[:2] for row in rows[1:]] == [["x", "s1"], ["y", "s2"]]


def test_write_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"emb\.txt.*\.npy"):
        write_embeddings(tmp_path / "emb.txt", vectors(2), ["a", "b"])
    with pytest.raises(ValueError, match="1 ids for 2 embeddings"):
        write_embeddings(tmp_path / "emb.npz", vectors(2), ["a"])
    with pytest.raises(ValueError, match="3 speakers for 2 embeddings"):
        write_embeddings(tmp_path / "emb.csv", vectors(2), ["a", "b"], ["s", "s", "s"])
    with pytest.raises(ValueError, match=r"\(N, D\) matrix"):
        write_embeddings(tmp_path / "emb.npy", vectors(1)[0], ["a"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_interrupted_write_keeps_the_old_file(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = write_embeddings(tmp_path / f"emb{suffix}", vectors(2), ["a", "b"])
    before = out.read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "save" if suffix == ".npy" else "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        write_embeddings(out, vectors(5, seed=1), list("abcde"))
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gone.npz"):
        read_embeddings(tmp_path / "gone.npz")
    with pytest.raises(ValueError, match=r"\.npy"):
        read_embeddings(tmp_path / "emb.json")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match=r"'embeddings' and 'ids'.*weights"):
        read_embeddings(tmp_path / "other.npz")
    np.save(tmp_path / "flat.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"flat.npy.*\(N, D\).*\(3,\)"):
        read_embeddings(tmp_path / "flat.npy")
    (tmp_path / "m.csv").write_text("path,speaker\na.wav,s\n")
    with pytest.raises(ValueError, match="is not 'id"):
        read_embeddings(tmp_path / "m.csv")
    (tmp_path / "short.csv").write_text("id,e0,e1\na,0.1,0.2\nb,0.3\n")
    with pytest.raises(ValueError, match="short.csv, line 3: 2 fields"):
        read_embeddings(tmp_path / "short.csv")
    (tmp_path / "text.csv").write_text("id,e0\na,zero\n")
    with pytest.raises(ValueError, match="not a number"):
        read_embeddings(tmp_path / "text.csv")


# --------------------------------------------------------------------------- batch job


def test_embed_many_skips_and_reports_failures(caplog: pytest.LogCaptureFixture) -> None:
    table = {"a.wav": vectors(1)[0], "c.wav": vectors(1, seed=1)[0]}
    paths = [Path("a.wav"), Path("bad.wav"), Path("c.wav"), Path("worse.wav")]
    seen: list[FailedInput] = []

    done = embed_many(TableEmbedder(table), paths, batch_size=2, on_failure=seen.append)

    assert done.indices == [0, 2]
    np.testing.assert_array_equal(np.stack(done.embeddings), np.stack(list(table.values())))
    assert [(f.index, f.source) for f in done.failures] == [(1, "bad.wav"), (3, "worse.wav")]
    assert seen == done.failures
    assert done.failures[0].reason == "cannot decode 'bad.wav'"
    assert done.failures[0].message == "cannot decode 'bad.wav'"  # names the file already
    assert FailedInput(0, "x.wav", "too short").message == "x.wav: too short"

    with caplog.at_level(logging.WARNING, logger="voxvec.embedding_files"):
        embed_many(TableEmbedder(table), paths)
    assert [r.getMessage() for r in caplog.records] == [
        "cannot decode 'bad.wav' (skipped)",
        "cannot decode 'worse.wav' (skipped)",
    ]
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        embed_many(TableEmbedder(table), paths, batch_size=0)


def test_embed_to_file_writes_what_succeeded(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    names = ["a.wav", "bad.wav", "c.wav"]
    write_manifest([ManifestItem(tmp_path / n, f"spk-{n[0]}") for n in names], manifest)
    table = {"a.wav": vectors(1)[0], "c.wav": vectors(1, seed=1)[0]}

    report = embed_to_file(TableEmbedder(table), collect_inputs([manifest]), tmp_path / "e.npz")

    assert report.out == tmp_path / "e.npz" and report.n_embedded == 2
    assert [f.source for f in report.failures] == [str(tmp_path / "bad.wav")]
    written = read_embeddings(report.out)
    assert written.ids == [str(tmp_path / "a.wav"), str(tmp_path / "c.wav")]
    assert written.speakers == ["spk-a", "spk-c"]
    np.testing.assert_array_equal(written.embeddings, np.stack(list(table.values())))


def test_embed_to_file_writes_nothing_when_everything_failed(tmp_path: Path) -> None:
    inputs = EmbeddingInputs([tmp_path / "x.wav"], None, [])
    report = embed_to_file(TableEmbedder({}), inputs, tmp_path / "e.npy")
    assert report.out is None and report.n_embedded == 0 and len(report.failures) == 1
    assert not (tmp_path / "e.npy").exists()


def test_output_that_is_an_input_is_refused_before_embedding(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    write_manifest([ManifestItem(tmp_path / "a.wav", "s")], manifest)
    original = manifest.read_bytes()
    embedder = TableEmbedder({"a.wav": vectors(1)[0]})
    inputs = collect_inputs([manifest])

    for spelling in (manifest, tmp_path / "sub" / ".." / "m.csv"):
        with pytest.raises(ValueError, match="is also an input"):
            embed_to_file(embedder, inputs, spelling)
    assert embedder.calls == [] and manifest.read_bytes() == original
    with pytest.raises(ValueError, match="is also an input"):
        check_output(tmp_path / "x.npy", EmbeddingInputs([tmp_path / "x.npy"], None, []))
    with pytest.raises(ValueError, match=r"end in one of \('.npy', '.npz', '.csv'\)"):
        check_output(tmp_path / "e.h5", inputs)
    assert check_output(tmp_path / "E.NPZ", inputs) == tmp_path / "E.NPZ"
