"""Tests for voxvec.embedding_files: input collection, embedding files, the batch job."""

from __future__ import annotations

import csv
import errno
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxvec.audio.io import AudioError
from voxvec.data.manifest import ManifestItem, write_manifest
from voxvec.embedding_files import (
    OUTPUT_FORMATS,
    EmbeddingInputs,
    EmbedJobReport,
    FailedInput,
    JobPartsError,
    OutputLockedError,
    check_output,
    collect_inputs,
    embed_many,
    embed_part,
    embed_sharded,
    embed_to_file,
    merge_parts,
    output_lock,
    part_files,
    parts_folder,
    read_embeddings,
    shard_indices,
    side_files,
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
    (tmp_path / "header-only.csv").write_text("path,speaker\n")
    with pytest.raises(ValueError, match="no audio files .* found in .*header-only.csv"):
        collect_inputs([tmp_path / "header-only.csv"])
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        collect_inputs([tmp_path / "nope.csv"])
    with pytest.raises(ValueError, match="no input given"):
        collect_inputs([])
    missing_audio = collect_inputs([tmp_path / "later.wav"])  # fails when embedded, not here
    assert missing_audio.paths == [tmp_path / "later.wav"]


def test_an_empty_folder_among_the_inputs_is_skipped_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    audio = touch(tmp_path / "full" / "a.wav")
    with caplog.at_level(logging.WARNING, logger="voxvec.embedding_files"):
        inputs = collect_inputs([tmp_path / "empty", tmp_path / "full"])
    assert inputs.paths == [audio] and inputs.empty_folders == [tmp_path / "empty"]
    assert any("empty: skipped" in r.getMessage() for r in caplog.records)


def test_linked_folders_are_followed_once_and_broken_links_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = touch(tmp_path / "elsewhere" / "x.wav").parent
    root = tmp_path / "root"
    inside = touch(root / "sub" / "y.flac")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # a cycle
    (root / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    (root / "gone-notes").symlink_to(tmp_path / "deleted")
    with caplog.at_level(logging.WARNING, logger="voxvec.embedding_files"):
        inputs = collect_inputs([root])
    assert inputs.paths == [root / "gone.wav", root / "linked" / "x.wav", inside]
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "symbolic link loop" in messages and str(root / "sub" / "loop") in messages
    assert f"gone.wav: broken symbolic link (to {tmp_path / 'deleted.wav'})" in messages
    assert "gone-notes: broken symbolic link" in messages and "skipped" in messages
    # the broken link fails when embedded, so it is in the failure report with its reason
    report = embed_to_file(TableEmbedder({"x.wav": vectors(1)[0]}), inputs, tmp_path / "e.npy")
    assert [f.source for f in report.failures] == [str(root / "gone.wav"), str(inside)]


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


# --------------------------------------------------------------------------- resumable job


class CrashingEmbedder(TableEmbedder):
    """A :class:`TableEmbedder` 'killed' (KeyboardInterrupt) at its ``crash_at``-th input."""

    def __init__(self, table: dict[str, np.ndarray], crash_at: int) -> None:
        super().__init__(table)
        self.crash_at = crash_at
        self.n_seen = 0

    def iter_embed(self, paths: Sequence[Path], batch_size: int = 16) -> Iterator[SimpleNamespace]:
        for result in super().iter_embed(paths, batch_size):
            self.n_seen += 1
            if self.n_seen == self.crash_at:
                raise KeyboardInterrupt
            yield result


def _job(tmp_path: Path, n: int = 10) -> tuple[EmbeddingInputs, dict[str, np.ndarray]]:
    names = [f"f{i}.wav" for i in range(n)]
    table = {name: vector for name, vector in zip(names, vectors(n), strict=True)}
    del table["f3.wav"], table["f8.wav"]  # two inputs fail
    paths = [tmp_path / name for name in names]
    return EmbeddingInputs(paths, [f"s{i % 3}" for i in range(n)], [tmp_path / "m.csv"]), table


@pytest.mark.parametrize("suffix", OUTPUT_FORMATS)
def test_a_killed_job_resumes_to_the_same_output(tmp_path: Path, suffix: str) -> None:
    inputs, table = _job(tmp_path)
    straight = embed_to_file(TableEmbedder(table), inputs, tmp_path / f"a{suffix}", chunk_size=3)
    out = write_embeddings(tmp_path / f"b{suffix}", vectors(1, seed=9), ["old"], ["x"])
    before = out.read_bytes()
    journal, lock, report = side_files(out)

    with pytest.raises(KeyboardInterrupt):
        embed_to_file(CrashingEmbedder(table, crash_at=8), inputs, out, chunk_size=3)
    # chunks 0-2 and 3-5 are in the journal; the old output is untouched; the lock is released
    assert len(journal.read_bytes().splitlines()) == 3 and out.read_bytes() == before
    assert not lock.exists() and not report.exists()

    resumer = TableEmbedder(table)
    seen: list[FailedInput] = []
    resumed = embed_to_file(resumer, inputs, out, chunk_size=3, resume=True, on_failure=seen.append)
    assert resumer.calls == [[str(p) for p in inputs.paths[6:9]], [str(inputs.paths[9])]]
    assert resumed.n_resumed == 6 and resumed.n_embedded == straight.n_embedded == 8
    assert resumed.failures == straight.failures == seen
    assert [f.index for f in seen] == [3, 8]
    a, b = read_embeddings(tmp_path / f"a{suffix}"), read_embeddings(out)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert (a.ids, a.speakers) == (b.ids, b.speakers)
    if suffix != ".npz":  # zip members carry a time stamp
        assert (tmp_path / f"a{suffix}").read_bytes() == out.read_bytes()
    assert not journal.exists() and not lock.exists()
    with report.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["index", "path", "reason"],
        ["3", str(inputs.paths[3]), f"cannot decode '{inputs.paths[3]}'"],
        ["8", str(inputs.paths[8]), f"cannot decode '{inputs.paths[8]}'"],
    ]


def test_a_torn_journal_line_is_redone_and_foreign_journals_refused(tmp_path: Path) -> None:
    inputs, table = _job(tmp_path)
    out = tmp_path / "e.npy"
    journal = side_files(out)[0]
    with pytest.raises(KeyboardInterrupt):
        embed_to_file(CrashingEmbedder(table, crash_at=8), inputs, out, chunk_size=3)
    complete = journal.read_bytes()
    journal.write_bytes(complete[: len(complete) - 40])  # a kill while appending chunk 3-5

    resumer = TableEmbedder(table)
    embed_to_file(resumer, inputs, out, chunk_size=3, resume=True)
    assert resumer.calls[0] == [str(p) for p in inputs.paths[3:6]]
    np.testing.assert_array_equal(
        np.load(out), np.stack([table[p.name] for p in inputs.paths if p.name in table])
    )

    for other in ({"job": "model=other"}, {"chunk_size": 4}):
        with pytest.raises(KeyboardInterrupt):
            embed_to_file(CrashingEmbedder(table, crash_at=8), inputs, out, chunk_size=3)
        with pytest.raises(ValueError, match="other inputs or settings"):
            embed_to_file(
                TableEmbedder(table), inputs, out, resume=True, **{"chunk_size": 3, **other}
            )
    journal.write_bytes(b"garbage\n")
    with pytest.raises(ValueError, match="is damaged"):
        embed_to_file(TableEmbedder(table), inputs, out, chunk_size=3, resume=True)
    # without resume a journal is discarded and the job starts afresh
    fresh = TableEmbedder(table)
    assert embed_to_file(fresh, inputs, out, chunk_size=3).n_resumed == 0
    assert len(fresh.calls) == 4 and not journal.exists()


def test_a_second_job_on_the_same_output_is_refused(tmp_path: Path) -> None:
    inputs, table = _job(tmp_path)
    out = write_embeddings(tmp_path / "e.npz", vectors(1), ["old"])
    before = out.read_bytes()
    with output_lock(out) as lock:
        assert lock == side_files(out)[1] and lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(OutputLockedError, match=r"e.npz is being written by another job"):
            embed_to_file(TableEmbedder(table), inputs, out)
    assert out.read_bytes() == before and not lock.exists()
    assert embed_to_file(TableEmbedder(table), inputs, out).n_embedded == 8


def test_when_everything_fails_the_earlier_output_is_removed(tmp_path: Path) -> None:
    out = write_embeddings(tmp_path / "e.npz", vectors(1), [str(tmp_path / "x.wav")])
    report_file = side_files(out)[2]
    report = embed_to_file(TableEmbedder({}), EmbeddingInputs([tmp_path / "x.wav"], None, []), out)
    assert report.out is None and not out.exists()
    assert report.report == report_file and report_file.is_file()
    # a later job where nothing fails removes the stale failure report
    ok = embed_to_file(
        TableEmbedder({"x.wav": vectors(1)[0]}),
        EmbeddingInputs([tmp_path / "x.wav"], None, []),
        out,
    )
    assert ok.out == out and ok.report is None and not report_file.exists()


def test_a_full_disk_names_the_file_and_keeps_what_was_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, table = _job(tmp_path)
    out = tmp_path / "e.npy"
    real_fsync = os.fsync
    calls = [0]

    def fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(
        OSError, match=rf"cannot write {re.escape(str(out))}.partial: No space left"
    ):
        embed_to_file(TableEmbedder(table), inputs, out, chunk_size=3)
    monkeypatch.setattr(os, "fsync", real_fsync)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(OSError, match=rf"cannot write {re.escape(str(out))}: No space left"):
        embed_to_file(TableEmbedder(table), inputs, out, chunk_size=3, resume=True)
    assert not out.exists() and side_files(out)[0].exists()
    monkeypatch.undo()
    resumer = TableEmbedder(table)
    assert embed_to_file(resumer, inputs, out, chunk_size=3, resume=True).n_resumed == 10
    assert resumer.calls == [] and np.load(out).shape == (8, 8)


# --------------------------------------------------------------------------- properties

# File names as people have them: spaces, unicode, newlines, commas and quotes; anything a
# Linux file name may hold except a leading dot (hidden files are skipped by design).
NAME = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1,
    max_size=12,
).filter(lambda s: not s.startswith(".") and len(s.encode()) < 200)  # fmt: skip
AUDIO_NAMES = st.lists(
    st.tuples(NAME, st.sampled_from([".wav", ".FLAC", ".ogg", ".mp3"])).map("".join),
    min_size=1,
    max_size=6,
    unique_by=str.casefold,
)
PROPERTY = settings(max_examples=40, deadline=None)


@PROPERTY
@given(names=AUDIO_NAMES, others=st.lists(NAME, max_size=3), suffix=st.sampled_from(OUTPUT_FORMATS))
def test_any_file_name_is_collected_embedded_and_written_back(names, others, suffix) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in put"
        files = [touch(root / "sub dir" / name) for name in names]
        for other in others:  # not audio: never collected
            touch(root / f"{other}.txt")
        inputs = collect_inputs([root])
        assert inputs.paths == sorted(files)
        failing = inputs.paths[0]
        table = {p.name: v for p, v in zip(inputs.paths[1:], vectors(len(names)), strict=False)}
        report = embed_to_file(TableEmbedder(table), inputs, Path(tmp) / f"e{suffix}")
        assert [f.source for f in report.failures] == [str(failing)]
        with open(side_files(Path(tmp) / f"e{suffix}")[2], newline="", encoding="utf-8") as f:
            assert [row[1] for row in csv.reader(f)][1:] == [str(failing)]
        if report.out is None:
            assert len(names) == 1
            return
        written = read_embeddings(report.out)
        if suffix != ".npy":
            assert written.ids == [str(p) for p in inputs.paths[1:]]
        np.testing.assert_array_equal(written.embeddings, np.stack(list(table.values())))


@PROPERTY
@given(
    tree=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=6),
    names=AUDIO_NAMES,
)
def test_symlink_loops_end_and_every_real_file_is_found_once(tree, names) -> None:
    # Four nested folders d0/d1/d2/d3, a file in each, and links from folder a to folder b:
    # links to an ancestor are loops, to a descendant or itself shortcuts.
    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(tmp, *[f"d{k}" for k in range(depth + 1)]) for depth in range(4)]
        folders[-1].mkdir(parents=True)
        real = [touch(folders[i % 4] / name) for i, name in enumerate(names)]
        for n, (a, b) in enumerate(tree):
            (folders[a] / f"link{n}").symlink_to(folders[b], target_is_directory=True)
        found = collect_inputs([folders[0]]).paths
        assert sorted(p.resolve() for p in found) == sorted(p.resolve() for p in real)


# --------------------------------------------------------------------------- sharded job


@settings(deadline=None)
@given(st.integers(0, 200), st.integers(1, 9), st.integers(1, 20))
def test_shards_are_whole_chunks_dealt_in_turn_and_cover_every_input_once(
    n: int, world_size: int, chunk_size: int
) -> None:
    shards = [shard_indices(n, rank, world_size, chunk_size) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(n))
    for rank, shard in enumerate(shards):
        assert shard == sorted(shard)
        assert all((i // chunk_size) % world_size == rank for i in shard)


def test_shard_arguments_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="rank 2 of 2"):
        shard_indices(10, 2, 2)
    with pytest.raises(ValueError, match="chunk_size"):
        shard_indices(10, 0, 2, 0)


@pytest.mark.parametrize("suffix", OUTPUT_FORMATS)
def test_merged_parts_are_the_single_process_output(tmp_path: Path, suffix: str) -> None:
    inputs, table = _job(tmp_path, n=11)
    single = embed_to_file(TableEmbedder(table), inputs, tmp_path / f"one{suffix}", chunk_size=2)
    out = tmp_path / f"three{suffix}"
    seen: list[FailedInput] = []
    for rank in range(3):
        embedder = TableEmbedder(table)
        part = embed_part(
            embedder, inputs, out, rank=rank, world_size=3, chunk_size=2, on_failure=seen.append
        )
        assert embedder.calls == [
            [str(inputs.paths[i]) for i in range(start, min(start + 2, 11))]
            for start in range(2 * rank, 11, 6)
        ]
        assert part.out == part_files(out, rank)[0]
    assert sorted(f.index for f in seen) == [3, 8]  # positions in the whole job

    merged = merge_parts(inputs, out, world_size=3, chunk_size=2)

    assert merged.n_embedded == single.n_embedded == 9
    assert merged.failures == single.failures and [f.index for f in merged.failures] == [3, 8]
    a, b = read_embeddings(tmp_path / f"one{suffix}"), read_embeddings(out)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert (a.ids, a.speakers) == (b.ids, b.speakers)
    if suffix != ".npz":  # zip members carry a time stamp
        assert (tmp_path / f"one{suffix}").read_bytes() == out.read_bytes()
    assert side_files(out)[2].read_bytes() == side_files(tmp_path / f"one{suffix}")[2].read_bytes()
    assert not parts_folder(out).exists()


def test_processes_beyond_the_chunks_write_empty_parts(tmp_path: Path) -> None:
    inputs, table = _job(tmp_path)
    out = tmp_path / "emb.npy"
    reports = [
        embed_part(TableEmbedder(table), inputs, out, rank=rank, world_size=7, chunk_size=2)
        for rank in range(7)
    ]
    assert [r.out is None for r in reports] == [False] * 5 + [True] * 2
    merged = merge_parts(inputs, out, world_size=7, chunk_size=2)
    single = embed_to_file(TableEmbedder(table), inputs, tmp_path / "one.npy", chunk_size=2)
    assert merged.n_embedded == 8 and out.read_bytes() == (tmp_path / "one.npy").read_bytes()
    assert merged.failures == single.failures


def test_a_missing_part_is_named_the_others_kept_and_resume_embeds_only_it(
    tmp_path: Path,
) -> None:
    inputs, table = _job(tmp_path)
    out = tmp_path / "emb.npz"
    for rank in (0, 2):
        embed_part(TableEmbedder(table), inputs, out, rank=rank, world_size=3, chunk_size=2)
    kept = {rank: part_files(out, rank)[0].read_bytes() for rank in (0, 2)}

    with pytest.raises(JobPartsError) as err:
        merge_parts(inputs, out, world_size=3, chunk_size=2, errors={1: "disk full"})
    assert "1 of 3 parts missing: rank 1 (rank-00001.npz): disk full" in str(err.value)
    assert "--resume" in str(err.value) and not out.exists()
    assert {rank: part_files(out, rank)[0].read_bytes() for rank in (0, 2)} == kept

    again = TableEmbedder(table)
    reports = [
        embed_part(again, inputs, out, rank=rank, world_size=3, chunk_size=2, resume=True)
        for rank in range(3)
    ]
    assert again.calls == [[str(inputs.paths[i]) for i in pair] for pair in ((2, 3), (8, 9))]
    assert [r.n_resumed for r in reports] == [4, 0, 2]  # rank 1's chunks only were embedded
    merge_parts(inputs, out, world_size=3, chunk_size=2)
    single = embed_to_file(TableEmbedder(table), inputs, tmp_path / "one.npz", chunk_size=2)
    a, b = read_embeddings(tmp_path / "one.npz"), read_embeddings(out)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert (a.ids, a.speakers) == (b.ids, b.speakers) and single.n_embedded == 8


def test_parts_of_another_job_are_refused(tmp_path: Path) -> None:
    inputs, table = _job(tmp_path)
    out = tmp_path / "emb.csv"
    for rank in range(2):
        embed_part(TableEmbedder(table), inputs, out, rank=rank, world_size=2, chunk_size=2)
    with pytest.raises(JobPartsError, match="other inputs, settings or number of processes"):
        merge_parts(inputs, out, world_size=2, chunk_size=2, job="model=other")
    with pytest.raises(ValueError, match="other inputs, settings or number of processes"):
        embed_part(TableEmbedder(table), inputs, out, rank=0, world_size=3, resume=True)
    part_files(out, 1)[1].write_text("{not json")
    with pytest.raises(JobPartsError, match=r"rank 1: .*rank-00001.json is damaged"):
        merge_parts(inputs, out, world_size=2, chunk_size=2)


class Group:
    """The processes of a job as threads: ``gather`` is an all-gather between them.

    ``before[k]`` runs in rank 1 as it enters its ``k``-th gather.
    """

    def __init__(self, world_size: int, before: dict[int, Callable[[], object]]) -> None:
        self.barrier = threading.Barrier(world_size)
        self.slots: list[object] = [None] * world_size
        self.before = before
        self.n_calls = 0

    def gather(self, rank: int, obj: object) -> list[object]:
        if rank == 1:
            self.n_calls += 1
            self.before.get(self.n_calls, lambda: None)()
        self.slots[rank] = obj
        self.barrier.wait(timeout=60)
        gathered = list(self.slots)
        self.barrier.wait(timeout=60)
        return gathered


def _run_sharded(
    inputs: EmbeddingInputs | list[EmbeddingInputs],
    out: Path,
    embedders: list[TableEmbedder],
    resume: bool = False,
    before: dict[int, Callable[[], object]] | None = None,
) -> list[object]:
    """``embed_sharded`` in one thread per rank (each with its ``inputs`` when a list): each
    rank's report, or the error it raised."""
    group = Group(len(embedders), before or {})
    outcomes: list[object] = [None] * len(embedders)
    seen = inputs if isinstance(inputs, list) else [inputs] * len(embedders)

    def rank_main(rank: int) -> None:
        try:
            outcomes[rank] = embed_sharded(
                embedders[rank], seen[rank], out, rank=rank, world_size=len(embedders),
                gather=lambda obj: group.gather(rank, obj), chunk_size=2, resume=resume,
            )  # fmt: skip
        except JobPartsError as err:
            outcomes[rank] = err

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(len(embedders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_a_failing_process_is_reported_by_rank_0_and_a_rerun_resumes(tmp_path: Path) -> None:
    inputs, table = _job(tmp_path, n=10)
    out = tmp_path / "emb.npy"
    with output_lock(part_files(out, 1)[0]):  # another job holds rank 1's part
        outcomes = _run_sharded(inputs, out, [TableEmbedder(table), TableEmbedder(table)])
    assert all(isinstance(o, JobPartsError) for o in outcomes)
    assert re.search(
        r"rank 1 \(rank-00001.npy\): .* is being written by another job", str(outcomes[0])
    )
    assert str(outcomes[1]) == f"rank 1: {out} not written (see rank 0)"
    assert not out.exists() and part_files(out, 0)[1].is_file()

    embedders = [TableEmbedder(table), TableEmbedder(table)]
    outcomes = _run_sharded(inputs, out, embedders, resume=True)
    assert embedders[0].calls == []  # rank 0's part was kept
    assert outcomes[0] == outcomes[1]
    report = outcomes[0]
    assert isinstance(report, EmbedJobReport) and report.out == out
    assert report.n_embedded == 8 and report.n_resumed == 6  # rank 0's inputs, kept
    assert [f.index for f in report.failures] == [3, 8]
    expected = np.stack([table[p.name] for p in inputs.paths if p.name in table])
    np.testing.assert_array_equal(read_embeddings(out).embeddings, expected)


def test_processes_that_see_other_inputs_are_refused_before_any_work(tmp_path: Path) -> None:
    inputs, table = _job(tmp_path)
    assert inputs.speakers is not None
    fewer = EmbeddingInputs(inputs.paths[:-1], inputs.speakers[:-1], inputs.manifests)
    embedders = [TableEmbedder(table), TableEmbedder(table)]
    outcomes = _run_sharded([inputs, fewer], tmp_path / "emb.npz", embedders)
    for outcome in outcomes:
        assert isinstance(outcome, JobPartsError)
        assert str(outcome).startswith(
            "the processes of ranks 1 see other inputs or settings than rank 0"
        )
    assert embedders[0].calls == embedders[1].calls == []


def test_a_part_written_where_rank_0_cannot_see_it_is_named_so(tmp_path: Path) -> None:
    inputs, table = _job(tmp_path)
    out = tmp_path / "emb.csv"
    hide = part_files(out, 1)[1].unlink  # as if rank 1 wrote it on its own machine's disk
    outcomes = _run_sharded(inputs, out, [TableEmbedder(table)] * 2, before={2: hide})
    assert isinstance(outcomes[0], JobPartsError)
    assert "rank 1 (rank-00001.csv): its process finished it, but rank 0 does not see it" in str(
        outcomes[0]
    )
