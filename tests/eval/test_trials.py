"""Tests for voxvec.eval.trials: VoxCeleb-style trial files and trial generation."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from voxvec.data.manifest import ManifestItem
from voxvec.eval.trials import Trial, _triangle, generate_trials, read_trials, write_trials


def manifest(sizes: dict[str, int], folder: Path = Path("/data")) -> list[ManifestItem]:
    return [
        ManifestItem(folder / spk / f"{u}.wav", spk) for spk, n in sizes.items() for u in range(n)
    ]


def speaker_of(items: list[ManifestItem]) -> dict[Path, str]:
    return {item.path: item.speaker for item in items}


def test_round_trip_relative(tmp_path: Path) -> None:
    items = manifest({"a": 3, "b": 2}, tmp_path / "wav")
    trials = generate_trials(items, seed=0)
    out = tmp_path / "lists" / "trials.txt"
    write_trials(trials, out, relative_to=out.parent)
    first = out.read_text().splitlines()[0].split()
    assert first[0] in ("0", "1") and first[1].startswith("..")
    back = read_trials(out)
    assert [(t.label, t.path1.resolve(), t.path2.resolve()) for t in back] == [
        (t.label, t.path1.resolve(), t.path2.resolve()) for t in trials
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == ["trials.txt"]


def test_read_voxceleb_style_with_root(tmp_path: Path) -> None:
    text = (
        "# official list\n"
        "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
        "\n"
        "0\tid10270/x6uYqmx31kE/00001.wav   id10300/ize_eiCFEg0/00003.wav\n"
    )
    (tmp_path / "veri_test2.txt").write_text(text)
    trials = read_trials(tmp_path / "veri_test2.txt", root="/vox1/wav")
    assert trials == [
        Trial(
            1,
            Path("/vox1/wav/id10270/x6uYqmx31kE/00001.wav"),
            Path("/vox1/wav/id10270/8jEAjG6SegY/00008.wav"),
        ),
        Trial(
            0,
            Path("/vox1/wav/id10270/x6uYqmx31kE/00001.wav"),
            Path("/vox1/wav/id10300/ize_eiCFEg0/00003.wav"),
        ),
    ]
    default_root = read_trials(tmp_path / "veri_test2.txt")
    assert default_root[0].path1 == tmp_path / "id10270/x6uYqmx31kE/00001.wav"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 a.wav b.wav\n2 a.wav c.wav\n", "line 2"),
        ("1 a.wav\n", "line 1"),
        ("# only\n", "no trials"),
    ],
)
def test_read_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "t.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_trials(tmp_path / "t.txt")


def test_read_missing_and_write_whitespace(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_trials(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="whitespace"):
        write_trials([Trial(1, Path("a b.wav"), Path("c.wav"))], tmp_path / "t.txt")
    assert list(tmp_path.iterdir()) == []


def test_triangle_index_inverse() -> None:
    expected = [(a, b) for b in range(1, 300) for a in range(b)]  # m = b(b-1)/2 + a
    a, b = _triangle(np.arange(len(expected)))
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == expected
    big = np.array([10**12, 10**13 + 7, 2**52])  # float rounding territory
    a, b = _triangle(big)
    assert np.all((0 <= a) & (a < b)) and np.all(b * (b - 1) // 2 + a == big)


def test_all_pairs() -> None:
    items = manifest({"a": 4, "b": 3, "c": 1})
    trials = generate_trials(items)
    assert len(trials) == 8 * 7 // 2
    spk = speaker_of(items)
    assert all(t.label == int(spk[t.path1] == spk[t.path2]) for t in trials)
    assert sum(t.label for t in trials) == 6 + 3
    assert len({frozenset((t.path1, t.path2)) for t in trials}) == len(trials)
    index = {item.path: i for i, item in enumerate(items)}
    assert all(index[t.path1] < index[t.path2] for t in trials)  # manifest order within a trial


def test_sampled_trials_count_ratio_and_seed() -> None:
    items = manifest({f"s{k}": 6 for k in range(10)})
    trials = generate_trials(items, n_trials=300, target_ratio=0.3, seed=4)
    spk = speaker_of(items)
    assert len(trials) == 300 and sum(t.label for t in trials) == 90
    assert all(t.label == int(spk[t.path1] == spk[t.path2]) for t in trials)
    assert all(t.path1 != t.path2 for t in trials)
    assert len({frozenset((t.path1, t.path2)) for t in trials}) == 300
    assert generate_trials(items, n_trials=300, target_ratio=0.3, seed=4) == trials
    assert generate_trials(items, n_trials=300, target_ratio=0.3, seed=5) != trials
    assert 0 < sum(t.label for t in trials[:150]) < 90  # shuffled, not grouped by label


def test_sampling_is_uniform_over_pairs() -> None:
    items = manifest({"a": 3, "b": 3, "c": 3})  # 9 target pairs, 27 non-target pairs
    counts: Counter[frozenset[Path]] = Counter()
    for seed in range(300):
        for t in generate_trials(items, n_trials=12, target_ratio=0.5, seed=seed):
            counts[frozenset((t.path1, t.path2))] += 1
    spk = speaker_of(items)
    target = [n for pair, n in counts.items() if len({spk[p] for p in pair}) == 1]
    nontarget = [n for pair, n in counts.items() if len({spk[p] for p in pair}) == 2]
    assert len(target) == 9 and len(nontarget) == 27
    assert all(140 <= n <= 260 for n in target)  # expected 300 * 6 / 9 = 200
    assert all(35 <= n <= 100 for n in nontarget)  # expected 300 * 6 / 27 = 66.7


def test_asking_too_many_takes_all_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    items = manifest({"a": 2, "b": 2, "c": 2})  # 3 target pairs, 12 non-target pairs
    with caplog.at_level(logging.WARNING, logger="voxvec.eval.trials"):
        trials = generate_trials(items, n_trials=20, target_ratio=0.5, seed=0)
    assert sum(t.label for t in trials) == 3
    assert len(trials) == 3 + 10
    assert "only 3" in caplog.text
    # many non-targets (more than half of those available) are drawn from the full list
    trials = generate_trials(items, n_trials=14, target_ratio=0.2, seed=0)
    assert len(trials) == 14 and sum(t.label for t in trials) == 3
    assert len({frozenset((t.path1, t.path2)) for t in trials}) == 14


@pytest.mark.parametrize(
    ("sizes", "kwargs", "message"),
    [
        ({"a": 3}, {}, "two speakers"),
        ({"a": 1, "b": 1}, {}, "no speaker has two files"),
        ({"a": 2, "b": 2}, {"n_trials": 1}, "n_trials"),
        ({"a": 2, "b": 2}, {"n_trials": 4, "target_ratio": 1.0}, "target_ratio"),
    ],
)
def test_generate_errors(sizes: dict[str, int], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_trials(manifest(sizes), **kwargs)


def test_scores_and_pairs_round_trip_any_file_name(tmp_path: Path) -> None:
    import csv

    from voxvec.eval.trials import read_pairs, write_scores

    names = ["a, b.wav", 'say "hi".flac', "x/../plain.wav"]
    pairs = [(tmp_path / names[0], tmp_path / names[1]), (tmp_path / names[1], tmp_path / names[2])]
    out = tmp_path / "deep" / "scores.csv"
    write_scores(out, pairs, {"score": np.array([0.5, -0.25])}, labels=[1, 0])
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path1", "path2", "score", "label"]
    assert rows[1][2:] == ["0.500000", "1"] and rows[2][2:] == ["-0.250000", "0"]
    assert rows[2][1] == str(tmp_path / "plain.wav")  # normalised
    # A score file is a pair list; relative paths are relative to its folder.
    assert read_pairs(out) == [(p1, Path(os.path.normpath(p2))) for p1, p2 in pairs]
    (tmp_path / "rel.csv").write_text("path1,path2,note\nx.wav,sub/y.wav,z\n")
    assert read_pairs(tmp_path / "rel.csv") == [(tmp_path / "x.wav", tmp_path / "sub/y.wav")]


def test_pair_and_score_errors(tmp_path: Path) -> None:
    from voxvec.eval.trials import read_pairs, write_scores

    with pytest.raises(FileNotFoundError, match="pair list not found"):
        read_pairs(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("a,b\nx.wav,y.wav\n")
    with pytest.raises(ValueError, match="columns path1,path2"):
        read_pairs(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text("path1,path2\nx.wav,\n")
    with pytest.raises(ValueError, match="line 2: empty path1 or path2"):
        read_pairs(tmp_path / "empty.csv")
    (tmp_path / "none.csv").write_text("path1,path2\n")
    with pytest.raises(ValueError, match="no pairs"):
        read_pairs(tmp_path / "none.csv")
    with pytest.raises(ValueError, match="1 values in column 'score' for 2 pairs"):
        write_scores(tmp_path / "s.csv", [("a", "b"), ("c", "d")], {"score": np.zeros(1)})
