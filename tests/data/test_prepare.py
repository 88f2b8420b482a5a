"""Tests for voxvec.data.prepare on small fake corpus trees of real-format audio files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxvec.data.manifest import read_manifest
from voxvec.data.prepare import (
    check_readable,
    prepare,
    scan_commonvoice,
    scan_folders,
    scan_librispeech,
    scan_vctk,
    scan_voxceleb,
)

SR = 16000


def write_audio(path: Path, seconds: float = 0.05, fmt: str | None = None) -> Path:
    """A tiny real audio file (noise) in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = np.random.default_rng(len(str(path))).uniform(-0.1, 0.1, int(SR * seconds))
    sf.write(path, wav.astype(np.float32), SR, format=fmt)
    return path


def make_librispeech(root: Path) -> Path:
    """LibriSpeech/<subset>/<speaker>/<chapter>/<spk>-<chapter>-<utt>.flac, plus stray files."""
    corpus = root / "LibriSpeech"
    for subset, speakers in (("train-clean-100", ("103", "1034")), ("dev-clean", ("84",))):
        for spk in speakers:
            for chapter in ("1240", "1241"):
                for utt in range(2):
                    write_audio(corpus / subset / spk / chapter / f"{spk}-{chapter}-{utt:04d}.flac")
            (corpus / subset / spk / "1240" / f"{spk}-1240.trans.txt").write_text("TEXT\n")
    (corpus / "SPEAKERS.TXT").write_text("; speakers\n")
    return corpus


def make_vctk_092(root: Path) -> Path:
    corpus = root / "VCTK-Corpus-0.92"
    for spk in ("p225", "p226"):
        for utt in range(3):
            for mic in ("mic1", "mic2"):
                write_audio(corpus / "wav48_silence_trimmed" / spk / f"{spk}_{utt:03d}_{mic}.flac")
    (corpus / "txt").mkdir()
    return corpus


def make_vctk_080(root: Path) -> Path:
    corpus = root / "VCTK-Corpus"
    for spk in ("p225", "p227", "p228"):
        for utt in range(2):
            write_audio(corpus / "wav48" / spk / f"{spk}_{utt:03d}.wav")
    return corpus


def make_commonvoice(root: Path, locale: str = "en") -> Path:
    folder = root / "cv-corpus-15.0" / locale
    rows = ["client_id\tpath\tsentence\tup_votes"]
    for c, client in enumerate(("aaa111", "bbb222")):
        for u in range(3):
            name = f"common_voice_{locale}_{c}{u}.mp3"
            write_audio(folder / "clips" / name, seconds=0.2, fmt="MP3")
            rows.append(f'{client}\t{name}\tShe said "hi\t2')
    rows.append(f"ccc333\tcommon_voice_{locale}_missing.mp3\tGone.\t2")
    (folder / "validated.tsv").write_text("\n".join(rows) + "\n")
    return folder


def make_voxceleb(root: Path, sub: str, ext: str) -> Path:
    for spk in ("id10001", "id10002"):
        for video in ("1zcIwhmdeo4", "7gWzIy6yIIk"):
            for utt in range(2):
                path = root / sub / spk / video / f"{utt + 1:05d}{ext}"
                if ext == ".m4a":  # AAC cannot be written here: a stand-in with the right name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"\x00\x00\x00\x20ftypM4A ")
                else:
                    write_audio(path)
    return root


def make_folders(root: Path) -> Path:
    corpus = root / "mycorpus"
    write_audio(corpus / "alice" / "a1.wav")
    write_audio(corpus / "alice" / "session2" / "a2.flac")
    write_audio(corpus / "bob" / "b1.ogg", fmt="OGG")
    write_audio(corpus / "loose.wav")  # not in a speaker folder: ignored
    (corpus / "bob" / "notes.txt").write_text("not audio")
    (corpus / ".hidden").mkdir()
    write_audio(corpus / ".hidden" / "h.wav")
    return corpus


def _speakers(scan) -> set[str]:
    return {item.speaker for item in scan.items}


def test_librispeech_corpus_root_and_subset_root(tmp_path: Path) -> None:
    corpus = make_librispeech(tmp_path)
    scan = scan_librispeech(corpus)
    assert _speakers(scan) == {"ls-103", "ls-1034", "ls-84"}
    assert len(scan.items) == 12
    assert all(item.path.suffix == ".flac" and item.path.is_absolute() for item in scan.items)
    subset = scan_librispeech(corpus / "train-clean-100")
    assert _speakers(subset) == {"ls-103", "ls-1034"}
    assert len(subset.items) == 8


def test_vctk_both_releases(tmp_path: Path) -> None:
    new = scan_vctk(make_vctk_092(tmp_path))
    assert _speakers(new) == {"vctk-p225", "vctk-p226"}
    assert len(new.items) == 6 and all(i.path.name.endswith("_mic1.flac") for i in new.items)
    mic2 = scan_vctk(tmp_path / "VCTK-Corpus-0.92", mic="mic2")
    assert all(i.path.name.endswith("_mic2.flac") for i in mic2.items)
    old = scan_vctk(make_vctk_080(tmp_path))
    assert _speakers(old) == {"vctk-p225", "vctk-p227", "vctk-p228"} and len(old.items) == 6
    direct = scan_vctk(tmp_path / "VCTK-Corpus" / "wav48")  # root = the audio folder itself
    assert [i.path for i in direct.items] == [i.path for i in old.items]


def test_commonvoice_locale_and_release_roots(tmp_path: Path) -> None:
    locale = make_commonvoice(tmp_path, "en")
    make_commonvoice(tmp_path, "fr")
    scan = scan_commonvoice(locale)
    assert _speakers(scan) == {"cv-aaa111", "cv-bbb222"}
    assert len(scan.items) == 6 and all(i.path.parent == locale / "clips" for i in scan.items)
    assert [p.name for p, _ in scan.unreadable] == ["common_voice_en_missing.mp3"]
    assert "missing" in scan.unreadable[0][1]
    both = scan_commonvoice(locale.parent)
    assert len(both.items) == 12 and len(both.unreadable) == 2


def test_commonvoice_bad_tsv(tmp_path: Path) -> None:
    folder = tmp_path / "en"
    (folder / "clips").mkdir(parents=True)
    (folder / "validated.tsv").write_text("speaker\tfile\nx\ty.mp3\n")
    with pytest.raises(ValueError, match="client_id"):
        scan_commonvoice(folder)


def test_voxceleb_official_layouts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vox1 = make_voxceleb(tmp_path / "vox1", "wav", ".wav")
    scan = scan_voxceleb(vox1, "vox1")
    assert _speakers(scan) == {"vox1-id10001", "vox1-id10002"} and len(scan.items) == 8
    plain = make_voxceleb(tmp_path / "plain", "", ".wav")
    assert len(scan_voxceleb(plain, "vox1").items) == 8
    vox2 = make_voxceleb(tmp_path / "vox2", "dev/aac", ".m4a")
    with caplog.at_level(logging.WARNING, logger="voxvec.data.prepare"):
        scan2 = scan_voxceleb(vox2, "vox2")
    assert _speakers(scan2) == {"vox2-id10001", "vox2-id10002"} and len(scan2.items) == 8
    assert "AAC" in caplog.text
    with pytest.raises(ValueError, match="vox1"):
        scan_voxceleb(vox2, "vox3")


def test_generic_folders(tmp_path: Path) -> None:
    scan = scan_folders(make_folders(tmp_path))
    assert sorted((i.path.name, i.speaker) for i in scan.items) == [
        ("a1.wav", "mycorpus-alice"),
        ("a2.flac", "mycorpus-alice"),
        ("b1.ogg", "mycorpus-bob"),
    ]
    assert _speakers(scan_folders(tmp_path / "mycorpus", prefix="mc")) == {"mc-alice", "mc-bob"}


@pytest.mark.parametrize(
    "scanner", [scan_librispeech, scan_vctk, scan_commonvoice, scan_voxceleb, scan_folders]
)
def test_wrong_root_errors(tmp_path: Path, scanner) -> None:
    with pytest.raises(FileNotFoundError, match="nothere"):
        scanner(tmp_path / "nothere")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="expected") as info:
        scanner(empty)
    assert str(empty) in str(info.value)


def test_check_readable_lists_bad_files(tmp_path: Path) -> None:
    scan = scan_folders(make_folders(tmp_path))
    (tmp_path / "mycorpus" / "bob" / "broken.wav").write_bytes(b"RIFF0000garbage")
    write_audio(tmp_path / "mycorpus" / "bob" / "empty.wav", seconds=0.0)
    items = scan_folders(tmp_path / "mycorpus").items
    good, bad = check_readable(items)
    assert [i.path for i in good] == [i.path for i in scan.items]
    assert sorted(p.name for p, _ in bad) == ["broken.wav", "empty.wav"]
    assert all(reason for _, reason in bad)


def test_prepare_several_corpora_split_and_outputs(tmp_path: Path) -> None:
    out = tmp_path / "splits"
    sources = [
        ("librispeech", make_librispeech(tmp_path)),
        ("vctk", make_vctk_092(tmp_path)),
        ("commonvoice", make_commonvoice(tmp_path)),
        ("vox1", make_voxceleb(tmp_path / "vox1", "wav", ".wav")),
        ("folders", make_folders(tmp_path)),
        ("librispeech", tmp_path / "LibriSpeech" / "dev-clean"),  # overlaps: kept once
    ]
    report = prepare(sources, out, n_valid=3, n_test=2, seed=7)
    parts = {name: read_manifest(out / f"{name}.csv") for name in ("train", "valid", "test")}
    speakers = {name: {i.speaker for i in items} for name, items in parts.items()}
    assert [len(speakers[n]) for n in ("train", "valid", "test")] == [6, 3, 2]
    assert not (speakers["train"] & speakers["valid"]) and not (
        speakers["train"] & speakers["test"]
    )
    all_items = [i for items in parts.values() for i in items]
    assert len(all_items) == len({i.path for i in all_items}) == 12 + 6 + 6 + 8 + 3
    assert all(i.path.is_absolute() and i.path.is_file() for i in all_items)
    assert {s.split("-")[0] for s in set().union(*speakers.values())} == {
        "ls",
        "vctk",
        "cv",
        "vox1",
        "mycorpus",
    }
    assert report.splits["valid"] == (len(parts["valid"]), 3)
    assert report.outputs == {n: out / f"{n}.csv" for n in ("train", "valid", "test")}
    # the missing Common Voice clip is listed, not fatal
    assert report.unreadable_csv == out / "unreadable.csv"
    assert "common_voice_en_missing.mp3" in report.unreadable_csv.read_text()
    table = report.format_table()
    assert "librispeech" in table and "valid.csv" in table and "unreadable.csv" in table

    again = prepare(sources, tmp_path / "again", n_valid=3, n_test=2, seed=7)
    assert again.splits == report.splits
    assert (tmp_path / "again" / "valid.csv").read_text() == (out / "valid.csv").read_text()


def test_prepare_train_only_and_check_audio(tmp_path: Path) -> None:
    corpus = make_folders(tmp_path)
    (corpus / "carol").mkdir()
    (corpus / "carol" / "bad.wav").write_bytes(b"not a wav file")
    out = tmp_path / "out"
    out.mkdir()
    (out / "valid.csv").write_text("path,speaker\nstale.wav,old\n")  # from an earlier run
    report = prepare([("folders", corpus)], out, check_audio=True)
    assert sorted(p.name for p in out.iterdir()) == ["train.csv", "unreadable.csv"]
    assert {i.speaker for i in read_manifest(out / "train.csv")} == {
        "mycorpus-alice",
        "mycorpus-bob",
    }
    assert [p.name for p, _ in report.unreadable] == ["bad.wav"]


def test_prepare_errors(tmp_path: Path) -> None:
    corpus = make_folders(tmp_path)
    with pytest.raises(ValueError, match="no corpus"):
        prepare([], tmp_path / "o")
    with pytest.raises(ValueError, match="unknown corpus"):
        prepare([("timit", corpus)], tmp_path / "o")
    with pytest.raises(ValueError, match="at least one speaker must remain"):
        prepare([("folders", corpus)], tmp_path / "o", n_valid=2)
    bad_only = tmp_path / "bad"
    (bad_only / "x").mkdir(parents=True)
    (bad_only / "x" / "a.wav").write_bytes(b"junk")
    with pytest.raises(ValueError, match="no readable audio"):
        prepare([("folders", bad_only)], tmp_path / "o", check_audio=True)
