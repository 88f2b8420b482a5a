"""Embedding throughput and peak memory of voxvec models and Resemblyzer on the same real files.

Every system embeds the same N files of one corpus in ../shared/data, each in a fresh
subprocess (so its peak memory is its own): the file list is decoded, resampled and embedded end
to end, and

- throughput = seconds of audio / wall seconds (decoding and resampling included; model loading
  and one warm-up file excluded, and reported separately as ``load s``);
- ``RSS load`` = resident memory after imports and model loading; ``RSS peak`` = the child's
  peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over the whole run.

Systems: registered architectures by name (untrained: speed does not depend on the weights),
optionally with config fields changed as ``arch:field=value,field=value`` (for example
``ecapa:mfa_channels=512,stem_stride=3``: a candidate student measured before it is trained),
pretrained names or bundle paths (``voxvec.load``), and ``resemblyzer`` (``VoiceEncoder`` +
``preprocess_wav``, one file at a time as its API works; needs ``setuptools<81`` for webrtcvad), and
``campplus-reference``: 3D-Speaker's own CAM++ (``bench/campplus_reference.py``: speakerlab's
module, kaldi-native-fbank features, one file at a time), run by the interpreter of its own
virtual environment (``--oracle-python``), never voxvec's.
The default is every registered architecture, the default pretrained model when this voxvec has
one, and Resemblyzer.

Example (the command behind BENCHMARKS.md)::

    python bench/embed_speed.py --n-files 100 --threads 2 --json bench/results/speed.json
    python bench/embed_speed.py --n-files 100 --threads 2 \
        --systems campplus-zh-en campplus-reference voxvec-default resemblyzer \
        --json bench/results/speed-campplus.json
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "EMBED_SPEED_RESULT "
REFERENCE_CAMPPLUS = "campplus-reference"

logger = logging.getLogger("bench.embed_speed")


def _rss_mb() -> float:
    """Current resident memory of this process in MiB (Linux /proc; else the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def pick_files(data: Path, corpus: str, n_files: int) -> list[Path]:
    """``n_files`` files spread evenly over the corpus manifest (deterministic)."""
    manifest = data / corpus / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"no manifest at {manifest} (see --data and --corpus)")
    with open(manifest, newline="") as f:
        paths = [data / corpus / row["path"] for row in csv.DictReader(f)]
    if n_files >= len(paths):
        return paths
    step = len(paths) / n_files
    return [paths[int(i * step)] for i in range(n_files)]


def default_systems() -> list[str]:
    """Every registered architecture, the default pretrained model if any, and Resemblyzer."""
    import voxvec
    from voxvec.models import list_models
    from voxvec.weights import DEFAULT_MODEL

    systems = list_models()
    if DEFAULT_MODEL in voxvec.available_models():
        systems.append(DEFAULT_MODEL)
    return [*systems, "resemblyzer"]


# ------------------------------------------------------------------------------- worker side


Runner = Callable[[list[Path]], int]
"""Embeds a list of files end to end; returns the number of embeddings."""


def architecture_spec(system: str) -> tuple[str, dict[str, object]]:
    """``"ecapa:mfa_channels=512,dilations=[2,3]"`` -> ``("ecapa", {"mfa_channels": 512, ...})``.

    The fields are ``voxvec train``'s ``key=value`` overrides (omegaconf's dotlist: numbers,
    lists in brackets), separated by the commas that start a new ``field=``.
    """
    from omegaconf import OmegaConf

    name, _, fields = system.partition(":")
    items = re.split(r",(?=\s*\w+=)", fields) if fields else []
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ValueError(f"{system!r}: expected field=value, got {bad}")
    overrides = OmegaConf.to_container(OmegaConf.from_dotlist([i.strip() for i in items]))
    return name, {str(k): v for k, v in overrides.items()}  # type: ignore[union-attr]


def _voxvec_runner(system: str, device: str, batch_size: int, precision: str) -> tuple[Runner, str]:
    """The runner and the precision the Embedder resolved (``auto`` -> float32/bfloat16)."""
    import voxvec
    from voxvec.inference import Embedder
    from voxvec.models import create_model, list_models

    if system.partition(":")[0] in list_models():  # not a bundle path that holds a colon
        arch, overrides = architecture_spec(system)
        model = create_model(arch, **overrides)
        embedder = Embedder(model, device=device, precision=precision)
    else:
        embedder = voxvec.load(system, device=device, precision=precision)

    def run(paths: list[Path]) -> int:
        return len(embedder.embed(paths, batch_size=batch_size))

    return run, embedder.precision


def _resemblyzer_runner(device: str) -> Runner:
    import numpy as np
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder(device, verbose=False)

    def run(paths: list[Path]) -> int:
        embeddings = [encoder.embed_utterance(preprocess_wav(path)) for path in paths]
        return len(np.stack(embeddings))

    return run


def worker(
    system: str, files: list[Path], batch_size: int, threads: int, device: str, precision: str
) -> dict:
    """Measure one system in this process; returns the result row."""
    import soundfile as sf
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    if system == "resemblyzer":
        run, resolved = _resemblyzer_runner(device), "float32"
    elif system == REFERENCE_CAMPPLUS:
        from campplus_reference import make_runner  # bench/, the script's own folder

        run, resolved = make_runner(), "float32"
    else:
        run, resolved = _voxvec_runner(system, device, batch_size, precision)
    run(files[:1])  # warm-up: lazy initialisation, first kernels
    load_s = time.perf_counter() - start
    rss_load = _rss_mb()
    audio_s = sum(sf.info(str(p)).duration for p in files)
    start = time.perf_counter()
    n = run(files)
    wall_s = time.perf_counter() - start
    if n != len(files):
        raise RuntimeError(f"{system}: {n} embeddings for {len(files)} files")
    return {
        "system": system,
        "n_files": len(files),
        "audio_s": round(audio_s, 2),
        "wall_s": round(wall_s, 3),
        "throughput": round(audio_s / wall_s, 2),
        "load_s": round(load_s, 2),
        "rss_load_mb": round(rss_load, 1),
        "rss_peak_mb": round(_peak_rss_mb(), 1),
        "threads": threads,
        "batch_size": None if system in ("resemblyzer", REFERENCE_CAMPPLUS) else batch_size,
        "device": device,
        "precision": resolved,
    }


# ------------------------------------------------------------------------------- parent side


def measure(
    system: str,
    files_json: Path,
    batch_size: int,
    threads: int,
    device: str,
    precision: str,
    oracle_python: Path,
) -> dict | None:
    """Run :func:`worker` for ``system`` in a fresh interpreter; None when it failed.

    ``campplus-reference`` runs in ``oracle_python``, every other system in this interpreter.
    """
    if system == REFERENCE_CAMPPLUS and not oracle_python.is_file():
        logger.error(
            "%s: no interpreter at %s (set up its venv as bench/campplus_reference.py says, or "
            "pass --oracle-python)",
            system,
            oracle_python,
        )
        return None
    cmd = [
        str(oracle_python) if system == REFERENCE_CAMPPLUS else sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        system,
        "--files-json",
        str(files_json),
        "--batch-size",
        str(batch_size),
        "--threads",
        str(threads),
        "--device",
        device,
        "--precision",
        precision,
    ]
    path = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    logger.error("%s failed (exit %d):\n%s", system, proc.returncode, proc.stderr[-2000:])
    return None


def markdown_table(rows: Sequence[dict]) -> str:
    """The results as a markdown table."""
    lines = [
        "| system | precision | files | audio s | wall s | throughput (audio s / wall s) "
        "| load s | RSS load MiB | RSS peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['precision']} | {r['n_files']} "
            f"| {r['audio_s']:.1f} | {r['wall_s']:.2f} "
            f"| {r['throughput']:.1f} | {r['load_s']:.1f} | {r['rss_load_mb']:.0f} "
            f"| {r['rss_peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = os.environ.get("VOXVEC_DATA", str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=Path(default_data), help="../shared/data")
    parser.add_argument("--corpus", default="speechocean762", help="folder under --data")
    parser.add_argument("--n-files", type=int, default=50)
    parser.add_argument(
        "--systems",
        nargs="+",
        default=None,
        help="architectures, pretrained names or bundle paths, and/or 'resemblyzer' "
        "(default: every architecture, the default model if any, resemblyzer)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per system")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision",
        default="auto",
        # Checked by the voxvec worker's Embedder: importing voxvec.runtime.PRECISIONS here would
        # load torch (and its memory) into the Resemblyzer worker too.
        help="voxvec Embedder precision, one of voxvec.runtime.PRECISIONS (auto: bfloat16 where "
        "the CPU/GPU has it natively)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    default_oracle = os.environ.get(
        "VOXVEC_ORACLE_PYTHON", str(REPO_ROOT.parent / "venv-oracle" / "bin" / "python")
    )
    parser.add_argument(
        "--oracle-python",
        type=Path,
        default=Path(default_oracle),
        help=f"interpreter of the venv that runs {REFERENCE_CAMPPLUS} "
        "(default $VOXVEC_ORACLE_PYTHON or ../venv-oracle/bin/python)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--files-json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.worker is not None:
        files = [Path(p) for p in json.loads(args.files_json.read_text())]
        row = worker(args.worker, files, args.batch_size, args.threads, args.device, args.precision)
        print(RESULT_PREFIX + json.dumps(row), flush=True)
        return 0

    files = pick_files(args.data, args.corpus, args.n_files)
    systems = args.systems or default_systems()
    logger.info("%d files from %s; systems: %s", len(files), args.corpus, ", ".join(systems))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        files_json = Path(tmp) / "files.json"
        files_json.write_text(json.dumps([str(p) for p in files]))
        for system in systems:
            result = measure(
                system,
                files_json,
                args.batch_size,
                args.threads,
                args.device,
                args.precision,
                args.oracle_python,
            )
            if result is not None:
                logger.info(
                    "%s: %.1f x real time, peak %.0f MiB",
                    system,
                    result["throughput"],
                    result["rss_peak_mb"],
                )
                rows.append(result)
    print(markdown_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "corpus": args.corpus,
            "n_files": len(files),
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
            "python": platform.python_version(),
        }
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0 if len(rows) == len(systems) else 1


if __name__ == "__main__":
    sys.exit(main())
