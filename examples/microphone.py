"""Who is talking? Live speaker embeddings from a microphone (not run by the tests).

Reads the default input device in 250 ms blocks with ``sounddevice`` and feeds them to a
:class:`voxvec.streaming.StreamingEmbedder`: 2 s windows every 0.5 s, each embedded once, and a
line printed at every new speaker turn. With ``--store DIR`` (a store made by ``voxvec enroll``)
each turn is named; without one, a turn starts where two consecutive windows sound like different
speakers. Ctrl+C stops and prints the whole-recording embedding.

    pip install sounddevice            # plus PortAudio: apt-get install libportaudio2
    python examples/microphone.py                          # turns by similarity
    python examples/microphone.py --store speakers/        # turns named from enrolled speakers
    python examples/microphone.py --model voxvec-default.onnx   # torch-free (no --store)
"""

from __future__ import annotations

import argparse
import queue

import numpy as np

import voxvec
from voxvec.streaming import SpeakerChange, StreamingEmbedder

BLOCK_S = 0.25


def show(change: SpeakerChange) -> None:
    if change.match is not None:  # identified against the store
        who = change.speaker or "unknown"
    else:
        who = f"new speaker (turn {change.turn})"
    score = "" if change.score is None else f" (score {change.score:.2f})"
    print(f"{change.start_s:7.2f} s  {who}{score}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="pretrained name, bundle or .onnx file")
    parser.add_argument("--store", default=None, help="a speaker store folder (voxvec enroll)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="the microphone's rate")
    args = parser.parse_args()

    import sounddevice  # the optional dependency of this example

    embedder = voxvec.load(args.model, window_s=2.0, hop_s=0.5)
    store = None
    if args.store:
        from voxvec.apps.store import SpeakerStore

        store = SpeakerStore.open(args.store)
    streamer = StreamingEmbedder(embedder, args.sample_rate, store=store, on_change=show)
    blocks: queue.Queue[np.ndarray] = queue.Queue()

    def callback(data: np.ndarray, frames: int, time: object, status: object) -> None:
        blocks.put(data[:, 0].copy())  # sounddevice's thread: hand the block over, no work here

    print("listening (Ctrl+C to stop)", flush=True)
    with sounddevice.InputStream(
        samplerate=args.sample_rate,
        channels=1,
        dtype="float32",
        blocksize=round(BLOCK_S * args.sample_rate),
        callback=callback,
    ):
        try:
            while True:
                streamer.push(blocks.get())
        except KeyboardInterrupt:
            pass
    if streamer.duration_s >= embedder.min_speech_s:
        result = streamer.finish()
        print(f"{result.duration_s:.1f} s, {len(result.embeddings)} windows; mean embedding")
        print(np.array2string(result.mean()[:8], precision=3), "...")


if __name__ == "__main__":
    main()
