"""Training throughput of every registered architecture: seconds of audio trained on per second.

For each model (its default config, untrained) this times complete optimiser steps exactly as
``voxvec train`` runs them (:class:`voxvec.train.step.TrainStep`: the model with its own front-end
on the waveforms, GE2E or AAM loss, backward, gradient clipping, AdamW) on one fixed batch of
N speakers x M crops already in memory, so the number is the model's training speed, not the
decoder's. The crops are real speech from ../shared/data (or ``$VOXVEC_DATA``) when it is there,
otherwise noise (the cost does not depend on the content). One warm-up step is excluded.

Example (the command behind BENCHMARKS.md)::

    python bench/train_speed.py --steps 3 --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from voxvec.audio.io import load
from voxvec.audio.windows import pad_batch
from voxvec.data.manifest import group_by_speaker, read_manifest
from voxvec.losses.combined import LOSSES, LossConfig, SpeakerLoss
from voxvec.models import create_model, list_models
from voxvec.train.step import PRECISIONS, TrainStep, resolve_precision

REPO_ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench.train_speed")


def speech_batch(
    data: Path, sample_rate: int, n_speakers: int, n_utterances: int, crop_s: float
) -> torch.Tensor:
    """``(N * M, crop)`` speaker-major crops of speechocean762 files, or noise without the data."""
    n = round(crop_s * sample_rate)
    manifest = data / "speechocean762" / "manifest.csv"
    if not manifest.is_file():
        logger.warning("no real speech at %s: timing on noise", manifest)
        gen = torch.Generator().manual_seed(0)
        return 0.1 * torch.randn(n_speakers * n_utterances, n, generator=gen)
    groups = group_by_speaker(read_manifest(manifest))
    crops = []
    for speaker in sorted(groups)[:n_speakers]:
        for item in groups[speaker][:n_utterances]:
            wav = torch.from_numpy(load(item.path, sample_rate))
            crops.append(wav.repeat(-(-n // wav.shape[0]))[:n])
    return pad_batch(crops)[0]


def time_model(name: str, args: argparse.Namespace) -> dict[str, object]:
    """Seconds per step and audio seconds per second of one architecture."""
    torch.manual_seed(0)
    model = create_model(name)
    n_classes = 1000
    loss = SpeakerLoss(LossConfig(kind=args.loss), model.embed_dim, n_classes)
    precision = resolve_precision(args.precision, torch.device(args.device))
    step = TrainStep(model, loss, precision).to(args.device).train()
    optimizer = torch.optim.AdamW(step.parameters(), lr=1e-4)
    wav = speech_batch(
        args.data, model.sample_rate, args.n_speakers, args.n_utterances, args.crop_s
    )
    wav = wav.to(args.device)
    lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=args.device)
    labels = torch.arange(args.n_speakers, device=args.device).repeat_interleave(args.n_utterances)

    def one_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        value, _ = step(wav, lengths, labels, args.n_speakers)
        value.backward()
        torch.nn.utils.clip_grad_norm_(step.parameters(), 1.0)
        optimizer.step()

    for _ in range(args.warmup):
        one_step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(args.steps):
        one_step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - tic) / args.steps
    audio_s = wav.shape[0] * wav.shape[1] / model.sample_rate
    return {
        "model": name,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "input": f"{model.frontend.kind} {model.sample_rate} Hz",
        "batch": f"{args.n_speakers} x {args.n_utterances} x {args.crop_s:g} s",
        "precision": precision,
        "step_s": seconds,
        "audio_s_per_s": audio_s / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=None, help="default: every registered one")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: 1)")
    parser.add_argument("--n-speakers", type=int, default=8)
    parser.add_argument("--n-utterances", type=int, default=4)
    parser.add_argument("--crop-s", type=float, default=2.0, help="crop length in seconds")
    parser.add_argument("--loss", default="ge2e", choices=LOSSES)
    parser.add_argument(
        "--precision", default="float32", choices=PRECISIONS, help="auto: bfloat16 where native"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("VOXVEC_DATA", REPO_ROOT.parent / "shared" / "data")),
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = [time_model(name, args) for name in args.models or list_models()]
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"{datetime.date.today().isoformat()}"
    )
    print(f"Training throughput ({args.loss}, {args.device}; {machine})\n")
    print("| model | params | input | batch | precision | s / step | audio-s / s |")
    print("|---|---:|---|---|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['params_m']:.2f} M | {r['input']} | {r['batch']} | "
            f"{r['precision']} | {r['step_s']:.2f} | {r['audio_s_per_s']:.1f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
