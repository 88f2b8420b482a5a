"""Audio input: file reading and resampling (:mod:`.io`), log-mel front-ends (:mod:`.features`),
crops, padding and sliding windows (:mod:`.windows`) and silence trimming (:mod:`.vad`).

``from voxvec.audio import load`` reads any supported file as mono float32 at a given rate.
"""

from voxvec.audio.io import AudioError, load

__all__ = ["AudioError", "load"]
