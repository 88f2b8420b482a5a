"""Held-out accuracy and robustness of voxvec models and Resemblyzer on the same trials.

For each corpus in a test manifest (speakers never seen in training), this script builds one
fixed, seeded trial list and scores it with every system under every condition:

- ``clean``: the utterances as recorded;
- ``8k``: resampled to 8 kHz first (telephone band), each system then resamples as it does;
- ``noise10`` / ``noise0``: background noise from ``--noise-dir`` added at 10 dB / 0 dB SNR;
- ``silence10``: 10 s of silence (a -80 dBFS noise floor) inserted in the middle;
- ``gain20``: each utterance at its own level between 0 and 20 dB below the recording
  (seeded by the utterance), so the two sides of a trial differ in level;
- ``long``: the first side of the trials lengthened to 60 s or more by appending utterances of
  the same speaker from a reserved pool that no trial uses (only trials whose first side is one of
  the first 4 utterances of its speaker, to bound the cost; corpora whose speakers have too few
  files to reserve a pool are left out).

Speakers with a single long file (the LibriSpeech sample) have it cut into 4 s segments, which
then count as that speaker's utterances. Numbers are EER and minDCF (p_target 0.01) with the
trial counts and a 95% speaker-bootstrap confidence interval for the EER, from
``voxvec.eval.verify.compute_metrics``, the same code as ``voxvec eval``.

Example (the command behind the README results table)::

    python bench/accuracy.py --manifest configs/splits/default/test.csv \
        --model voxvec-default --peer resemblyzer --json bench/results/accuracy.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxvec.audio.io import load, resample
from voxvec.audio.vad import METHODS as VAD_METHODS
from voxvec.data.augment import AugmentConfig, Augmenter
from voxvec.data.manifest import ManifestItem, read_manifest
from voxvec.eval.trials import Trial, generate_trials
from voxvec.eval.verify import compute_metrics, score_trials
from voxvec.runtime import PRECISIONS

logger = logging.getLogger("bench.accuracy")

SAMPLE_RATE = 16000
SEGMENT_S = 4.0
LONG_S = 60.0
LONG_PER_SPEAKER = 4
CONDITIONS = ("clean", "8k", "noise10", "noise0", "silence10", "gain20", "long")


@dataclass
class Utterance:
    """One scored input: its id (used in trials), speaker and 16 kHz waveform."""

    key: str
    speaker: str
    wav: np.ndarray


@dataclass
class CorpusSet:
    """The utterances, trials and long-input pools of one corpus."""

    name: str
    utterances: dict[str, Utterance]
    trials: list[Trial]
    pools: dict[str, list[np.ndarray]]


def corpus_of(item: ManifestItem) -> str:
    """The corpus folder a manifest file lives in (the folder above its ``audio/``)."""
    parts = item.path.parts
    return parts[parts.index("audio") - 1] if "audio" in parts else item.path.parent.name


def build_corpus(
    name: str,
    items: Sequence[ManifestItem],
    max_per_speaker: int,
    pool_size: int,
    n_trials: int,
    seed: int,
) -> CorpusSet:
    """Decode a corpus's test files, reserve long-input pools, and draw its trials."""
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[ManifestItem]] = {}
    for item in items:
        by_speaker.setdefault(item.speaker, []).append(item)
    utterances: dict[str, Utterance] = {}
    pools: dict[str, list[np.ndarray]] = {}
    for speaker, files in sorted(by_speaker.items()):
        files = [files[i] for i in rng.permutation(len(files))]
        if len(files) == 1:
            wav = load(files[0].path, SAMPLE_RATE)
            seg = int(SEGMENT_S * SAMPLE_RATE)
            for k in range(min(max_per_speaker, len(wav) // seg)):
                key = f"{files[0].path}#{k}"
                utterances[key] = Utterance(key, speaker, wav[k * seg : (k + 1) * seg])
            continue
        if len(files) >= 2 + pool_size + 2:
            pools[speaker] = [load(f.path, SAMPLE_RATE) for f in files[:pool_size]]
            files = files[pool_size:]
        for f in files[:max_per_speaker]:
            key = str(f.path)
            utterances[key] = Utterance(key, speaker, load(f.path, SAMPLE_RATE))
    pseudo = [ManifestItem(Path(u.key), u.speaker) for u in utterances.values()]
    n_pairs = len(pseudo) * (len(pseudo) - 1) // 2
    trials = generate_trials(pseudo, None if n_pairs <= n_trials else n_trials, 0.5, seed)
    return CorpusSet(name, utterances, trials, pools)


def conditions(noise_dir: str, seed: int) -> dict[str, Callable[[np.ndarray, str], np.ndarray]]:
    """Waveform transforms of the conditions that need one (8k and long are built apart)."""

    def noisy(snr_db: float) -> Callable[[np.ndarray, str], np.ndarray]:
        augmenter = Augmenter(
            AugmentConfig(noise_dir=noise_dir, noise_prob=1.0, noise_snr_db=(snr_db, snr_db)),
            SAMPLE_RATE,
        )

        def apply(wav: np.ndarray, key: str) -> np.ndarray:
            generator = torch.Generator().manual_seed(seed + zlib.crc32(key.encode()))
            x = torch.from_numpy(wav)[None]
            out, _ = augmenter(x, torch.tensor([len(wav)]), generator=generator)
            return out[0].numpy()

        return apply

    def silence(wav: np.ndarray, key: str) -> np.ndarray:
        floor = np.random.default_rng(seed).standard_normal(int(10 * SAMPLE_RATE)) * 1e-4
        mid = len(wav) // 2
        return np.concatenate([wav[:mid], floor.astype(np.float32), wav[mid:]])

    def quieter(wav: np.ndarray, key: str) -> np.ndarray:
        db = -20.0 * (zlib.crc32(f"{seed}:{key}".encode()) % 1001) / 1000
        return (wav * 10.0 ** (db / 20.0)).astype(np.float32)

    return {
        "clean": lambda wav, key: wav,
        "noise10": noisy(10.0),
        "noise0": noisy(0.0),
        "silence10": silence,
        "gain20": quieter,
    }


def lengthen(wav: np.ndarray, pool: list[np.ndarray]) -> np.ndarray:
    """``wav`` followed by pool utterances (cycled) until it lasts at least LONG_S seconds."""
    parts, total, k = [wav], len(wav), 0
    while total < LONG_S * SAMPLE_RATE:
        parts.append(pool[k % len(pool)])
        total += len(pool[k % len(pool)])
        k += 1
    return np.concatenate(parts)


class ResemblyzerSystem:
    """Resemblyzer's VoiceEncoder with its own preprocessing (resampling, VAD, volume)."""

    name = "resemblyzer"

    def __init__(self) -> None:
        from resemblyzer import VoiceEncoder, preprocess_wav

        self._encoder = VoiceEncoder("cpu", verbose=False)
        self._preprocess = preprocess_wav

    def embed(self, wavs: list[np.ndarray], sample_rate: int) -> np.ndarray:
        return np.stack(
            [
                self._encoder.embed_utterance(self._preprocess(w, source_sr=sample_rate))
                for w in wavs
            ]
        )


class VoxvecSystem:
    """A voxvec model through the public ``voxvec.load`` API (its defaults unless overridden)."""

    def __init__(
        self, name: str, batch_size: int, vad: str = "off", **embedder_kwargs: Any
    ) -> None:
        import voxvec

        self.name = name if vad == "off" else f"{name} +vad={vad}"
        self._embedder = voxvec.load(
            name, device="cpu", min_speech_s=0.0, vad=vad, **embedder_kwargs
        )
        self._batch_size = batch_size

    def embed(self, wavs: list[np.ndarray], sample_rate: int) -> np.ndarray:
        return np.asarray(
            self._embedder.embed(wavs, sample_rate=sample_rate, batch_size=self._batch_size)
        )


def embed_condition(
    system: ResemblyzerSystem | VoxvecSystem,
    corpus: CorpusSet,
    condition: str,
    transforms: dict[str, Callable[[np.ndarray, str], np.ndarray]],
) -> tuple[dict[str, np.ndarray], list[Trial]]:
    """Embeddings of every trial input under ``condition`` and the trials to score."""
    keys = list(corpus.utterances)
    trials = corpus.trials
    if condition == "long":
        # Lengthen at most LONG_PER_SPEAKER first sides per speaker (each costs 60 s of audio).
        firsts_of: dict[str, list[str]] = {}
        for key in sorted(corpus.utterances):
            firsts_of.setdefault(corpus.utterances[key].speaker, []).append(key)
        allowed = {k for keys in firsts_of.values() for k in keys[:LONG_PER_SPEAKER]}
        trials = [
            t
            for t in trials
            if corpus.utterances[str(t.path1)].speaker in corpus.pools and str(t.path1) in allowed
        ]
        firsts = sorted({str(t.path1) for t in trials})
        long_keys = {k: f"{k}#long" for k in firsts}
        wavs = [
            lengthen(corpus.utterances[k].wav, corpus.pools[corpus.utterances[k].speaker])
            for k in firsts
        ]
        emb = dict(zip(long_keys.values(), system.embed(wavs, SAMPLE_RATE), strict=True))
        seconds = {str(t.path2) for t in trials}
        rest = sorted(seconds)
        emb.update(
            zip(
                rest,
                system.embed([corpus.utterances[k].wav for k in rest], SAMPLE_RATE),
                strict=True,
            )
        )
        trials = [Trial(t.label, Path(long_keys[str(t.path1)]), t.path2) for t in trials]
        return emb, trials
    if condition == "8k":
        wavs = [resample(corpus.utterances[k].wav, SAMPLE_RATE, 8000) for k in keys]
        return dict(zip(keys, system.embed(wavs, 8000), strict=True)), trials
    transform = transforms[condition]
    wavs = [transform(corpus.utterances[k].wav, k) for k in keys]
    return dict(zip(keys, system.embed(wavs, SAMPLE_RATE), strict=True)), trials


def summary(results: Sequence[dict[str, Any]]) -> str:
    """Per system: the mean EER over its corpus x condition cells, plain and weighted by each
    cell's number of speakers (a 2-speaker corpus counts less than an 18-speaker one); the
    systems of one run are scored on the same cells, so these compare."""
    lines = [
        "| system | cells | mean EER % | speaker-weighted mean EER % |",
        "|---|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["system"] for r in results):
        rows = [r for r in results if r["system"] == name]
        eers = np.array([100 * r["eer"] for r in rows])
        weights = np.array([r["n_speakers"] for r in rows], dtype=float)
        weighted = float(eers @ weights / weights.sum())
        lines.append(f"| {name} | {len(rows)} | {eers.mean():.2f} | {weighted:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="test split (path,speaker CSV)")
    parser.add_argument("--model", action="append", default=[], help="voxvec model name or path")
    parser.add_argument("--peer", action="append", default=[], choices=["resemblyzer"])
    parser.add_argument(
        "--vad",
        choices=[m for m in VAD_METHODS if m != "off"],
        help="also run each model with this VAD",
    )
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--window-s", type=float, help="Embedder window_s (default: voxvec's)")
    parser.add_argument("--hop-s", type=float, help="Embedder hop_s (default: voxvec's)")
    parser.add_argument("--precision", choices=PRECISIONS, help="Embedder precision")
    parser.add_argument("--level-db", type=float, help="Embedder level_db (default: none)")
    parser.add_argument(
        "--noise-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/noise")
    )
    parser.add_argument("--max-per-speaker", type=int, default=12)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--n-trials", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    items = read_manifest(args.manifest)
    by_corpus: dict[str, list[ManifestItem]] = {}
    for item in items:
        by_corpus.setdefault(corpus_of(item), []).append(item)
    corpora = []
    for name, its in sorted(by_corpus.items()):
        if len({item.speaker for item in its}) < 2:
            logger.warning(
                "%s: fewer than 2 speakers in %s, no trials; skipped", name, args.manifest
            )
            continue
        corpora.append(
            build_corpus(name, its, args.max_per_speaker, args.pool_size, args.n_trials, args.seed)
        )
    transforms = conditions(args.noise_dir, args.seed)
    overrides = {
        k: v
        for k in ("window_s", "hop_s", "precision", "level_db")
        if (v := getattr(args, k)) is not None
    }
    systems: list[ResemblyzerSystem | VoxvecSystem] = [
        VoxvecSystem(m, args.batch_size, vad, **overrides)
        for m in args.model
        for vad in ["off", *([args.vad] if args.vad else [])]
    ]
    systems += [ResemblyzerSystem() for _ in args.peer]
    wanted = [c for c in args.conditions.split(",") if c]
    results = []
    for corpus in corpora:
        speakers = {k: u.speaker for k, u in corpus.utterances.items()}
        for condition in wanted:
            for system in systems:
                if condition == "long" and not corpus.pools:
                    continue
                start = time.perf_counter()
                emb, trials = embed_condition(system, corpus, condition, transforms)
                scores = score_trials(emb, trials)
                labels = np.array([t.label for t in trials])
                spk = {k: speakers[k.removesuffix("#long")] for k in emb}
                m = compute_metrics(
                    scores,
                    labels,
                    [spk[str(t.path1)] for t in trials],
                    [spk[str(t.path2)] for t in trials],
                    seed=args.seed,
                )
                row = {
                    "corpus": corpus.name,
                    "condition": condition,
                    "system": system.name,
                    "eer": m.eer,
                    "eer_ci95": m.eer_ci,
                    "min_dcf_0.01": m.min_dcf[0.01][0],
                    "n_speakers": len(set(speakers.values())),
                    "n_target": int(labels.sum()),
                    "n_nontarget": int(len(labels) - labels.sum()),
                    "seconds": time.perf_counter() - start,
                }
                logger.info("%s", row)
                results.append(row)
    print("| corpus | condition | system | EER % (95% CI) | minDCF 0.01 | target / non-target |")
    print("|---|---|---|---|---|---|")
    for r in results:
        lo, hi = r["eer_ci95"]
        print(
            f"| {r['corpus']} | {r['condition']} | {r['system']} | {100 * r['eer']:.2f} "
            f"({100 * lo:.2f}-{100 * hi:.2f}) | {r['min_dcf_0.01']:.3f} | "
            f"{r['n_target']} / {r['n_nontarget']} |"
        )
    print(summary(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
