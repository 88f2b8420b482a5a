"""Open-set identification accuracy on real speech: enrolled speakers named, strangers rejected.

1. Thresholds come from the **validation** speakers only (``configs/splits/default/valid.csv``):
   ``calibrate_manifest`` fits the score calibration and false-accept curve on seeded trials of
   them (saved beside the results).
2. The held-out **test** speakers (``configs/splits/default/test.csv``, never seen in training or
   calibration) are split, seeded: two thirds are enrolled from ``--n-enroll`` files each
   (speakers with fewer than ``--n-enroll + 1`` files are never enrolled), the others are
   strangers. Queries: up to ``--max-queries`` other files of each enrolled speaker, and up to
   as many files of each stranger.
3. Every file is embedded once; the store is a real :class:`voxvec.apps.store.SpeakerStore`, and
   each operating point is the store's own open-set decision (threshold and margin):

   - top-1: the best candidate is the right speaker (closed set, no threshold);
   - correct: the name given is the right one; wrong: another enrolled name was given;
   - stranger FAR: the share of strangers' files given any name.

Operating points: ``identification_threshold`` with the validation calibration at open-set
false-accept rates 1% and 5% (the per-comparison rate follows from the number enrolled), and
without a calibration, the model card's ``far1`` verification point.

Example (the command behind BENCHMARKS.md)::

    python bench/identify_accuracy.py --model voxvec-default \
        --json bench/results/identify-accuracy.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np

import voxvec
from voxvec.apps.calibration import Calibration, calibrate_manifest, identification_threshold
from voxvec.apps.identity import ModelIdentity
from voxvec.apps.store import SpeakerStore
from voxvec.data.manifest import group_by_speaker, read_manifest
from voxvec.eval.verify import embed_files, path_key

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLITS = REPO_ROOT / "configs" / "splits" / "default"
logger = logging.getLogger("bench.identify_accuracy")


def corpus_of(path: Path) -> str:
    """The corpus folder a file lies in (the folder under ``data/``)."""
    parts = Path(os.path.normpath(path)).parts
    return parts[parts.index("data") + 1] if "data" in parts else "?"


def score_point(matches, truth: list[str | None]) -> dict:
    """Counts of one operating point: enrolled queries (truth a name) and strangers (None)."""
    enrolled = [(m, t) for m, t in zip(matches, truth, strict=True) if t is not None]
    strangers = [m for m, t in zip(matches, truth, strict=True) if t is None]
    return {
        "n_enrolled_queries": len(enrolled),
        "n_stranger_queries": len(strangers),
        "top1": float(np.mean([m.candidates[0].speaker == t for m, t in enrolled])),
        "correct": float(np.mean([m.speaker == t for m, t in enrolled])),
        "wrong": float(np.mean([m.speaker not in (None, t) for m, t in enrolled])),
        "unknown": float(np.mean([m.speaker is None for m, _ in enrolled])),
        "stranger_far": float(np.mean([m.speaker is not None for m in strangers])),
    }


def main() -> int:
    """Calibrate on valid, enroll and query test speakers, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="voxvec-default")
    parser.add_argument("--valid", type=Path, default=SPLITS / "valid.csv")
    parser.add_argument("--test", type=Path, default=SPLITS / "test.csv")
    parser.add_argument("--n-enroll", type=int, default=3, help="files per enrolled speaker (3)")
    parser.add_argument("--max-queries", type=int, default=10, help="query files per speaker (10)")
    parser.add_argument("--n-trials", type=int, default=40000, help="calibration trials (40000)")
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--calibration", type=Path, help="a calibration of this model on --valid to reuse"
    )
    parser.add_argument("--json", type=Path, help="write results here (and .md, calibration)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    embedder = voxvec.load(args.model)
    model = ModelIdentity.of(embedder)
    start = time.perf_counter()
    if args.calibration:
        calibration = Calibration.load(args.calibration)
        calibration.check_model(model)
    else:
        calibration = calibrate_manifest(
            embedder,
            read_manifest(args.valid),
            n_trials=args.n_trials,
            seed=args.seed,
            manifest=os.path.relpath(args.valid, REPO_ROOT),
        )
    logger.info(
        "calibrated on valid in %.0f s: %s",
        time.perf_counter() - start,
        json.dumps(calibration.quality),
    )
    if args.json and not args.calibration:
        cal_path = calibration.save(args.json.with_name(args.json.stem + "-calibration.json"))
        calibration = Calibration.load(cal_path)

    rng = np.random.default_rng(args.seed)
    groups = group_by_speaker(read_manifest(args.test))
    names = sorted(groups)
    rng.shuffle(names)
    enroll: dict[str, list[Path]] = {}
    queries: list[tuple[Path, str | None, str]] = []  # file, true name or None, corpus
    for k, name in enumerate(names):
        files = [item.path for item in groups[name]]
        files = [files[i] for i in rng.permutation(len(files))]
        if k % 3 != 2 and len(files) > args.n_enroll:
            enroll[name] = files[: args.n_enroll]
            rest, truth = files[args.n_enroll :], name
        else:
            rest, truth = files, None
        queries += [(f, truth, corpus_of(f)) for f in rest[: args.max_queries]]
    paths = [p for files in enroll.values() for p in files] + [q[0] for q in queries]
    start = time.perf_counter()
    embeddings, failures = embed_files(embedder, paths, batch_size=32)
    logger.info(
        "embedded %d test files in %.0f s (%d failed)",
        len(embeddings),
        time.perf_counter() - start,
        len(failures),
    )

    with tempfile.TemporaryDirectory() as tmp:
        store = SpeakerStore.create(Path(tmp) / "store", model)
        entries = []
        for name, files in enroll.items():
            done = [p for p in files if path_key(p) in embeddings]
            if done:
                vectors = np.stack([embeddings[path_key(p)] for p in done])
                entries.append((name, vectors, [str(p) for p in done], None))
        store.enroll_many(entries, model=model)
        kept = [q for q in queries if path_key(q[0]) in embeddings]
        matrix = np.stack([embeddings[path_key(q[0])] for q in kept])
        truth = [q[1] if q[1] in store else None for q in kept]
        points = {
            "calibrated, open-set FAR 1%": identification_threshold(
                None, embedder, len(store), calibration=calibration, open_set_far=0.01
            ),
            "calibrated, open-set FAR 5%": identification_threshold(
                None, embedder, len(store), calibration=calibration, open_set_far=0.05
            ),
            "model card far1 (no calibration)": identification_threshold(
                None, embedder, len(store)
            ),
        }
        results = {}
        for label, threshold in points.items():
            assert threshold is not None
            matches = store.identify(
                matrix, model=model, threshold=threshold.value, margin=args.margin, top_k=5
            )
            row = {"threshold": threshold.value, "source": threshold.source, "margin": args.margin}
            row.update(score_point(matches, truth))
            by_corpus: dict[str, list[int]] = defaultdict(list)
            for i, q in enumerate(kept):
                by_corpus[q[2]].append(i)
            row["by_corpus"] = {
                corpus: score_point([matches[i] for i in rows], [truth[i] for i in rows])
                if any(truth[i] is not None for i in rows) and any(truth[i] is None for i in rows)
                else None
                for corpus, rows in sorted(by_corpus.items())
            }
            results[label] = row
        n_enrolled = len(store)
    document = {
        "date": date.today().isoformat(),
        "model": args.model,
        "command": " ".join(["python", "bench/identify_accuracy.py", *sys.argv[1:]]),
        "load_average": os.getloadavg()[0],
        "calibration": {"fitted_on": calibration.fitted_on, "quality": calibration.quality},
        "n_enrolled_speakers": n_enrolled,
        "n_stranger_speakers": len({q[0].parent for q in kept if q[1] is None}),
        "n_enroll_files": args.n_enroll,
        "n_failed_files": len(failures),
        "results": results,
    }
    lines = [
        f"# Open-set identification, {args.model}, test split ({document['date']})",
        "",
        f"{n_enrolled} enrolled test speakers ({args.n_enroll} files each), strangers from the "
        "other test speakers; thresholds from the valid split only.",
        "",
        "| operating point | threshold | top-1 (closed set) | correct | wrong name | unknown | "
        "stranger FAR |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, row in results.items():
        lines.append(
            f"| {label} | {row['threshold']:.4f} | {row['top1'] * 100:.1f}% | "
            f"{row['correct'] * 100:.1f}% | {row['wrong'] * 100:.1f}% | "
            f"{row['unknown'] * 100:.1f}% | {row['stranger_far'] * 100:.1f}% |"
        )
    lines.append("")
    lines.append(
        f"Queries: {row['n_enrolled_queries']} of enrolled speakers, "
        f"{row['n_stranger_queries']} of strangers."
    )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
