"""Embedding latency at different torch thread counts, on an idle or a deliberately busy machine.

For each thread setting, a fresh interpreter loads the default model with
``voxvec.load(num_threads=N)`` and measures, on real files of one corpus in ../shared/data:

- one file: the wall time of ``embedder.embed(path)`` (decoding included), median of
  ``--repeats`` calls after one warm-up call;
- batch: the wall time of one ``embedder.embed(paths)`` call on ``--n-files`` files at the
  default batch size, median of three calls.

``--busy K`` starts K processes that spin on the CPU for the whole run (at the niceness of this
script), as another job on a shared machine would, and waits ``--warm-s`` seconds (so that the
1-minute load average sees them) before measuring; ``auto`` in ``--threads`` is voxvec's own
default (``num_threads="auto"``, :func:`voxvec.runtime.default_num_threads`), ``torch`` leaves
torch's (a thread per core unless ``OMP_NUM_THREADS`` says otherwise).

Example (the command behind BENCHMARKS.md)::

    nice -n 19 python bench/threads.py --json bench/results/threads-idle.json
    nice -n 19 python bench/threads.py --busy 2 --json bench/results/threads-busy.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "THREADS_RESULT "


def _spin() -> None:
    """Keep one core busy until killed."""
    while True:
        pass


def worker(setting: str, files: list[Path], repeats: int) -> dict:
    """Measure one thread setting in this process; returns the result row."""
    import torch

    import voxvec

    threads: int | str | None = {"torch": None, "auto": "auto"}.get(setting, setting)
    if isinstance(threads, str) and threads != "auto":
        threads = int(threads)
    embedder = voxvec.load(device="cpu", num_threads=threads)
    embedder.embed(files[0])  # warm-up: lazy initialisation, first kernels
    one = []
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.embed(files[0])
        one.append(time.perf_counter() - start)
    batch = []
    for _ in range(3):
        start = time.perf_counter()
        embedder.embed(files)
        batch.append(time.perf_counter() - start)
    return {
        "setting": setting,
        "torch_threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 2),
        "one_file_ms": round(1000 * statistics.median(one), 1),
        "one_file_max_ms": round(1000 * max(one), 1),
        "batch_s": round(statistics.median(batch), 3),
        "n_files": len(files),
        "precision": embedder.precision,
    }


def measure(setting: str, files_json: Path, repeats: int) -> dict:
    """Run :func:`worker` for one setting in a fresh interpreter."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        setting,
        "--files-json",
        str(files_json),
        "--repeats",
        str(repeats),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"setting {setting} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def markdown_table(rows: Sequence[dict]) -> str:
    """The results as a markdown table."""
    lines = [
        "| threads | torch threads | one file, median (max) ms | batch of files, s |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['torch_threads']} | {r['one_file_ms']:.0f} "
            f"({r['one_file_max_ms']:.0f}) | {r['batch_s']:.2f} ({r['n_files']} files) |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the benchmark (see the module docstring)."""
    default_data = os.environ.get("VOXVEC_DATA", str(REPO_ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(default_data), help="../shared/data")
    parser.add_argument("--corpus", default="speechocean762", help="folder under --data")
    parser.add_argument("--n-files", type=int, default=32, help="files of the batch (32)")
    parser.add_argument(
        "--threads", nargs="+", default=["1", "2", "torch", "auto"], help="settings"
    )
    parser.add_argument("--busy", type=int, default=0, help="CPU-spinning processes to run")
    parser.add_argument(
        "--warm-s", type=float, default=70.0, help="with --busy: seconds to wait first (70)"
    )
    parser.add_argument("--repeats", type=int, default=20, help="one-file calls timed (20)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--files-json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        files = [Path(p) for p in json.loads(args.files_json.read_text())]
        print(RESULT_PREFIX + json.dumps(worker(args.worker, files, args.repeats)), flush=True)
        return 0

    files = sorted((args.data / args.corpus).rglob("*.ogg"))[: args.n_files]
    if len(files) < args.n_files:
        parser.error(f"found {len(files)} .ogg files under {args.data / args.corpus}")
    files_json = Path(os.environ.get("TMPDIR", "/tmp")) / f"voxvec-threads-{os.getpid()}.json"
    files_json.write_text(json.dumps([str(p) for p in files]))
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    if spinners:
        time.sleep(args.warm_s)
    try:
        rows = [measure(setting, files_json, args.repeats) for setting in args.threads]
    finally:
        for p in spinners:
            p.terminate()
        files_json.unlink()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.busy} busy process(es), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(markdown_table(rows))
    if args.json is not None:
        document = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "busy": args.busy,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        }
        args.json.write_text(json.dumps({**document, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
