"""3D-Speaker's own CAM++ as a reference: the oracle of voxvec's parity test and speed benchmark.

Runs in its own virtual environment, never voxvec's (the oracle's packages stay out of the
project's): 3D-Speaker's ``CAMPPlus`` module from the PyPI package ``speakerlab`` (its
official code), the official checkpoint, and ``kaldi-native-fbank`` for the features. 3D-Speaker
computes them with ``torchaudio.compliance.kaldi.fbank`` (Kaldi's defaults, 80 bins, no dither) and
subtracts the per-utterance mean; no CPU torchaudio for torch 2.13 is on PyPI, and
kaldi-native-fbank computes the same Kaldi features independently of both torchaudio and voxvec.
Files are decoded with soundfile and embedded one at a time, as 3D-Speaker's ``infer_sv.py`` does.

Set up the environment (torch pinned: an unpinned one pulls a multi-GB CUDA build)::

    python3 -m venv /work/venv-oracle
    /work/venv-oracle/bin/pip install torch==2.13.0 numpy soundfile kaldi-native-fbank
    /work/venv-oracle/bin/pip install --no-deps speakerlab==0.0.6

Record the embeddings the parity test compares with (tests/assets/campplus_reference.json)::

    /work/venv-oracle/bin/python bench/campplus_reference.py \
        --record tests/assets/campplus_reference.json

``bench/embed_speed.py`` runs the system ``campplus-reference`` through :func:`make_runner`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = (
    Path(os.environ.get("VOXVEC_MODELS", REPO_ROOT.parent / "shared" / "models"))
    / "campplus-zh-en-common"
    / "campplus_cn_en_common.pt"
)
SAMPLE_RATE = 16000

# Real files of ../shared/data, relative to it: two corpora, long and short, 16 kHz.
RECORDED_FILES = (
    "speechocean762/audio/0001/000010011.ogg",
    "speechocean762/audio/0053/000530163.ogg",
    "librispeech-train-clean-100-sample/audio/103-1240-0000.flac",
    "common-voice-subsets/audio/cvfa-00243bfe65b6/common_voice_fa_37027082.ogg",
    "arabic-speech-commands/audio/00000001/backward_01.ogg",
)


def load_reference(checkpoint: Path = DEFAULT_CHECKPOINT):  # type: ignore[no-untyped-def]
    """3D-Speaker's ``CAMPPlus`` (192-d, as the checkpoint was trained) with its weights, eval."""
    import torch
    from speakerlab.models.campplus.DTDNN import CAMPPlus

    model = CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return model.eval()


def fbank(wav):  # type: ignore[no-untyped-def]
    """80-bin Kaldi fbank of a float waveform in [-1, 1] (kaldi-native-fbank), mean subtracted."""
    import kaldi_native_fbank as knf
    import numpy as np

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.mel_opts.num_bins = 80
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(SAMPLE_RATE, wav.tolist())
    computer.input_finished()
    feats = np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)])
    return feats - feats.mean(0, keepdims=True)


def make_runner(checkpoint: Path = DEFAULT_CHECKPOINT) -> Callable[[list[Path]], int]:
    """Embeds files one by one, decoding included; returns the number of embeddings."""
    import soundfile as sf
    import torch

    model = load_reference(checkpoint)

    def embed(path: Path):  # type: ignore[no-untyped-def]
        wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path}: {rate} Hz, the reference takes {SAMPLE_RATE} Hz files")
        feats = torch.from_numpy(fbank(wav.mean(1)))
        with torch.no_grad():
            return model(feats[None].float())[0]

    def run(paths: list[Path]) -> int:
        return len(torch.stack([embed(p) for p in paths]))

    run.embed = embed  # type: ignore[attr-defined]
    return run


def record(out: Path, data: Path, checkpoint: Path) -> None:
    """Write the reference embeddings (and fbank summaries) of :data:`RECORDED_FILES`."""
    import importlib.metadata as md

    import numpy as np
    import soundfile as sf
    import torch

    torch.set_num_threads(2)
    runner = make_runner(checkpoint)
    items = []
    for rel in RECORDED_FILES:
        wav, _ = sf.read(str(data / rel), dtype="float32", always_2d=True)
        feats = fbank(wav.mean(1))
        emb = runner.embed(data / rel).numpy()  # type: ignore[attr-defined]
        items.append(
            {
                "path": rel,
                "n_samples": int(wav.shape[0]),
                "fbank_frames": int(feats.shape[0]),
                "fbank_abs_mean": round(float(np.abs(feats).mean()), 6),
                "fbank_frame0_head": [round(float(v), 5) for v in feats[0, :8]],
                "embedding": [round(float(v), 7) for v in emb],
            }
        )
    meta = {
        "produced_by": "bench/campplus_reference.py --record (3D-Speaker's CAMPPlus from PyPI "
        "speakerlab, kaldi-native-fbank features minus the utterance mean, float32, one file "
        "at a time); embeddings are the model's raw (not normalised) output",
        "checkpoint": "campplus_cn_en_common.pt, sha256 "
        "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
        "versions": {p: md.version(p) for p in ("torch", "speakerlab", "kaldi-native-fbank")},
        "data": "paths relative to ../shared/data",
    }
    out.write_text(json.dumps({"meta": meta, "files": items}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--record OUT`` writes the reference embeddings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", type=Path, required=True, help="JSON file to write")
    default_data = os.environ.get("VOXVEC_DATA", str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=Path(default_data))
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    args = parser.parse_args(argv)
    record(args.record, args.data, args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
