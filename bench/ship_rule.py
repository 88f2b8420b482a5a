"""Judge a candidate default model against the shipped one by the rule set before scoring.

The rule (BENCHMARKS.md, "Distillation"), applied to one ``bench/accuracy.py --json`` file in
which both systems were scored in one invocation on the validation split, the same trials::

    python bench/accuracy.py --manifest configs/splits/default/valid.csv \
        --model <candidate bundle> --model voxvec-default \
        --conditions clean,8k,noise0,noise10,silence10,long --threads 2 --json <file>
    python bench/ship_rule.py <file> --candidate <candidate bundle> --baseline voxvec-default

ships the candidate when (1) the mean EER of the corpus x {clean, 8 kHz, noise 0 dB} cells is
lower and (2) no robustness row is worse, a row being one condition (8 kHz, noise 0 dB,
noise 10 dB, silence 10 s, 60 s+) averaged over the corpora that have it. It prints both
tables as Markdown (the per-corpus cells, the rows) and exits 0 when the candidate ships, 1
when it does not, 2 when the file lacks a cell the rule needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MEAN_CONDITIONS = ("clean", "8k", "noise0")
ROW_CONDITIONS = ("8k", "noise0", "noise10", "silence10", "long")
ROW_NAMES = {
    "8k": "8 kHz",
    "noise0": "noise 0 dB",
    "noise10": "noise 10 dB",
    "silence10": "silence 10 s",
    "long": "60 s+",
}


@dataclass(frozen=True)
class Verdict:
    """What the rule says about one candidate.

    Attributes:
        ships: both halves of the rule hold.
        mean: (candidate, baseline) mean EER % of the corpus x MEAN_CONDITIONS cells.
        weighted_mean: the same means with each cell weighted by its corpus's speakers.
        rows: condition -> (candidate, baseline) EER % averaged over the corpora that have it.
        worse_rows: the rows where the candidate is worse.
    """

    ships: bool
    mean: tuple[float, float]
    weighted_mean: tuple[float, float]
    rows: dict[str, tuple[float, float]]
    worse_rows: list[str]


def _cells(results: Sequence[dict[str, Any]], system: str) -> dict[tuple[str, str], float]:
    cells = {
        (r["corpus"], r["condition"]): 100.0 * r["eer"] for r in results if r["system"] == system
    }
    if not cells:
        systems = sorted({r["system"] for r in results})
        raise KeyError(f"no results for system {system!r}; the file has {systems}")
    return cells


def judge(results: Sequence[dict[str, Any]], candidate: str, baseline: str) -> Verdict:
    """Apply the rule to ``bench/accuracy.py`` results holding both systems.

    Raises:
        KeyError: a system is missing, or a cell the rule needs is missing for one of them.
    """
    cand, base = _cells(results, candidate), _cells(results, baseline)
    speakers = {r["corpus"]: int(r["n_speakers"]) for r in results}
    corpora = sorted(speakers)
    main = [(c, k) for c in corpora for k in MEAN_CONDITIONS]
    missing = [cell for cell in main if cell not in cand or cell not in base]
    if missing:
        raise KeyError(f"cells missing for the mean: {missing}")

    def mean(cells: dict[tuple[str, str], float], weighted: bool) -> float:
        weights = [speakers[c] if weighted else 1 for c, _ in main]
        return sum(w * cells[cell] for w, cell in zip(weights, main, strict=True)) / sum(weights)

    rows: dict[str, tuple[float, float]] = {}
    for condition in ROW_CONDITIONS:
        have = [(c, condition) for c in corpora if (c, condition) in base]
        if not have:
            continue
        if any(cell not in cand for cell in have):
            raise KeyError(f"{candidate!r} lacks {condition!r} cells that {baseline!r} has")
        rows[condition] = tuple(sum(s[cell] for cell in have) / len(have) for s in (cand, base))  # type: ignore[assignment]
    worse = [condition for condition, (c, b) in rows.items() if c > b]
    means = (mean(cand, False), mean(base, False))
    return Verdict(
        ships=means[0] < means[1] and not worse,
        mean=means,
        weighted_mean=(mean(cand, True), mean(base, True)),
        rows=rows,
        worse_rows=worse,
    )


def markdown(
    results: Sequence[dict[str, Any]], candidate: str, baseline: str, verdict: Verdict
) -> str:
    """The per-corpus table and the rows table, as in BENCHMARKS.md."""
    cand, base = _cells(results, candidate), _cells(results, baseline)
    corpora = sorted({r["corpus"] for r in results})
    first, second = MEAN_CONDITIONS, ("noise10", "silence10", "long")

    def cell_list(
        cells: dict[tuple[str, str], float], corpus: str, conditions: Sequence[str]
    ) -> str:
        return " / ".join(
            f"{cells[(corpus, k)]:.2f}" if (corpus, k) in cells else "-" for k in conditions
        )

    lines = [
        f"| corpus, EER % | {baseline}: clean / 8 kHz / noise 0 dB | {candidate}: clean / 8 kHz / "
        f"noise 0 dB | {baseline}: noise 10 dB / silence 10 s / 60 s+ | {candidate}: noise 10 dB / "
        "silence 10 s / 60 s+ |",
        "|---|---|---|---|---|",
    ]
    for corpus in corpora:
        lines.append(
            f"| {corpus} | {cell_list(base, corpus, first)} | {cell_list(cand, corpus, first)} | "
            f"{cell_list(base, corpus, second)} | {cell_list(cand, corpus, second)} |"
        )
    (mc, mb), (wc, wb) = verdict.mean, verdict.weighted_mean
    lines.append(
        f"| mean of the {len(corpora) * len(first)} cells (speaker-weighted) | "
        f"{mb:.2f} ({wb:.2f}) | {mc:.2f} ({wc:.2f}) | | |"
    )
    lines += [
        "",
        f"| robustness row (mean over the corpora) | {baseline} | {candidate} |",
        "|---|---:|---:|",
    ]
    for condition, (c, b) in verdict.rows.items():
        lines.append(f"| {ROW_NAMES[condition]} | {b:.2f} | {c:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="bench/accuracy.py --json output with both systems")
    parser.add_argument(
        "--candidate", required=True, help="the candidate's system name in the file"
    )
    parser.add_argument(
        "--baseline", default="voxvec-default", help="the shipped model's system name"
    )
    args = parser.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        results = json.load(f)
    try:
        verdict = judge(results, args.candidate, args.baseline)
    except KeyError as err:
        print(f"{args.results}: {err.args[0]}", file=sys.stderr)
        return 2
    print(markdown(results, args.candidate, args.baseline, verdict))
    worse = ", ".join(ROW_NAMES[c] for c in verdict.worse_rows) or "none"
    print(
        f"\n{'SHIPS' if verdict.ships else 'DOES NOT SHIP'}: mean {verdict.mean[0]:.2f} against "
        f"{verdict.mean[1]:.2f}; rows worse: {worse}"
    )
    return 0 if verdict.ships else 1


if __name__ == "__main__":
    sys.exit(main())
