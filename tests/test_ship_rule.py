"""bench/ship_rule.py: the rule a candidate default model is judged by on validation."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("ship_rule", ROOT / "bench" / "ship_rule.py")
assert _spec is not None and _spec.loader is not None
ship_rule = importlib.util.module_from_spec(_spec)
sys.modules["ship_rule"] = ship_rule  # dataclasses look their module up
_spec.loader.exec_module(ship_rule)

CONDITIONS = ("clean", "8k", "noise0", "noise10", "silence10", "long")


def _results(eers: dict[str, dict[tuple[str, str], float]]) -> list[dict]:
    speakers = {"big": 18, "small": 2}
    return [
        {
            "system": system,
            "corpus": corpus,
            "condition": condition,
            "eer": eer / 100,
            "n_speakers": speakers[corpus],
        }
        for system, cells in eers.items()
        for (corpus, condition), eer in cells.items()
    ]


def _uniform(value: float, **changed: float) -> dict[tuple[str, str], float]:
    cells = {(corpus, condition): value for corpus in ("big", "small") for condition in CONDITIONS}
    for key, eer in changed.items():
        corpus, condition = key.split("_")
        cells[(corpus, condition)] = eer
    return cells


def test_a_candidate_better_everywhere_ships() -> None:
    verdict = ship_rule.judge(_results({"new": _uniform(4.0), "old": _uniform(5.0)}), "new", "old")
    assert verdict.ships
    assert verdict.mean == (4.0, 5.0)
    assert verdict.worse_rows == []
    assert set(verdict.rows) == {"8k", "noise0", "noise10", "silence10", "long"}


def test_one_worse_row_stops_a_candidate_with_a_lower_mean() -> None:
    # Far better on the 12-cell mean, but the small corpus is worse with inserted silence.
    new = _uniform(3.0, small_silence10=12.0)
    verdict = ship_rule.judge(_results({"new": new, "old": _uniform(5.0)}), "new", "old")
    assert verdict.mean[0] < verdict.mean[1]
    assert verdict.worse_rows == ["silence10"]
    assert verdict.rows["silence10"] == (7.5, 5.0)
    assert not verdict.ships


def test_a_higher_mean_stops_a_candidate_with_every_row_better() -> None:
    # Clean speech is not a row: only the mean can catch it.
    new = _uniform(4.0, big_clean=30.0, small_clean=30.0)
    verdict = ship_rule.judge(_results({"new": new, "old": _uniform(5.0)}), "new", "old")
    assert verdict.worse_rows == []
    assert not verdict.ships


def test_the_weighted_mean_weighs_cells_by_their_corpus_speakers() -> None:
    new = _uniform(5.0, small_clean=25.0)
    verdict = ship_rule.judge(_results({"new": new, "old": _uniform(5.0)}), "new", "old")
    assert verdict.weighted_mean[0] == pytest.approx(5.0 + 20.0 * 2 / (3 * 20))
    assert verdict.mean[0] == pytest.approx(5.0 + 20.0 / 6)


def test_missing_cells_are_refused_not_skipped() -> None:
    new = _uniform(4.0)
    del new[("small", "noise0")]
    with pytest.raises(KeyError, match="missing"):
        ship_rule.judge(_results({"new": new, "old": _uniform(5.0)}), "new", "old")
    with pytest.raises(KeyError, match="no results for system 'other'"):
        ship_rule.judge(_results({"new": _uniform(4.0), "old": _uniform(5.0)}), "other", "old")


def test_v4s_recorded_validation_result_does_not_ship(capsys: pytest.CaptureFixture[str]) -> None:
    # The raw output BENCHMARKS.md's v4 table was written from.
    path = ROOT / "bench" / "results" / "experiments" / "v4-valid.json"
    assert ship_rule.main([str(path), "--candidate", "runs/v4.safetensors"]) == 1
    out = capsys.readouterr().out
    assert "DOES NOT SHIP: mean 9.41 against 10.55; rows worse: silence 10 s, 60 s+" in out
    assert "| silence 10 s | 8.21 | 9.95 |" in out


def test_the_command_exits_2_naming_the_file_when_a_system_is_absent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "valid.json"
    path.write_text(json.dumps(_results({"new": _uniform(4.0)})))
    assert ship_rule.main([str(path), "--candidate", "new"]) == 2
    assert f"{path}: no results for system 'voxvec-default'" in capsys.readouterr().err
