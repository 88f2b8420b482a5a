"""Speaker-store speed and memory at 1k to 1M enrolled speakers, exact and faiss side by side.

The vectors are **synthetic** (no corpus has a million speakers): 256-d unit "speakers" drawn
with the structure of real embeddings (a 64-d random subspace plus isotropic noise), one
exemplar each, and queries that are a speaker plus noise (cosine about 0.7 to it, as a new
recording of an enrolled speaker scores on real speech). Each size runs in a fresh subprocess so
its memory is its own. Per size:

- enrollment: every speaker enrolled in one transaction (``SpeakerStore.enroll_many``: validate,
  means, write and checksum the arrays and ``store.json``), in speakers per second; then one
  more speaker enrolled into the full store (every transaction rewrites the store: the cost of
  a single ``voxvec enroll`` at that size);
- opening: ``SpeakerStore.open`` (read, checksum and load), in seconds; store size on disk;
- queries, for the exact index and for faiss IVF-SQ8 with exact re-ranking (its build time
  separately): latency of one query (median of 30) and per query in batches of 256, top-5;
- faiss recall@1 against the exact search on 1,000 queries;
- memory: resident set (RSS) after opening the store and after building the faiss index.

Example (the command behind BENCHMARKS.md)::

    python bench/identify_speed.py --sizes 1000 10000 100000 1000000 \
        --json bench/results/identify-speed.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "IDENTIFY_SPEED_RESULT "
DIM = 256
logger = logging.getLogger("bench.identify_speed")


def _rss_mb() -> float:
    """Current resident memory of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(speakers (n, D), queries (Q, D), true rows (Q,))``, built in blocks of 100k rows."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((64, DIM)).astype(np.float32) / 8.0
    speakers = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        z = rng.standard_normal((m, 64)).astype(np.float32)
        speakers[start : start + m] = _unit(z @ basis + 0.5 * rng.standard_normal((m, DIM)))
    truth = rng.integers(0, n, n_queries)
    noise = 0.064 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
    return speakers, _unit(speakers[truth] + noise), truth


def _time(fn, repeat: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(n: int, seed: int) -> dict:
    """Every measurement at one store size (run in a child process)."""
    from voxvec.apps.identity import ModelIdentity
    from voxvec.apps.index import ExactIndex, FaissIndex
    from voxvec.apps.store import SpeakerStore

    model = ModelIdentity("synthetic", "0" * 64, DIM, 16000)
    speakers, queries, truth = synthetic(n, 1000, seed)
    result: dict = {"n_speakers": n, "dim": DIM, "exemplars_per_speaker": 1}
    with tempfile.TemporaryDirectory(dir=REPO_ROOT / "bench") as tmp:
        root = Path(tmp) / "store"
        store = SpeakerStore.create(root, model)
        entries = [(f"speaker-{i:07d}", speakers[i], None, None) for i in range(n)]
        start = time.perf_counter()
        store.enroll_many(entries, model=model)
        bulk_s = time.perf_counter() - start
        del entries
        start = time.perf_counter()
        store.enroll("one-more", queries[0], model=model)
        one_s = time.perf_counter() - start
        result["enroll_bulk_s"] = bulk_s
        result["enroll_bulk_speakers_per_s"] = n / bulk_s
        result["enroll_one_into_full_store_s"] = one_s
        result["disk_mb"] = sum(p.stat().st_size for p in root.iterdir()) / 2**20
        del store, speakers
        rss_before = _rss_mb()
        start = time.perf_counter()
        store = SpeakerStore.open(root)
        result["open_s"] = time.perf_counter() - start
        result["rss_after_open_mb"] = _rss_mb()
        result["rss_store_mb"] = result["rss_after_open_mb"] - rss_before
        matrix = store._state.means  # the matrix identify searches (read-only use)

        exact = ExactIndex(matrix)
        batch = queries[:256]
        result["exact"] = {
            "query_1_ms": 1000 * _time(lambda: exact.search(queries[:1], 5), 30),
            "query_batch256_ms_per_query": 1000 * _time(lambda: exact.search(batch, 5), 3) / 256,
        }
        _, exact_rows = exact.search(queries, 1)
        result["exact"]["top1_is_true_speaker"] = float(np.mean(exact_rows[:, 0] == truth))

        try:
            rss = _rss_mb()
            start = time.perf_counter()
            approx = FaissIndex(matrix)
            build_s = time.perf_counter() - start
            _, rows = approx.search(queries, 1)
            result["faiss"] = {
                "nlist": approx.nlist,
                "nprobe": approx.nprobe,
                "rerank": approx.rerank,
                "build_s": build_s,
                "rss_index_mb": _rss_mb() - rss,
                "query_1_ms": 1000 * _time(lambda: approx.search(queries[:1], 5), 30),
                "query_batch256_ms_per_query": 1000
                * _time(lambda: approx.search(batch, 5), 3)
                / 256,
                "recall_at_1_vs_exact": float(np.mean(rows[:, 0] == exact_rows[:, 0])),
            }
        except ImportError as err:
            result["faiss"] = {"skipped": str(err)}
        # the store's own path, end to end (index build included on the first call)
        start = time.perf_counter()
        store.identify(batch, model=model, threshold=0.5, top_k=5)
        result["store_identify_batch256_first_call_s"] = time.perf_counter() - start
    return result


def _child(n: int, seed: int) -> None:
    import faulthandler

    faulthandler.enable()
    print(RESULT_PREFIX + json.dumps(measure(n, seed)), flush=True)


def _markdown(document: dict) -> str:
    lines = [
        f"# Speaker store speed ({document['date']}, {document['machine']})",
        "",
        "Synthetic 256-d vectors (one exemplar per speaker); queries a speaker plus noise.",
        "",
        "| speakers | bulk enroll (speakers/s) | +1 speaker (s) | open (s) | disk (MiB) | RSS "
        "store (MiB) | exact 1 query (ms) | exact per query, batch 256 (ms) | faiss build (s) | "
        "faiss 1 query (ms) | faiss per query, batch 256 (ms) | faiss RSS (MiB) | faiss "
        "recall@1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in document["results"]:
        f = r["faiss"]
        faiss_cells = (
            ["-"] * 6
            if "skipped" in f
            else [
                f"{f['build_s']:.1f}",
                f"{f['query_1_ms']:.2f}",
                f"{f['query_batch256_ms_per_query']:.3f}",
                f"{f['rss_index_mb']:.0f}",
                f"{f['recall_at_1_vs_exact']:.3f}",
            ]
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{r['n_speakers']:,}",
                    f"{r['enroll_bulk_speakers_per_s']:,.0f}",
                    f"{r['enroll_one_into_full_store_s']:.2f}",
                    f"{r['open_s']:.2f}",
                    f"{r['disk_mb']:.0f}",
                    f"{r['rss_store_mb']:.0f}",
                    f"{r['exact']['query_1_ms']:.2f}",
                    f"{r['exact']['query_batch256_ms_per_query']:.3f}",
                    *faiss_cells,
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run every size in a child process; print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="BLAS / faiss threads (2)")
    parser.add_argument("--json", type=Path, help="write the results here (and a .md beside)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child, args.seed)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    env = {
        **os.environ,
        **{
            k: str(args.threads)
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
    }
    results = []
    for n in args.sizes:
        logger.info("%d speakers ...", n)
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--seed", str(args.seed)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        line = next((x for x in out.stdout.splitlines() if x.startswith(RESULT_PREFIX)), None)
        if out.returncode != 0 or line is None:
            logger.error("%d speakers failed:\n%s", n, out.stderr[-3000:])
            return 1
        results.append(json.loads(line[len(RESULT_PREFIX) :]))
        logger.info("%s", json.dumps(results[-1]))
    document = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads, load average {os.getloadavg()[0]:.1f} at the end",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "vectors": "synthetic (see the script's doc)",
        "command": " ".join(["python", "bench/identify_speed.py", *sys.argv[1:]]),
        "results": results,
    }
    table = _markdown(document)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
