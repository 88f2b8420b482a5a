"""Effect of the resampler on the GRU model's Tacotron log-mels and embeddings (issue 8).

The original project loaded audio for its 22.05 kHz GRU model with ``librosa.load(path,
sr=22050)``. Before librosa 0.10 (the original dates from 2020-2021) that resampled with resampy's
``kaiser_best`` filter; librosa 0.10 and later use soxr HQ, as voxvec does
(:func:`voxvec.audio.io.resample`). This script measures what the difference costs.

Each file is decoded once (``voxvec.audio.io.read``, peak-scaled as ``io.load`` does) and cut to
its first ``--max-s`` seconds at its native rate. That same waveform is then resampled to
22050 Hz two ways:

- ``soxr``: voxvec's path (``voxvec.audio.io.resample``, soxr HQ);
- ``kaiser_best``: the original's resampler (``librosa.resample(res_type="kaiser_best")``, which
  calls resampy; as ``librosa.load`` did before 0.10).

Both are clipped to [-1, 1], cut to their common length, and turned into Tacotron log-mels with
``voxvec.audio.features.log_mel(..., TACOTRON_22K)``. As a check, librosa's current default
(``soxr_hq``) is also compared with voxvec's path; it should be identical.

Reported:

- waveform SNR between the two resampled signals;
- absolute difference of the log-mel values (natural log; the GRU divides its input by 5.76),
  max, 99th percentile and mean, per band range (centre frequency < 1 kHz, 1-4 kHz, 4-7 kHz,
  7-8 kHz; and relative to the input's Nyquist frequency: below 0.85 x Nyquist, the filter edge
  0.85-1 x Nyquist, above Nyquist) and per band (with the signed mean), for 16 kHz and 8 kHz
  inputs apart, and again without each file's first and last 2 frames (where the filters'
  start-up differs);
- GRU embeddings of both versions: cosine similarity between them (min / mean over files), for
  the model given with ``--model`` (a trained bundle) and for the untrained GRU at the trainer's
  seeded initialisation. As a scale reference: the mean cosine of two different utterances of
  one speaker and of two different speakers (soxr versions), so that ``1 - cos`` of the
  resampler can be read against ``1 - cos`` of a change of utterance; the trial score shift
  ``|cos(a, b) - cos(a, b')|`` over all pairs, b' being b resampled the original's way; and, to
  attribute the change, the cosine left when only the bands at the filter edge and above
  (centres >= 0.85 x the input's Nyquist) of the kaiser_best log-mels are replaced by soxr's.

The files: speechocean762 speakers of the official test split (``--per-speaker`` files each),
LibriSpeech train-clean-100 sample files (16 kHz) and free-spoken-digits (8 kHz; two different
digits per speaker), chosen deterministically. Everything runs on one CPU thread.

Run (from the repository root; resampy is a benchmark-only dependency)::

    pip install resampy
    OMP_NUM_THREADS=1 nice -n 19 python bench/resampler_effect.py \
        --model /tmp/gru-trained.safetensors \
        --json bench/results/resampler-effect.json --md bench/results/resampler-effect.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxvec.audio.features import TACOTRON_22K, log_mel
from voxvec.audio.io import read, resample
from voxvec.models import SpeakerEncoder, create_model
from voxvec.weights import load_model

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_SR = TACOTRON_22K.sample_rate
# Band ranges by filter centre frequency (Hz): [lo, hi).
RANGES = {
    "low <1k": (0.0, 1000.0),
    "mid 1-4k": (1000.0, 4000.0),
    "high 4-7k": (4000.0, 7000.0),
    "top 7-8k": (7000.0, 8001.0),
}
EDGE_FRAMES = 2  # frames at each end of a file, where the filters' start-up differs
EDGE = 0.85  # bands with centres in [EDGE, 1) x the input's Nyquist frequency: the filter edge


@dataclass
class Item:
    """One benchmark file."""

    corpus: str
    speaker: str
    path: Path


def _manifest(folder: Path) -> list[tuple[str, str]]:
    with open(folder / "manifest.csv", newline="") as f:
        return [(row["path"], row["speaker"]) for row in csv.DictReader(f)]


def select_files(
    data: Path, n_so_speakers: int, per_speaker: int, n_libri: int, n_fsdd_speakers: int
) -> list[Item]:
    """A deterministic choice of files from three corpora (see the module docstring)."""
    items: list[Item] = []
    so = data / "speechocean762"
    with open(so / "speakers.tsv", newline="") as f:
        test = sorted(
            r["speaker"] for r in csv.DictReader(f, delimiter="\t") if r["official_split"] == "test"
        )
    by_speaker: dict[str, list[str]] = {}
    for path, speaker in _manifest(so):
        by_speaker.setdefault(speaker, []).append(path)
    step = max(1, len(test) // n_so_speakers)
    for speaker in test[::step][:n_so_speakers]:
        for path in sorted(by_speaker[speaker])[:per_speaker]:
            items.append(Item("speechocean762", speaker, so / path))
    ls = data / "librispeech-train-clean-100-sample"
    rows = sorted(_manifest(ls), key=lambda r: r[1])
    step = max(1, len(rows) // n_libri)
    for path, speaker in rows[::step][:n_libri]:
        items.append(Item("librispeech", speaker, ls / path))
    fsdd = data / "free-spoken-digits"
    by_speaker = {}
    for path, speaker in _manifest(fsdd):
        by_speaker.setdefault(speaker, []).append(path)
    for speaker in sorted(by_speaker)[:n_fsdd_speakers]:
        for digit in ("3", "7")[:per_speaker]:
            path = min(p for p in by_speaker[speaker] if Path(p).name.startswith(f"{digit}_"))
            items.append(Item("free-spoken-digits", speaker, fsdd / path))
    return items


def resample_kaiser_best(wav: np.ndarray, sr: int) -> np.ndarray:
    """The original's path: librosa.load(sr=22050) before librosa 0.10 (resampy kaiser_best)."""
    import librosa

    out = librosa.resample(wav, orig_sr=sr, target_sr=TARGET_SR, res_type="kaiser_best")
    return np.asarray(out, dtype=np.float32)


def resample_librosa_soxr(wav: np.ndarray, sr: int) -> np.ndarray:
    """librosa 0.10+'s default resampler (soxr_hq): the check that it equals voxvec's path."""
    import librosa

    out = librosa.resample(wav, orig_sr=sr, target_sr=TARGET_SR, res_type="soxr_hq")
    return np.asarray(out, dtype=np.float32)


def mels(*waves: np.ndarray) -> list[torch.Tensor]:
    """Tacotron log-mels (frames, n_mels) of waveforms cut to their common length."""
    n = min(len(w) for w in waves)
    out = []
    for w in waves:
        w = np.clip(w[:n], -1.0, 1.0)
        feats, _ = log_mel(torch.from_numpy(np.ascontiguousarray(w)), TACOTRON_22K)
        out.append(feats[0])
    return out


def band_centres() -> np.ndarray:
    """Centre frequency (Hz) of each TACOTRON_22K mel band (Slaney scale)."""
    import librosa

    c = TACOTRON_22K
    edges = librosa.mel_frequencies(c.n_mels + 2, fmin=c.f_min, fmax=c.f_max, htk=False)
    return np.asarray(edges[1:-1])


def snr_db(ref: np.ndarray, other: np.ndarray) -> float:
    n = min(len(ref), len(other))
    err = float(np.sum((ref[:n].astype(np.float64) - other[:n]) ** 2))
    sig = float(np.sum(ref[:n].astype(np.float64) ** 2))
    return float("inf") if err == 0 else 10.0 * np.log10(sig / err)


def embed(model: SpeakerEncoder, feats: torch.Tensor) -> np.ndarray:
    """The model's embedding of one utterance's log-mels ``(frames, n_mels)``."""
    with torch.inference_mode():
        lengths = torch.tensor([feats.shape[0]])
        return model.encode(feats[None], lengths)[0].float().numpy()


def embed_waveform(model: SpeakerEncoder, wav: np.ndarray) -> np.ndarray:
    """The model's embedding of a waveform through its own front-end (the check of ``embed``)."""
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(wav))[None])[0].float().numpy()


def diff_stats(diffs: list[np.ndarray], centres: np.ndarray, nyquist: float) -> dict[str, Any]:
    """Statistics of log-mel differences (soxr minus kaiser_best), each ``(frames, bands)``.

    Absolute differences: max / p99 / mean per fixed band range, per range relative to the
    input's Nyquist frequency (``nyquist``) and per band; the signed mean per band says which
    resampler leaves more energy there.
    """
    if not diffs:
        return {}
    signed = np.concatenate(diffs, axis=0)  # (all frames, n_mels)
    d = np.abs(signed)
    out: dict[str, Any] = {"frames": int(d.shape[0]), "all": _summary(d)}
    ranges = {
        **RANGES,
        f"below {EDGE * nyquist:g} Hz": (0.0, EDGE * nyquist),
        f"edge {EDGE * nyquist:g}-{nyquist:g} Hz": (EDGE * nyquist, nyquist),
        f"above input Nyquist {nyquist:g} Hz": (nyquist, 1e9),
    }
    for name, (lo, hi) in ranges.items():
        sel = (centres >= lo) & (centres < hi)
        if sel.any():
            out[name] = {**_summary(d[:, sel]), "bands": [int(i) for i in np.flatnonzero(sel)]}
    out["per_band"] = {
        "max": [round(float(v), 5) for v in d.max(0)],
        "p99": [round(float(v), 5) for v in np.percentile(d, 99, axis=0)],
        "mean": [round(float(v), 6) for v in d.mean(0)],
        "signed_mean_soxr_minus_kaiser_best": [round(float(v), 6) for v in signed.mean(0)],
    }
    return out


def _summary(d: np.ndarray) -> dict[str, float]:
    return {
        "max": float(d.max()),
        "p99": float(np.percentile(d, 99)),
        "mean": float(d.mean()),
    }


def pair_cosines(embs: list[np.ndarray], items: list[Item]) -> dict[str, float]:
    """Mean cosine of same-speaker (different utterances) and different-speaker pairs."""
    same, diff = [], []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            cos = float(np.dot(embs[i], embs[j]))
            (same if items[i].speaker == items[j].speaker else diff).append(cos)
    return {
        "same_speaker_mean": float(np.mean(same)),
        "same_speaker_pairs": len(same),
        "diff_speaker_mean": float(np.mean(diff)),
        "diff_speaker_pairs": len(diff),
    }


def score_shift(soxr: list[np.ndarray], kaiser: list[np.ndarray]) -> dict[str, float]:
    """How much a trial score moves when one side was resampled the original's way.

    Over all pairs (i, j) of different files: ``|cos(soxr_i, kaiser_j) - cos(soxr_i, soxr_j)|``.
    """
    a, b = np.stack(soxr), np.stack(kaiser)
    same_way, mixed = a @ a.T, a @ b.T
    off = ~np.eye(len(a), dtype=bool)
    shift = np.abs(mixed - same_way)[off]
    return {"max": float(shift.max()), "mean": float(shift.mean()), "pairs": int(off.sum())}


def _describe(meta: dict[str, Any]) -> str:
    card = meta.get("model_card") or {}
    data = card.get("train_data") or {}
    text = f"`{card.get('name', meta.get('model'))}`"
    if card.get("steps"):
        text += (
            f", {card['steps']} steps of {card.get('loss', '?')} on {data.get('n_files', '?')} "
            f"files of {data.get('n_speakers', '?')} speakers"
        )
    return text + (f" ({meta['model_note']})" if meta.get("model_note") else "")


def to_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        "Resampler effect on the `gru` model: voxvec's soxr HQ vs the original's resampy "
        f"kaiser_best (librosa.load before 0.10), to {TARGET_SR} Hz; {meta['n_files']} files "
        f"({meta['files_by_corpus']}), first {meta['max_s']:g} s of each; {meta['machine']}, "
        f"{meta['date']}. Log-mel values are natural logs (the GRU divides by 5.76).",
        "",
        f"Models: `untrained` is the `gru` at the trainer's seeded initialisation (seed "
        f"{meta['untrained_seed']}); `trained` is {_describe(meta)}.",
        "",
        "| input | band range | max abs diff | p99 abs diff | mean abs diff |",
        "|---|---|---:|---:|---:|",
    ]
    for group, stats in report["logmel_diff"].items():
        for name, s in stats.items():
            if name in ("frames", "per_band"):
                continue
            lines.append(
                f"| {group} | {name} | {s['max']:.4f} | {s['p99']:.4f} | {s['mean']:.5f} |"
            )
    centres = meta["band_centres_hz"]
    for group, stats in report["logmel_diff"].items():
        per_band = stats["per_band"]
        worst = int(np.argmax(per_band["mean"]))
        lines.append(
            f"\n{group}: largest mean abs diff in band {worst} (centre {centres[worst]:g} Hz): "
            f"{per_band['mean'][worst]:.3f}, signed mean (soxr - kaiser_best) "
            f"{per_band['signed_mean_soxr_minus_kaiser_best'][worst]:+.3f}."
        )
    inner = [
        f"{group} {s[key]['max']:.4f}"
        for group, s in report["logmel_diff_interior_frames"].items()
        for key in s
        if key.startswith("below ")
    ]
    lines.append(
        f"\nWithout each file's first and last {EDGE_FRAMES} frames, the max abs diff below "
        f"{EDGE:g} x the input's Nyquist is: {', '.join(inner)} (the larger maxima below the "
        "edge in the table are in those end frames, at near-silent levels)."
    )
    check = report["check_librosa_soxr_hq_vs_voxvec"]
    snr = report["waveform_snr_db"]
    lines += [
        "",
        f"Waveform SNR soxr vs kaiser_best: min {snr['min']:.1f} dB, mean {snr['mean']:.1f} dB. "
        f"Check: librosa's soxr_hq vs voxvec's soxr, max abs log-mel diff {check['max']:.2g}.",
        "",
        "| model | cos(soxr, kaiser_best) min | mean | 1 - mean | same speaker, 2 utterances "
        "(mean cos) | different speakers (mean cos) | (1 - cos) resampler / same speaker | "
        "trial score shift, mean / max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in report["embeddings"].items():
        r, scale = e["resampler_cos"], e["scale"]
        ratio = (1 - r["mean"]) / (1 - scale["same_speaker_mean"])
        lines.append(
            f"| {name} | {r['min']:.6f} | {r['mean']:.6f} | {1 - r['mean']:.2e} | "
            f"{scale['same_speaker_mean']:.4f} | {scale['diff_speaker_mean']:.4f} | {ratio:.3f} | "
            f"{e['score_shift']['mean']:.4f} / {e['score_shift']['max']:.4f} |"
        )
    lines.append(
        "\nTrial score shift: |cos(a, b) - cos(a, b')| over all pairs of different files, b' being "
        "b resampled with kaiser_best (one side of a trial computed the original's way)."
    )
    for name, e in report["embeddings"].items():
        groups = ", ".join(
            f"{g} min {v['min']:.4f} / mean {v['mean']:.4f}" for g, v in e["by_corpus"].items()
        )
        sw = e["edge_swapped_cos"]
        lines.append(
            f"\n{name}: cos(soxr, kaiser_best) by corpus: {groups}. With the bands from "
            f"{EDGE:g} x the input's Nyquist up taken from soxr (all else kaiser_best): "
            f"min {sw['min']:.6f} / mean {sw['mean']:.6f}."
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    default_data = os.environ.get("VOXVEC_DATA", str(REPO_ROOT.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a trained gru bundle (.safetensors); omitted: untrained only")
    p.add_argument("--model-note", default="", help="how --model was trained (for the report)")
    p.add_argument("--data", default=default_data, help="the shared data folder")
    p.add_argument("--seed", type=int, default=1775, help="seed of the untrained GRU")
    p.add_argument("--so-speakers", type=int, default=10, help="speechocean762 test speakers")
    p.add_argument("--per-speaker", type=int, default=2, help="files per speaker (<= 2 for fsdd)")
    p.add_argument("--libri", type=int, default=15, help="LibriSpeech files (one per speaker)")
    p.add_argument("--fsdd-speakers", type=int, default=6, help="free-spoken-digits speakers")
    p.add_argument("--max-s", type=float, default=10.0, help="cut each file to its first N s")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--json", type=Path, default=REPO_ROOT / "bench/results/resampler-effect.json")
    p.add_argument("--md", type=Path, default=REPO_ROOT / "bench/results/resampler-effect.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()

    items = select_files(
        Path(args.data), args.so_speakers, args.per_speaker, args.libri, args.fsdd_speakers
    )
    models: dict[str, SpeakerEncoder] = {}
    card: dict[str, Any] = {}
    if args.model:
        model, card = load_model(args.model)
        if model.arch != "gru":
            raise SystemExit(f"--model must be a gru model, got {model.arch!r}")
        models["trained"] = model.eval()
        if model.config.frontend != TACOTRON_22K:
            raise SystemExit("--model must read TACOTRON_22K log-mels")
    torch.manual_seed(args.seed)  # the trainer's initialisation
    models["untrained"] = create_model("gru", {}).eval()

    centres = band_centres()
    diffs: dict[int, list[np.ndarray]] = {}
    interior: dict[int, list[np.ndarray]] = {}  # without each file's first and last frames
    check_max = 0.0
    check_frontend = 0.0
    rows: list[dict[str, Any]] = []
    embs: dict[str, dict[str, list[np.ndarray]]] = {
        m: {"soxr": [], "kaiser_best": []} for m in models
    }
    for item in items:
        wav, sr = read(item.path)
        peak = float(np.abs(wav).max())
        if peak > 1.0:
            wav = wav / np.float32(peak)
        wav = wav[: int(args.max_s * sr)]
        a = resample(wav, sr, TARGET_SR)
        b = resample_kaiser_best(wav, sr)
        c = resample_librosa_soxr(wav, sr)
        ma, mb, mc = mels(a, b, c)
        d = (ma - mb).numpy()
        check_max = max(check_max, float((ma - mc).abs().max()))
        diffs.setdefault(sr, []).append(d)
        interior.setdefault(sr, []).append(d[EDGE_FRAMES:-EDGE_FRAMES])
        row: dict[str, Any] = {
            "corpus": item.corpus,
            "speaker": item.speaker,
            "file": str(item.path.relative_to(Path(args.data))),
            "sample_rate": sr,
            "seconds": round(len(wav) / sr, 3),
            "frames": int(d.shape[0]),
            "lengths": {"soxr": len(a), "kaiser_best": len(b)},
            "snr_db": round(snr_db(a, b), 2),
            "logmel_max_abs_diff": round(float(np.abs(d).max()), 5),
            "logmel_mean_abs_diff": round(float(np.abs(d).mean()), 6),
            "cos": {},
            "cos_edge_swapped": {},
        }
        # kaiser_best's log-mels with the bands from EDGE x the input's Nyquist upwards taken from
        # soxr's: what is left of the embedding change once the filter edge is made equal.
        edge = torch.from_numpy(centres >= EDGE * sr / 2)
        hybrid = torch.where(edge[None, :], ma, mb)
        for name, model in models.items():
            ea, eb = embed(model, ma), embed(model, mb)
            embs[name]["soxr"].append(ea)
            embs[name]["kaiser_best"].append(eb)
            row["cos"][name] = float(np.dot(ea, eb))
            row["cos_edge_swapped"][name] = float(np.dot(ea, embed(model, hybrid)))
            if item is items[0]:  # log_mel + encode is what the model does on a waveform
                n = min(len(a), len(b), len(c))
                own = embed_waveform(model, np.clip(a[:n], -1.0, 1.0))
                check_frontend = max(check_frontend, float(np.abs(own - ea).max()))
        rows.append(row)
        print(
            f"{row['file']}: {row['frames']} frames, SNR {row['snr_db']} dB, log-mel max diff "
            f"{row['logmel_max_abs_diff']}, cos {row['cos']}",
            flush=True,
        )

    embeddings: dict[str, Any] = {}
    for name in models:
        cos = np.array([r["cos"][name] for r in rows])
        swapped = np.array([r["cos_edge_swapped"][name] for r in rows])
        by_corpus = {}
        for corpus in dict.fromkeys(r["corpus"] for r in rows):
            sel = np.array([r["corpus"] == corpus for r in rows])
            by_corpus[corpus] = {"min": float(cos[sel].min()), "mean": float(cos[sel].mean())}
        embeddings[name] = {
            "resampler_cos": {"min": float(cos.min()), "mean": float(cos.mean())},
            "by_corpus": by_corpus,
            "edge_swapped_cos": {"min": float(swapped.min()), "mean": float(swapped.mean())},
            "scale": pair_cosines(embs[name]["soxr"], items),
            "scale_kaiser_best": pair_cosines(embs[name]["kaiser_best"], items),
            "score_shift": score_shift(embs[name]["soxr"], embs[name]["kaiser_best"]),
        }
    counts: dict[str, int] = {}
    for item in items:
        counts[item.corpus] = counts.get(item.corpus, 0) + 1
    snrs = np.array([r["snr_db"] for r in rows])
    import librosa
    import resampy
    import soxr

    report = {
        "meta": {
            "what": "soxr HQ (voxvec) vs resampy kaiser_best (librosa.load < 0.10) to 22050 Hz",
            "date": date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} thread(s)",
            "versions": {
                "torch": torch.__version__,
                "soxr": soxr.__version__,
                "resampy": resampy.__version__,
                "librosa": librosa.__version__,
            },
            "model": args.model,
            "model_card": card,
            "model_note": args.model_note,
            "untrained_seed": args.seed,
            "n_files": len(items),
            "files_by_corpus": ", ".join(f"{k} {v}" for k, v in counts.items()),
            "max_s": args.max_s,
            "band_ranges_hz": RANGES,
            "band_centres_hz": [round(float(c), 1) for c in centres],
            "seconds": round(time.time() - start, 1),
        },
        "waveform_snr_db": {"min": float(snrs.min()), "mean": float(snrs.mean())},
        "check_librosa_soxr_hq_vs_voxvec": {"max": check_max},
        "check_model_frontend_vs_log_mel": {"max_abs_embedding_diff": check_frontend},
        "logmel_diff": {
            f"{sr // 1000} kHz input": diff_stats(d, centres, sr / 2)
            for sr, d in sorted(diffs.items(), reverse=True)
        },
        "logmel_diff_interior_frames": {
            f"{sr // 1000} kHz input": diff_stats(d, centres, sr / 2)
            for sr, d in sorted(interior.items(), reverse=True)
        },
        "embeddings": embeddings,
        "files": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    args.md.write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
