"""Forward-pass time of a model in float32 and under bfloat16 autocast, interleaved.

On a shared (virtual) machine the speed drifts by 10-20% within minutes, so two separate runs
cannot tell a 10% difference apart. This script loads one model once and alternates the two
precisions call by call on the same batch of real speech (the first ``--seconds`` of
``--batch`` files of one corpus in ../shared/data, decoded at the model's rate), then reports
the median and quartiles of each, what ``precision="auto"`` picks on this CPU, and the CPU's
AMX / AVX512-BF16 flags. Decoding and windowing are left out: they do not depend on the
precision.

Example (the command behind BENCHMARKS.md, "Precision")::

    python bench/precision.py --model voxvec-default --threads 2 --json bench/results/precision.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from voxvec.audio.io import load
from voxvec.runtime import resolve_precision
from voxvec.weights import load_model

REPO_ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("float32", "bfloat16")


def measure(
    model: torch.nn.Module, wav: torch.Tensor, lengths: torch.Tensor, repeats: int
) -> dict[str, list[float]]:
    """Seconds per forward pass of each precision, alternated call by call (after warm-up)."""
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for i in range(repeats + 2):
        for precision in PRECISIONS:
            autocast = torch.autocast("cpu", torch.bfloat16, enabled=precision == "bfloat16")
            with torch.inference_mode(), autocast:
                start = time.perf_counter()
                model(wav, lengths)
                if i >= 2:
                    times[precision].append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = os.environ.get("VOXVEC_DATA", str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=Path(default_data), help="../shared/data")
    parser.add_argument("--corpus", default="librispeech-train-clean-100-sample")
    parser.add_argument("--model", default="voxvec-default", help="name or path")
    parser.add_argument("--batch", type=int, default=4, help="files in the batch")
    parser.add_argument("--seconds", type=float, default=14.0, help="audio per file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, _ = load_model(args.model)
    files = sorted((args.data / args.corpus).rglob("*.flac"))[: args.batch]
    if len(files) < args.batch:
        parser.error(f"{args.data / args.corpus} has fewer than {args.batch} FLAC files")
    n = int(args.seconds * model.sample_rate)
    waves = [torch.from_numpy(load(f, model.sample_rate)[:n]) for f in files]
    lengths = torch.tensor([len(w) for w in waves])
    wav = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    times = measure(model, wav, lengths, args.repeats)

    def quartiles(values: list[float]) -> list[float]:
        ordered = sorted(values)
        return [round(1000 * ordered[int(q * (len(ordered) - 1))], 2) for q in (0.25, 0.5, 0.75)]

    report = {
        "model": args.model,
        "threads": args.threads,
        "batch": f"{args.batch} x {lengths.max().item() / model.sample_rate:.1f} s",
        "cpu": {
            "machine": platform.machine(),
            "amx": bool(torch.cpu._is_amx_tile_supported()),
            "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        },
        "auto_picks": resolve_precision("auto", torch.device("cpu"), model),
        "ms_q25_median_q75": {p: quartiles(t) for p, t in times.items()},
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(report, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
