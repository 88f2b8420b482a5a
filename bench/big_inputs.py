"""Valid but extreme input through ``voxvec embed``: a 2-hour recording and 5,000 tiny files.

Both are built from real speech in ``../shared/data`` (or ``--data``) inside a temporary folder
that is removed afterwards (nothing is written into the repository but the ``--json`` result):

- ``long``: utterances of the LibriSpeech sample concatenated, block by block, into one
  ``--hours`` long FLAC, 16 kHz mono, and the same audio as a 48 kHz stereo FLAC (6x the
  samples to decode, downmix and resample). Each is embedded by ``voxvec embed FILE`` (20 s
  windows, the default), and the 16 kHz one also over its first ``--excerpt-min`` minutes, to
  show how peak memory grows with the length, and with ``--min-speech-s 0`` (no speech check);
- ``tiny``: ``--n-files`` cuts of 0.2-1 s from speechocean762 and LibriSpeech utterances, as
  FLAC, WAV and Ogg, with ``--n-bad`` unreadable files mixed in (random bytes, a truncated FLAC,
  zero bytes, text named .mp3, a WAV header with no data), embedded by one ``voxvec embed
  FOLDER`` call, with ``--min-speech-s 0`` (so every readable cut must embed) and with the
  defaults (0.5 s of speech and the speech check).

Each run is one ``voxvec embed`` process under ``/usr/bin/time -v``: wall time and its peak
resident memory (RSS). The tiny runs check that the bad files are exactly those reported in
``OUT.failed.csv`` and that every other file has its row in the output.

Example (the command behind BENCHMARKS.md)::

    OMP_NUM_THREADS=1 nice -n 19 python bench/big_inputs.py --threads 1 \
        --json bench/results/big-inputs.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO_ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
NO_CHECK = ["--min-speech-s", "0"]  # also skips the speech check (vad.non_speech_reason)


def _data_root(given: str | None) -> Path:
    root = Path(given or os.environ.get("VOXVEC_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (root / "librispeech-train-clean-100-sample" / "manifest.csv").is_file():
        sys.exit(f"real speech not found at {root} (give --data or set VOXVEC_DATA)")
    return root


def _manifest(root: Path, corpus: str) -> list[Path]:
    with open(root / corpus / "manifest.csv", newline="") as f:
        return [root / corpus / row["path"] for row in csv.DictReader(f)]


def run_embed(args: list[str], threads: int) -> dict:
    """``voxvec embed ARGS`` under ``/usr/bin/time -v``: wall seconds, peak RSS, exit code."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "voxvec", "embed", *args]
    command += ["--threads", str(threads), "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    peak_kb = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if peak_kb is None:
        raise RuntimeError(f"no /usr/bin/time report: {done.stderr[-2000:]}")
    return {
        "command": "voxvec embed " + " ".join(args),
        "exit_code": done.returncode,
        "wall_s": round(wall_s, 2),
        "peak_rss_mb": round(int(peak_kb.group(1)) / 1024, 1),
        "stderr_tail": done.stderr.split("\tCommand being timed")[0][-1500:],
    }


# --------------------------------------------------------------------------- long


def write_long(root: Path, out_16k: Path, out_48k: Path, hours: float) -> float:
    """Concatenate the LibriSpeech utterances (cycling) into two FLACs, a block at a time."""
    files = _manifest(root, "librispeech-train-clean-100-sample")
    target = int(hours * 3600 * RATE)
    written = 0
    with (
        sf.SoundFile(out_16k, "w", RATE, 1, "PCM_16", format="FLAC") as mono,
        sf.SoundFile(out_48k, "w", 48000, 2, "PCM_16", format="FLAC") as stereo,
    ):
        while written < target:
            for path in files:
                wav, rate = sf.read(path, dtype="float32")
                assert rate == RATE and wav.ndim == 1
                wav = wav[: target - written]
                mono.write(wav)
                up = soxr.resample(wav, RATE, 48000).astype(np.float32)
                stereo.write(np.stack([up, 0.8 * up], axis=1))
                written += len(wav)
                if written >= target:
                    break
    return written / RATE


def bench_long(root: Path, work: Path, args: argparse.Namespace) -> dict:
    out_16k, out_48k = work / "long-16k.flac", work / "long-48k-stereo.flac"
    started = time.perf_counter()
    duration_s = write_long(root, out_16k, out_48k, args.hours)
    excerpt = work / "excerpt.flac"
    sf.write(excerpt, sf.read(out_16k, frames=int(args.excerpt_min * 60 * RATE))[0], RATE)
    result: dict = {
        "duration_s": duration_s,
        "build_s": round(time.perf_counter() - started, 1),
        "decoded_16k_mono_mb": round(duration_s * RATE * 4 / 2**20, 1),
        "decoded_48k_stereo_mb": round(duration_s * 48000 * 2 * 4 / 2**20, 1),
        "runs": [],
    }
    hours = f"{args.hours:g} h"
    for name, path, seconds, extra in [
        (f"{args.excerpt_min:g} min, 16 kHz mono FLAC", excerpt, args.excerpt_min * 60, []),
        (f"{hours}, 16 kHz mono FLAC", out_16k, duration_s, []),
        (f"{hours}, 48 kHz stereo FLAC", out_48k, duration_s, []),
        (f"{hours}, 16 kHz mono FLAC, no speech check", out_16k, duration_s, NO_CHECK),
    ]:
        out = work / f"{path.stem}-{len(result['runs'])}.npz"
        run = run_embed([str(path), "--out", str(out), *extra], args.threads)
        run["input"] = name
        run["file_mb"] = round(path.stat().st_size / 2**20, 1)
        run["real_time_factor"] = round(run["wall_s"] / seconds, 4)
        with np.load(out) as saved:
            vec = saved["embeddings"]
            run["embedding_norm"] = float(np.linalg.norm(vec[0])) if len(vec) == 1 else None
        result["runs"].append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "stderr_tail"}), flush=True)
    return result


# --------------------------------------------------------------------------- tiny


BAD_FILES = {
    "random.wav": lambda rng, good: rng.bytes(3000),
    "truncated.flac": lambda rng, good: good[: len(good) // 3],
    "empty.ogg": lambda rng, good: b"",
    "notes.mp3": lambda rng, good: b"these are not audio samples\n" * 40,
    "no-data.wav": lambda rng, good: good[:44] if good[:4] == b"RIFF" else b"RIFF" + bytes(40),
}


def write_tiny(root: Path, folder: Path, n_files: int, n_bad: int, seed: int) -> set[str]:
    """``n_files`` real-speech cuts of 0.2-1 s and ``n_bad`` unreadable files; returns the names
    of the bad ones."""
    rng = np.random.default_rng(seed)
    sources = _manifest(root, "speechocean762") + _manifest(
        root, "librispeech-train-clean-100-sample"
    )
    picks = rng.choice(len(sources), size=n_files)
    formats = [("flac", "FLAC", "PCM_16"), ("wav", "WAV", "PCM_16"), ("ogg", "OGG", "VORBIS")]
    decoded: dict[int, np.ndarray] = {}
    for i, pick in enumerate(picks):
        if pick not in decoded:
            decoded[pick] = sf.read(sources[pick], dtype="float32")[0]
        wav = decoded[pick]
        length = int(rng.uniform(0.2, 1.0) * RATE)
        start = int(rng.integers(0, max(1, len(wav) - length)))
        ext, fmt, subtype = formats[i % len(formats)]
        sub = folder / f"{i // 500:02d}"
        sub.mkdir(exist_ok=True)
        sf.write(
            sub / f"cut-{i:05d}.{ext}",
            wav[start : start + length],
            RATE,
            format=fmt,
            subtype=subtype,
        )
    good = (folder / "00" / "cut-00000.flac").read_bytes()
    bad: set[str] = set()
    names = sorted(BAD_FILES)
    subs = sorted(folder.iterdir())
    for k in range(n_bad):
        name = f"bad-{k:03d}-{names[k % len(names)]}"
        path = subs[k % len(subs)] / name
        path.write_bytes(BAD_FILES[names[k % len(names)]](rng, good))
        bad.add(str(path))
    return bad


def check_tiny(out: Path, bad: set[str], n_files: int) -> dict:
    """Which files the run reported failed (by reason) and whether every other file embedded."""
    failed_csv = Path(f"{out}.failed.csv")
    failed: dict[str, str] = {}
    if failed_csv.exists():
        with open(failed_csv, newline="") as f:
            failed = {row["path"]: row["reason"] for row in csv.DictReader(f)}
    with np.load(out) as saved:
        ids = set(saved["ids"].tolist())
        norms = np.linalg.norm(saved["embeddings"], axis=1)
    reasons = Counter(_reason_kind(reason) for reason in failed.values())
    return {
        "embedded": len(ids),
        "failed": len(failed),
        "failed_by_reason": dict(reasons.most_common()),
        "bad_files_all_reported": bad <= set(failed),
        "good_files_failed": len(set(failed) - bad),
        "every_file_accounted_for": len(ids) + len(failed) == n_files + len(bad),
        "all_norms_1": bool(np.allclose(norms, 1.0, atol=1e-4)),
    }


def _reason_kind(reason: str) -> str:
    for kind in ("cannot decode", "zero-length", "no speech", "below min_speech_s", "shorter"):
        if kind in reason:
            return kind
    return reason[:60]


def bench_tiny(root: Path, work: Path, args: argparse.Namespace) -> dict:
    folder = work / "tiny"
    folder.mkdir()
    started = time.perf_counter()
    bad = write_tiny(root, folder, args.n_files, args.n_bad, args.seed)
    result: dict = {
        "n_files": args.n_files,
        "n_bad": args.n_bad,
        "build_s": round(time.perf_counter() - started, 1),
        "runs": [],
    }
    for name, extra in [("min_speech_s=0", NO_CHECK), ("defaults", [])]:
        out = work / f"tiny-{len(result['runs'])}.npz"
        run = run_embed([str(folder), "--out", str(out), *extra], args.threads)
        run["options"] = name
        run["files_per_s"] = round((args.n_files + args.n_bad) / run["wall_s"], 1)
        run.update(check_tiny(out, bad, args.n_files))
        result["runs"].append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "stderr_tail"}), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["long", "tiny"], help="run one part (default: both)")
    parser.add_argument("--data", help="../shared/data (default: $VOXVEC_DATA or that)")
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--excerpt-min", type=float, default=15.0)
    parser.add_argument("--n-files", type=int, default=5000)
    parser.add_argument("--n-bad", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", help="folder for the temporary audio (default: the system's)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    root = _data_root(args.data)
    results: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "python": platform.python_version(),
        "threads": args.threads,
    }
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="voxvec-big-") as tmp:
        for which in [args.only] if args.only else ["long", "tiny"]:
            results[which] = (bench_long if which == "long" else bench_tiny)(root, Path(tmp), args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
