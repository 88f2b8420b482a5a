"""Load on ``voxvec serve`` over loopback against the same work in-process.

Starts the real server (``python -m voxvec serve`` in a subprocess, a fresh store, a free
loopback port), then for each concurrency level C sends ``--requests`` ``POST /embed``
requests from each of C client threads (one real speech file per request, the files taken in
turn from the corpus) and records throughput (requests and seconds of audio per wall second)
and latency percentiles (p50 / p95 / p99, in ms). The same work is then done in-process: C
threads share one :class:`~voxvec.inference.Embedder` (what an application without the service
would do) and each embeds its files one call at a time; and, as the ceiling, all of the level's
files in one batched ``embed`` call. The server's ``/health`` counters give how many requests
shared each forward pass (the worker's batching).

Example (the command behind BENCHMARKS.md)::

    OMP_NUM_THREADS=1 nice -n 19 python bench/serve_load.py --concurrency 1 4 16 \
        --requests 8 --json bench/results/serve-load.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]


def speech_files(data: Path, corpus: str, n: int) -> list[Path]:
    """The first ``n`` files of a corpus's manifest (real speech)."""
    root = data / corpus
    with (root / "manifest.csv").open() as f:
        return [root / row["path"] for row in csv.DictReader(f)][:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(store: Path, options: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """``voxvec serve`` on a free loopback port, once ``/health`` answers."""
    import httpx

    port = free_port()
    argv = [sys.executable, "-m", "voxvec", "serve", "--store", str(store), "--port", str(port)]
    process = subprocess.Popen(
        [*argv, *options], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 300
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"voxvec serve exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("voxvec serve did not start in 300 s")


def run_clients(
    concurrency: int, requests: int, files: list[Path], work: Callable[[Any, Path], None],
    make_state: Callable[[], Any],
) -> tuple[float, list[float]]:  # fmt: skip
    """C threads, each doing ``requests`` calls of ``work(state, file)``; (wall s, latencies s)."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)
    errors: list[BaseException] = []

    def client(k: int) -> None:
        state = make_state()
        mine = [files[(k * requests + i) % len(files)] for i in range(requests)]
        barrier.wait()
        for path in mine:
            started = time.perf_counter()
            try:
                work(state, path)
            except BaseException as err:  # reported after the run
                errors.append(err)
                return
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed, the first: {errors[0]!r}")
    return wall, latencies


def summary(wall: float, latencies: list[float], audio_s: float) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2),
        "audio_s_per_s": round(audio_s / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(os.environ.get("VOXVEC_DATA", REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--corpus", default="speechocean762")
    parser.add_argument("--n-files", type=int, default=64, help="distinct files sent (64)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=8, help="requests per client (8)")
    parser.add_argument("--model", default=None, help="model name or path (default model)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    import httpx

    import voxvec

    files = speech_files(args.data, args.corpus, args.n_files)
    duration = {p: sf.info(p).duration for p in files}
    options = ["--device", "cpu", "--precision", args.precision, "--max-batch",
               str(args.max_batch), "--max-pending", "256"]  # fmt: skip
    options += ["--model", args.model] if args.model else []
    embedder = voxvec.load(args.model, "cpu", precision=args.precision)
    embedder.embed(files[:2])  # warm up
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(Path(tmp) / "store", options)
        try:
            with httpx.Client(base_url=url, timeout=300) as warm:
                warm.post("/embed", files=[("files", (files[0].name, files[0].read_bytes()))])

            def post(client: httpx.Client, path: Path) -> None:
                response = client.post("/embed", files=[("files", (path.name, path.read_bytes()))])
                response.raise_for_status()

            def embed_one(_: None, path: Path) -> None:
                embedder.embed([path])

            for c in args.concurrency:
                sent = [files[(k * args.requests + i) % len(files)]
                        for k in range(c) for i in range(args.requests)]  # fmt: skip
                audio_s = sum(duration[p] for p in sent)
                before = httpx.get(f"{url}/health").json()["queue"]
                wall, lat = run_clients(
                    c, args.requests, files, post, lambda: httpx.Client(base_url=url, timeout=300)
                )
                after = httpx.get(f"{url}/health").json()["queue"]
                jobs, batches = after["jobs"] - before["jobs"], after["batches"] - before["batches"]
                served = {**summary(wall, lat, audio_s), "jobs_per_batch": round(jobs / batches, 2)}
                wall, lat = run_clients(c, args.requests, files, embed_one, lambda: None)
                local = summary(wall, lat, audio_s)
                started = time.perf_counter()
                embedder.embed(sent, batch_size=args.max_batch)
                batched = round(len(sent) / (time.perf_counter() - started), 2)
                rows.append(
                    {"concurrency": c, "http": served, "in_process": local,
                     "in_process_one_batched_call_requests_per_s": batched}
                )  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)

    print(
        "\n| clients | HTTP req/s | audio s/s | p50 / p95 / p99 ms | requests per forward pass "
        "| in-process req/s | in-process p50 / p95 / p99 ms | one batched call, files/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        h, p = row["http"], row["in_process"]
        print(
            f"| {row['concurrency']} | {h['requests_per_s']} | {h['audio_s_per_s']} | "
            f"{h['p50_ms']} / {h['p95_ms']} / {h['p99_ms']} | {h['jobs_per_batch']} | "
            f"{p['requests_per_s']} | {p['p50_ms']} / {p['p95_ms']} / {p['p99_ms']} | "
            f"{row['in_process_one_batched_call_requests_per_s']} |"
        )
    if args.json is not None:
        mean_s = float(np.mean(list(duration.values())))
        document = {
            "date": date.today().isoformat(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "command": " ".join(sys.argv),
            "files": f"{len(files)} {args.corpus} files, mean {mean_s:.2f} s",
            "embedder": repr(embedder),
            "rows": rows,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
