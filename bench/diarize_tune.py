"""Per-model diarization settings, chosen on the validation split, written into the model card.

One command per model (re-run it whenever the model's weights change)::

    python bench/diarize_tune.py --model voxvec-default
    python bench/diarize_tune.py \\
        --model ../shared/models/campplus-zh-en-common/campplus_cn_en_common.pt

1. Builds once (seeded, reused by later runs) the tuning set in ``--set-dir`` from the speakers
   of ``configs/splits/default/valid.csv`` only, never test: ``--n`` conversations of 2 to 6
   speakers (seed 1, the generator of ``bench/diarize.py``: the first files of its validation
   set), ``--n-one`` one-speaker recordings of 55-75 s (seed 11) and ``--n-same``
   conversations of 2 to 4 speechocean762 speakers (seed 21: one recording setup, so voices
   are closer than across corpora, as in a real room), with the same pauses, levels and noise.
2. Embeds every file's windows once with the model and the default stages (silero VAD, 1.5 s
   windows every 0.75 s), cached under ``--set-dir`` by the model's weight fingerprint.
3. Searches :class:`voxvec.apps.diarize.SpectralClusterer`'s ``prune`` x ``merge_threshold``
   grid for the least ``DER + --count-weight x (share of files with a wrong speaker count)``,
   DER pooled over the files with no collar and overlap scored (``bench/diarize.py``'s
   scoring); ties go to the lower threshold.
4. Writes the winner as the card's ``"diarization"`` field, which
   :class:`voxvec.apps.diarize.Diarizer` reads: into the bundle itself
   (:func:`voxvec.weights.update_card`) for a bundle (``voxvec-default``, any ``.safetensors``);
   for a converted named model (``campplus-zh-en``, whose card is ``card_fields`` in
   ``voxvec/weights/pretrained.py``) it prints the field to put there. ``--dry-run`` writes
   nothing. The whole grid goes to ``--json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.diarize import build_set, load_set, machine, score  # noqa: E402

logger = logging.getLogger("bench.diarize_tune")

PRUNES = (0.1, 0.15, 0.2, 0.3)
MERGE_THRESHOLDS = tuple(round(0.2 + 0.05 * i, 2) for i in range(15))  # 0.2 ... 0.9
MULTI_SEED, ONE_SEED, SAME_SEED = 1, 11, 21
SAME_CORPUS = "so-"  # speechocean762: one recording setup for every speaker


def tuning_set(set_dir: Path, n: int, n_one: int, n_same: int) -> list[dict[str, Any]]:
    """The validation conversations, one-speaker files and same-corpus conversations, built on
    first use (and the window caches dropped when the set changes)."""
    marker = set_dir / "set.json"
    params = {
        "n": n,
        "n_one": n_one,
        "n_same": n_same,
        "seeds": [MULTI_SEED, ONE_SEED, SAME_SEED],
        "same_corpus": SAME_CORPUS,
    }
    if not marker.is_file() or json.loads(marker.read_text()) != params:
        logger.info("building the tuning set in %s", set_dir)
        for old in [*set_dir.glob("valid*.*"), *set_dir.glob("windows/*/*.npz")]:
            old.unlink()
        build_set("valid", n, MULTI_SEED, set_dir)
        build_set("valid", n_one, ONE_SEED, set_dir, min_speakers=1, max_speakers=1, prefix="one")
        build_set(
            "valid",
            n_same,
            SAME_SEED,
            set_dir,
            min_speakers=2,
            max_speakers=4,
            prefix="same",
            corpus=SAME_CORPUS,
        )
        marker.write_text(json.dumps(params) + "\n")
    return load_set([str(set_dir)])


def file_windows(diarizer: Any, files: list[dict[str, Any]], cache: Path) -> dict[str, Any]:
    """Stages 1-2 of every file (:meth:`Diarizer.windows`), cached as ``<cache>/<id>.npz``."""
    from voxvec.apps.diarize import Windows

    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for item in files:
        path = cache / f"{item['id']}.npz"
        if path.is_file():
            data = np.load(path)
            out[item["id"]] = Windows(
                **{k: data[k] for k in data.files if k != "duration_s"},
                duration_s=float(data["duration_s"]),
            )
            continue
        t = time.perf_counter()
        win = diarizer.windows(item["wav"])
        np.savez(path, **{k: getattr(win, k) for k in win.__dataclass_fields__})
        logger.info(
            "%s: %d windows in %.0f s", item["id"], len(win.embeddings), time.perf_counter() - t
        )
        out[item["id"]] = win
    return out


def search(
    diarizer: Any, files: list[dict[str, Any]], windows: dict[str, Any], count_weight: float
) -> list[dict[str, Any]]:
    """Every grid point with its DER, count accuracy and objective, best first."""
    from voxvec.apps.diarize import SpeakerCount, SpectralClusterer

    hyp_cache: dict[tuple[str, bytes], list[tuple[float, float, str]]] = {}
    results = []
    for prune, merge in itertools.product(PRUNES, MERGE_THRESHOLDS):
        clusterer = SpectralClusterer(prune=prune, merge_threshold=merge)
        hyps = {}
        for item in files:
            win = windows[item["id"]]
            labels = clusterer(win.embeddings, SpeakerCount())
            key = (item["id"], labels.tobytes())
            if key not in hyp_cache:
                segs, _ = diarizer.resegmenter(win, labels)
                hyp_cache[key] = [(a, b, str(c)) for a, b, c in segs]
            hyps[item["id"]] = hyp_cache[key]
        s = score(files, hyps)
        one = [r for r in s["files"] if r["ref_speakers"] == 1]
        results.append(
            {
                "prune": prune,
                "merge_threshold": merge,
                "objective": s["no_collar"]["der"] + count_weight * (1 - s["count_accuracy"]),
                "der": s["no_collar"]["der"],
                "confusion": s["no_collar"]["confusion"],
                "count_accuracy": s["count_accuracy"],
                "one_speaker_right": sum(r["hyp_speakers"] == 1 for r in one),
                "n_one_speaker": len(one),
            }
        )
    results.sort(key=lambda r: (round(r["objective"], 6), r["merge_threshold"], r["prune"]))
    return results


def card_field(best: dict[str, Any], files: list[dict[str, Any]], args: argparse.Namespace) -> dict:
    """The model card's ``"diarization"`` field."""
    n_one = best["n_one_speaker"]
    return {
        "spectral": {"prune": best["prune"], "merge_threshold": best["merge_threshold"]},
        "chosen_on": (
            f"valid split: {args.n} seeded conversations of 2-6 speakers, {args.n_same} of 2-4 "
            f"speakers of one corpus and {n_one} one-speaker recordings; least DER + "
            f"{args.count_weight} x wrong-count rate"
        ),
        "valid_der": round(best["der"], 4),
        "valid_count_accuracy": round(best["count_accuracy"], 4),
        "command": f"python bench/diarize_tune.py --model {args.model}",
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="pretrained name, bundle or checkpoint")
    parser.add_argument("--set-dir", type=Path, default=Path("/tmp/voxvec-diarize-tune"))
    parser.add_argument("--n", type=int, default=12, help="conversations of 2-6 speakers (12)")
    parser.add_argument("--n-one", type=int, default=8, help="one-speaker recordings (8)")
    parser.add_argument(
        "--n-same", type=int, default=6, help="conversations of 2-4 speechocean762 speakers (6)"
    )
    parser.add_argument(
        "--count-weight", type=float, default=0.1, help="DER points per wrong-count rate (0.1)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="the whole grid (optional)")
    parser.add_argument("--dry-run", action="store_true", help="write nothing into the card")
    args = parser.parse_args()

    import torch

    import voxvec
    from voxvec.apps.diarize import DIARIZATION_CARD_KEY, Diarizer
    from voxvec.apps.identity import ModelIdentity
    from voxvec.weights import PretrainedSpec, get_spec, list_pretrained, update_card

    torch.set_num_threads(args.threads)
    embedder = voxvec.load(args.model, "cpu")
    diarizer = Diarizer(embedder)
    files = tuning_set(args.set_dir, args.n, args.n_one, args.n_same)
    fingerprint = ModelIdentity.of(embedder).fingerprint[:16]
    windows = file_windows(diarizer, files, args.set_dir / "windows" / fingerprint)
    results = search(diarizer, files, windows, args.count_weight)
    for r in results[:8]:
        print(
            f"prune {r['prune']:.2f} merge {r['merge_threshold']:.2f}: objective "
            f"{r['objective']:.4f}, DER {100 * r['der']:.2f}%, count right "
            f"{100 * r['count_accuracy']:.0f}%, one-speaker {r['one_speaker_right']}/"
            f"{r['n_one_speaker']}"
        )
    field = card_field(results[0], files, args)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"machine": machine(), "model": args.model, "card": field, "grid": results})
            + "\n"
        )
    names = {s.name: s for s in list_pretrained()}
    name = embedder.card.get("name")
    try:
        spec: PretrainedSpec | None = get_spec(args.model)  # an alias: its versioned spec
    except KeyError:
        spec = None
    if spec is not None and spec.asset is not None:
        bundle: Path | None = spec.local_path
    elif str(args.model).endswith(".safetensors"):
        bundle = Path(args.model)
    else:
        bundle = None
    text = json.dumps({DIARIZATION_CARD_KEY: field}, indent=1)
    if args.dry_run:
        print(text)
    elif bundle is not None:
        update_card(bundle, {DIARIZATION_CARD_KEY: field})
        print(f"wrote the card's {DIARIZATION_CARD_KEY!r} field of {bundle}:\n{text}")
    else:
        where = f"card_fields of {get_spec(name).name!r}" if name in names else "its card"
        print(f"a converted model: put this into {where} (voxvec/weights/pretrained.py):\n{text}")


if __name__ == "__main__":
    main()
