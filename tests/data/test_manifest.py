"""Tests for voxvec.data.manifest: reading, writing and speaker-disjoint splits."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from voxvec.data.manifest import (
    CsvWriter,
    ManifestItem,
    group_by_speaker,
    read_manifest,
    split_by_speaker,
    write_manifest,
)


def _items(n_speakers: int, n_files: int, folder: Path) -> list[ManifestItem]:
    return [
        ManifestItem(folder / f"spk{s}" / f"{u}.wav", f"spk{s}")
        for s in range(n_speakers)
        for u in range(n_files)
    ]


def test_round_trip_relative_paths(tmp_path: Path) -> None:
    items = _items(3, 2, tmp_path / "audio")
    items.append(ManifestItem(tmp_path / "odd, name.wav", "spk,with,commas"))
    csv_path = tmp_path / "lists" / "m.csv"
    write_manifest(items, csv_path, relative_to=csv_path.parent)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "path,speaker"
    assert lines[1] == f"{Path('..', 'audio', 'spk0', '0.wav')},spk0"
    back = read_manifest(csv_path)
    assert [(i.path.resolve(), i.speaker) for i in back] == [
        (i.path.resolve(), i.speaker) for i in items
    ]
    assert [p.name for p in csv_path.parent.iterdir()] == ["m.csv"]  # no temp file left


def test_absolute_paths_kept_and_relative_resolved_against_csv_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "corpus"
    sub.mkdir()
    (sub / "m.csv").write_text("speaker,path,gender\na,x/1.wav,f\nb,/abs/2.wav,m\n\n")
    monkeypatch.chdir(tmp_path)  # a relative CSV path: files still resolve against its folder
    items = read_manifest(Path("corpus/m.csv"))
    assert items == [
        ManifestItem(Path("corpus/x/1.wav"), "a"),
        ManifestItem(Path("/abs/2.wav"), "b"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,speaker\na.wav,s\n", "lacks column"),
        ("", "empty file"),
        ("path,speaker\na.wav,s\nb.wav\n", "line 3"),
        ("path,speaker\na.wav,s\n,s2\n", "line 3"),
        ("path,speaker\na.wav,s\nb.wav,  \n", "line 3"),
        ("path,speaker\na.wav,s\nb.wav,s,extra\n", "line 3: 3 field"),
        ("path,speaker\na.wav,s\nb\0.wav,s\n", "line 3: the path .* holds a NUL byte"),
        (
            "path,speaker\na.wav,ann\nb.wav,s\na.wav,bob\n",
            "line 4: a.wav is listed as speaker 'bob' here and as 'ann' on line 2",
        ),
    ],
)
def test_bad_manifest_errors(tmp_path: Path, text: str, message: str) -> None:
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_manifest(csv_path)
    assert str(csv_path) in str(info.value)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,speaker\na.wav,s\n", encoding="utf-8-sig")  # as Excel saves it
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_manifest(csv_path) == [ManifestItem(tmp_path / "a.wav", "s")]


def test_a_latin1_manifest_error_names_the_file(tmp_path: Path) -> None:
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,speaker\nJosé.wav,s\n", encoding="latin-1")
    with pytest.raises(
        ValueError, match=r"m\.csv, line 2: not UTF-8 text \(byte b'\\xe9' at offset 16\)"
    ):
        read_manifest(csv_path)


def test_duplicated_rows_are_kept_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,speaker\na.wav,s\nb.wav,s\na.wav,s\n")
    with caplog.at_level(logging.WARNING, logger="voxvec.data.manifest"):
        items = read_manifest(csv_path)
    assert [i.path.name for i in items] == ["a.wav", "b.wav", "a.wav"]
    assert caplog.messages == [
        f"{csv_path}: 1 duplicated row(s), each used as often as it appears: line 4 repeats line 2"
    ]


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_manifest(tmp_path / "nope.csv")


def test_write_rejects_empty_speaker_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty speaker"):
        write_manifest([ManifestItem(Path("a.wav"), "")], tmp_path / "m.csv")
    assert list(tmp_path.iterdir()) == []


def test_real_manifest_files_exist(shared_data: Path) -> None:
    items = read_manifest(shared_data / "speechocean762" / "manifest.csv")
    assert len(items) > 1000
    assert all(item.speaker.startswith("so-") for item in items)
    assert all(item.path.is_file() for item in items[:50])


def test_group_by_speaker(tmp_path: Path) -> None:
    items = _items(3, 2, tmp_path)
    groups = group_by_speaker(reversed(items))
    assert list(groups) == ["spk2", "spk1", "spk0"]
    assert all(len(g) == 2 and {i.speaker for i in g} == {s} for s, g in groups.items())


def test_split_by_speaker_is_disjoint_and_seeded(tmp_path: Path) -> None:
    items = _items(20, 3, tmp_path)
    train, valid, test = split_by_speaker(items, n_valid=4, n_test=3, seed=1)
    spk = [{i.speaker for i in part} for part in (train, valid, test)]
    assert [len(s) for s in spk] == [13, 4, 3]
    assert not (spk[0] & spk[1]) and not (spk[0] & spk[2]) and not (spk[1] & spk[2])
    assert len(train) + len(valid) + len(test) == len(items)
    assert all(len([i for i in valid if i.speaker == s]) == 3 for s in spk[1])  # whole speakers
    # the input order does not matter; the seed does
    again = split_by_speaker(list(reversed(items)), n_valid=4, n_test=3, seed=1)
    assert {i.speaker for i in again[1]} == spk[1]
    other = split_by_speaker(items, n_valid=4, n_test=3, seed=2)
    assert {i.speaker for i in other[1]} != spk[1]


@pytest.mark.parametrize(("n_valid", "n_test"), [(5, 0), (3, 2), (-1, 0)])
def test_split_by_speaker_errors(tmp_path: Path, n_valid: int, n_test: int) -> None:
    with pytest.raises(ValueError, match="speaker"):
        split_by_speaker(_items(5, 2, tmp_path), n_valid, n_test)


def test_every_command_reads_a_manifest_with_a_byte_order_mark(tmp_path: Path) -> None:
    from voxvec.data.loader import DataConfig, training_data
    from voxvec.data.prepare import scan_manifest
    from voxvec.embedding_files import collect_inputs

    for name in ("a.wav", "b.wav"):
        (tmp_path / name).write_bytes(b"")
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,speaker\na.wav,s1\nb.wav,s2\n", encoding="utf-8-sig")
    expected = [tmp_path / "a.wav", tmp_path / "b.wav"]
    assert collect_inputs([csv_path]).paths == expected  # voxvec embed
    assert [i.path for i in scan_manifest(csv_path).items] == expected  # voxvec prepare
    assert [i.path for i in read_manifest(csv_path)] == expected  # voxvec eval
    config = DataConfig(str(csv_path), n_speakers=2, n_utterances=1, num_workers=0)
    assert [i.path for i in training_data(config, 16000, 1, seed=0).items] == expected  # train


# Paths and speaker ids as people write them: spaces, commas, quotes, unicode, line breaks;
# not beginning or ending with whitespace (read_manifest drops it).
FIELD = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1,
    max_size=10,
).filter(lambda s: s == s.strip())  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(FIELD, FIELD), min_size=1, max_size=6, unique_by=lambda r: r[0]),
    repeats=st.lists(st.integers(0, 5), max_size=3),
    extra=st.lists(FIELD.filter(lambda s: s not in ("path", "speaker")), max_size=2, unique=True),
    order=st.permutations([0, 1, 2, 3]),
    bom=st.booleans(),
)
def test_any_manifest_reads_back_its_rows(rows, repeats, extra, order, bom) -> None:
    listed = rows + [rows[k % len(rows)] for k in repeats]  # duplicated rows
    columns = ["path", "speaker", *extra]
    order = [i for i in order if i < len(columns)]
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "m.csv"
        with open(csv_path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
            writer = CsvWriter(f)
            writer.writerow([columns[i] for i in order])
            for path, speaker in listed:
                values = [path, speaker, *(f"x{k}" for k in range(len(extra)))]
                writer.writerow([values[i] for i in order])
        items = read_manifest(csv_path)
    assert [(item.path, item.speaker) for item in items] == [
        (Path(tmp) / path, speaker) for path, speaker in listed
    ]


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(FIELD, FIELD), min_size=1, max_size=6, unique_by=lambda r: r[0]))
@example(
    rows=[("take\r1.wav", "ann"), ('b, "quoted"\n.wav', "bob\rby")]
)  # csv's reader ends lines at \r
def test_write_manifest_round_trips_any_name(rows) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        items = [ManifestItem(Path(tmp) / path, speaker) for path, speaker in rows]
        write_manifest(items, Path(tmp) / "m.csv", relative_to=tmp)
        assert read_manifest(Path(tmp) / "m.csv") == items
