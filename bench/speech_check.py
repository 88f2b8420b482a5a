"""The speech check (:func:`voxvec.audio.vad.non_speech_reason`) over every audio file of
``../shared/data`` (or ``--data``): how many files of real speech it lets through.

Each file under a corpus's ``audio/`` folder is decoded at ``--rate`` (16 kHz, the default
model's rate, as the Embedder decodes it) and checked; the script prints, per corpus, the files
that pass and each refused file with its reason. The check must refuse no real speech: every
change to it is measured with this script. The background-noise recordings of ``noise/`` are
checked too and listed apart (not speech: the check may refuse them, and refuses the steady ones).

Example (the command behind the numbers in the check's docstring)::

    OMP_NUM_THREADS=1 nice -n 19 python bench/speech_check.py --json bench/results/speech-check.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from voxvec.audio.io import AudioError, load
from voxvec.audio.vad import non_speech_reason

REPO_ROOT = Path(__file__).resolve().parents[1]
AUDIO_SUFFIXES = {".flac", ".wav", ".ogg", ".opus", ".mp3"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="the data folder (default: $VOXVEC_DATA or ../shared/data)")
    parser.add_argument("--rate", type=int, default=16000, help="decode at this rate (Hz)")
    parser.add_argument("--json", help="write the counts and refused files here")
    args = parser.parse_args()
    root = Path(args.data or os.environ.get("VOXVEC_DATA", REPO_ROOT.parent / "shared" / "data"))
    corpora = sorted(p.parent for p in root.glob("*/audio") if p.is_dir())
    if not corpora:
        sys.exit(f"no corpus folders (*/audio) found in {root} (give --data or set VOXVEC_DATA)")
    start = time.perf_counter()
    counts: dict[str, dict[str, int]] = {}
    refused: list[dict[str, str]] = []
    noise = sorted(p for p in (root / "noise").glob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    for corpus in corpora:
        files = sorted(
            p for p in (corpus / "audio").rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
        )
        passed = 0
        for path in files:
            try:
                reason = non_speech_reason(load(path, args.rate), args.rate)
            except AudioError as e:
                reason = f"unreadable: {e}"
            if reason is None:
                passed += 1
            else:
                refused.append({"path": str(path.relative_to(root)), "reason": reason})
                print(f"refused {path.relative_to(root)}: {reason}", flush=True)
        counts[corpus.name] = {"files": len(files), "passed": passed}
        print(f"{corpus.name}: {passed} of {len(files)} pass", flush=True)
    n_files = sum(c["files"] for c in counts.values())
    n_passed = sum(c["passed"] for c in counts.values())
    wall_s = time.perf_counter() - start
    print(f"all speech: {n_passed} of {n_files} pass ({wall_s:.0f} s)")
    noise_reasons = {p.name: non_speech_reason(load(p, args.rate), args.rate) for p in noise}
    for name, reason in noise_reasons.items():
        print(f"noise/{name}: {'passes' if reason is None else 'refused: ' + reason}")
    if args.json:
        result = {
            "rate": args.rate,
            "counts": counts,
            "refused": refused,
            "noise": noise_reasons,
            "wall_s": wall_s,
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
