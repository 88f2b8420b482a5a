"""Torch-free ONNX inference against the PyTorch path: start-up time, throughput, memory.

Each system runs in a fresh subprocess, by the interpreter given for it (so the ONNX systems can
run in a virtual environment without torch, as a deployment would), on the same N files of a
manifest (the held-out test split by default):

- ``start s``: wall time from the child script's first line to the first embedding of one file
  (``import voxvec``, ``voxvec.load``, decoding, one forward pass); ``import s`` is the
  ``import voxvec`` plus ``voxvec.load`` part of it;
- throughput = seconds of audio / wall seconds over the N files (decoding and resampling
  included; one ``embed`` call, 16 inputs per forward pass; ``min_speech_s=0`` as
  ``voxvec eval --min-speech-s 0``, so the split's sub-second digits count); ``forward`` = the
  same for the forward passes alone (``embed_waveforms`` of the decoded waveforms);
- ``RSS peak`` = the child's peak resident memory; ``torch`` = whether torch was imported.

Systems: ``torch-float32`` and ``torch-auto`` (``voxvec.load(MODEL)`` with that precision),
``onnx-float32`` and ``onnx-int8`` (``voxvec.load(FILE.onnx)`` of ``voxvec export MODEL``, the
second with ``--quantize int8``; exported into a temporary folder unless given). Every system
gets ``--threads`` threads (torch's, or onnxruntime's ``num_threads``).

Example (the command behind BENCHMARKS.md; ``/tmp/venv-onnx`` holds numpy, soundfile, soxr,
onnxruntime and ``pip install --no-deps voxvec``, no torch)::

    python bench/onnx_runtime.py --n-files 1000 --threads 1 --rounds 3 \
        --onnx-python /tmp/venv-onnx/bin/python --json bench/results/onnx-runtime.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()  # as early as this script can take it: the interpreter's start-up

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "ONNX_RUNTIME_RESULT "
SYSTEMS = ("torch-float32", "torch-auto", "onnx-float32", "onnx-int8")


def _worker(system: str, model: str, files: list[str], threads: int) -> dict:
    """Run one system in this (fresh) process and measure it."""
    import voxvec

    if system.startswith("onnx"):
        embedder = voxvec.load(model, "cpu", num_threads=threads, min_speech_s=0)
    else:
        import torch

        torch.set_num_threads(threads)
        precision = system.removeprefix("torch-")
        embedder = voxvec.load(model, "cpu", precision=precision, min_speech_s=0)
    loaded = time.perf_counter()
    embedder.embed(files[0])
    first = time.perf_counter()
    import soundfile

    audio_s = sum(soundfile.info(f).duration for f in files)
    start = time.perf_counter()
    emb = embedder.embed(files, batch_size=16)
    wall = time.perf_counter() - start
    from voxvec.audio import io

    waves = [io.load(f, embedder.sample_rate) for f in files]
    start = time.perf_counter()
    embedder.embed_waveforms(waves, batch_size=16)
    forward = time.perf_counter() - start
    return {
        "system": system,
        "model": model,
        "precision": embedder.precision,
        "threads": threads,
        "n_files": len(files),
        "audio_s": round(audio_s, 1),
        "wall_s": round(wall, 2),
        "throughput": round(audio_s / wall, 1),
        "forward_throughput": round(audio_s / forward, 1),
        "import_s": round(loaded - START, 3),
        "start_s": round(first - START, 3),
        "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_imported": "torch" in sys.modules,
        "shape": list(emb.shape),
    }


def _files(manifest: Path, n_files: int) -> list[str]:
    """Every k-th file of the manifest, ``n_files`` in all (paths relative to the manifest)."""
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    step = max(1, len(rows) // n_files)
    return [str((manifest.parent / r["path"]).resolve()) for r in rows[::step][:n_files]]


def _run(python: str, system: str, model: str, files_json: Path, threads: int) -> dict:
    command = [python, __file__, "--worker", system, "--model", model, "--files", str(files_json)]
    command += ["--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{system} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def _table(rows: list[dict]) -> str:
    out = [
        "| system | precision | files | audio s | wall s | throughput | forward | import s "
        "| start s | RSS peak MB | torch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['system']} | {r['precision']} | {r['n_files']} | {r['audio_s']} "
            f"| {r['wall_s']} | {r['throughput']} | {r['forward_throughput']} | {r['import_s']} "
            f"| {r['start_s']} "
            f"| {r['rss_peak_mb']} | {'yes' if r['torch_imported'] else 'no'} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--manifest", type=Path, default=REPO_ROOT / "configs/splits/default/test.csv"
    )
    parser.add_argument("--model", default="voxvec-default", help="what is exported and compared")
    parser.add_argument("--n-files", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of every system, in rotated order each round"
    )
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--onnx", help="the exported float32 .onnx (default: export --model)")
    parser.add_argument("--onnx-int8", help="the int8 .onnx (default: export --quantize int8)")
    parser.add_argument(
        "--onnx-python",
        default=sys.executable,
        help="interpreter for the ONNX systems (e.g. of a virtual environment without torch)",
    )
    parser.add_argument("--json", type=Path, help="write the rows and the machine here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--files", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        files = json.loads(args.files.read_text())
        row = _worker(args.worker, args.model, files, args.threads)
        print(RESULT_PREFIX + json.dumps(row))
        return
    with tempfile.TemporaryDirectory() as tmp:
        models = {"torch-float32": args.model, "torch-auto": args.model}
        needed = {"onnx-float32": (args.onnx, None), "onnx-int8": (args.onnx_int8, "int8")}
        for system, (given, quantize) in needed.items():
            if system in args.systems and given is None:
                from voxvec.export import export

                out = Path(tmp) / f"{system}.onnx"
                given = str(export(args.model, out, quantize=quantize))
            models[system] = given
        files_json = Path(tmp) / "files.json"
        files_json.write_text(json.dumps(_files(args.manifest, args.n_files)))
        rows = []
        for round_ in range(args.rounds):
            shift = round_ % len(args.systems)
            for system in args.systems[shift:] + args.systems[:shift]:
                python = args.onnx_python if system.startswith("onnx") else sys.executable
                rows.append(_run(python, system, models[system], files_json, args.threads))
                print(_table(rows[-1:]).splitlines()[-1], flush=True)
    print(_table(sorted(rows, key=lambda r: args.systems.index(r["system"]))))
    if args.json:
        machine = {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "onnx_python": args.onnx_python,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
