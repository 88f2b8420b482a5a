"""Who spoke when: speaker diarization from sliding-window embeddings.

The pipeline has four stages, each a replaceable object given to :class:`Diarizer`:

1. **Activity** (:class:`ActivityDetector`): where there is speech, and optionally where two
   speakers overlap. :class:`VadActivity` uses :func:`voxvec.audio.vad.speech_segments`;
   :class:`voxvec.apps.segmentation.SegmentationActivity` uses pyannote's segmentation-3.0
   model and also finds overlapped speech.
2. **Window embeddings**: each speech region is cut into windows of ``window_s`` every
   ``hop_s`` and embedded by :meth:`voxvec.inference.Embedder.embed_windows` (any voxvec
   model), with the windows' times in the recording.
3. **Clustering** (:class:`Clusterer`): window embeddings -> speaker labels, with the number of
   speakers estimated when it is not given (:class:`SpectralClusterer`, the default: eigen-gap
   of the normalised Laplacian, then clusters whose centroids are closer than a cosine chosen
   for the model (its card's ``diarization`` settings) are merged, down to one speaker; or
   :class:`AgglomerativeClusterer`, average linkage with a stopping threshold). A given count
   is always respected. Over ``max_points`` windows are first reduced by spherical k-means, so
   no ``n x n`` matrix is built over hours of windows.
4. **Resegmentation** (:class:`FrameResegmenter`): every 10 ms frame of speech is scored
   against each speaker centroid through the windows that cover it (Hann-weighted towards the
   window centres), so turn boundaries fall between window steps; runs shorter than
   ``min_segment_s`` join their neighbour; in overlap spans the second-best speaker is added.

Long recordings are decoded in blocks of ``block_s`` (soundfile + a streaming soxr resampler):
memory holds one block of audio, the window embeddings (``D`` floats per ``hop_s``) and at
most ``max_points x max_points`` similarities.

The result, :class:`Diarization`, holds segments ``(start_s, end_s, speaker)`` (overlapping
where two speak at once) and the exclusive segments (one speaker at a time, for aligning with
transcripts); it writes RTTM, JSON and a readable timeline.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from voxvec.audio import io
from voxvec.audio.vad import METHODS as VAD_METHODS
from voxvec.audio.vad import speech_segments
from voxvec.inference import Embedder

if TYPE_CHECKING:
    from voxvec.apps.store import SpeakerStore

logger = logging.getLogger(__name__)

Span = tuple[int, int]
Namer = Callable[[np.ndarray], Sequence[str | None]]
"""Names clusters: ``(K, D)`` unit centroids -> a name or None (unknown) per cluster."""

DIARIZATION_CARD_KEY = "diarization"
"""The model-card field with a model's diarization settings (see
:meth:`SpectralClusterer.from_card`)."""


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Segment:
    """One speaker turn.

    Attributes:
        start_s: start in seconds of the recording.
        end_s: end in seconds (> ``start_s``).
        speaker: the speaker's label (``SPEAKER_00``... or an enrolled name).
    """

    start_s: float
    end_s: float
    speaker: str

    @property
    def duration_s(self) -> float:
        """``end_s - start_s``."""
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Diarization:
    """Who spoke when in one recording.

    Attributes:
        source: the input's name (its path, or ``"input"`` for an array).
        duration_s: length of the recording in seconds.
        segments: turns sorted by start; two overlap where two speakers talk at once.
        exclusive_segments: the same speech with one speaker at a time (no overlap).
    """

    source: str
    duration_s: float
    segments: tuple[Segment, ...]
    exclusive_segments: tuple[Segment, ...]

    @property
    def speakers(self) -> list[str]:
        """The speaker labels, in order of first appearance."""
        return list(dict.fromkeys(s.speaker for s in self.segments))

    def exclusive(self) -> Diarization:
        """This diarization with one speaker at a time (``segments`` = ``exclusive_segments``)."""
        return Diarization(
            self.source, self.duration_s, self.exclusive_segments, self.exclusive_segments
        )

    def to_rttm(self, recording_id: str | None = None) -> str:
        """Standard RTTM: one ``SPEAKER <id> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>``
        line per segment.

        Args:
            recording_id: the RTTM file id; None uses the source's file stem (white space in
                it becomes ``_``: RTTM fields are separated by spaces).

        Returns:
            The RTTM text (empty when there is no speech).
        """
        rid = re.sub(r"\s+", "_", recording_id or Path(self.source).stem or "input")
        return "".join(
            f"SPEAKER {rid} 1 {s.start_s:.3f} {s.duration_s:.3f} <NA> <NA> {s.speaker} <NA> <NA>\n"
            for s in self.segments
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: source, duration, speakers, segments and exclusive segments."""
        return {
            "source": self.source,
            "duration_s": round(self.duration_s, 3),
            "speakers": self.speakers,
            "segments": [_segment_dict(s) for s in self.segments],
            "exclusive_segments": [_segment_dict(s) for s in self.exclusive_segments],
        }

    def timeline(self) -> str:
        """A readable timeline: one ``HH:MM:SS.s - HH:MM:SS.s  SPEAKER`` line per segment."""
        lines = [f"{self.source}: {len(self.speakers)} speakers, {self.duration_s:.1f} s"]
        lines += [f"  {_clock(s.start_s)} - {_clock(s.end_s)}  {s.speaker}" for s in self.segments]
        return "\n".join(lines)


def _segment_dict(s: Segment) -> dict[str, Any]:
    return {"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "speaker": s.speaker}


def _clock(seconds: float) -> str:
    h, rest = divmod(seconds, 3600.0)
    m, s = divmod(rest, 60.0)
    return f"{int(h):02d}:{int(m):02d}:{s:04.1f}"


def write_outputs(result: Diarization, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<stem>.rttm`` and ``<stem>.json`` (atomically) into ``out_dir``.

    Args:
        result: the diarization.
        out_dir: the folder (created if needed).

    Returns:
        The RTTM and JSON paths.
    """
    from voxvec.atomic import atomic_open

    stem = Path(result.source).stem or "input"
    rttm, js = Path(out_dir) / f"{stem}.rttm", Path(out_dir) / f"{stem}.json"
    with atomic_open(rttm) as f:
        f.write(result.to_rttm())
    with atomic_open(js) as f:
        json.dump(result.to_dict(), f, indent=1)
        f.write("\n")
    return rttm, js


# ----------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Activity:
    """Where there is speech, and where two speakers overlap, in one waveform.

    Attributes:
        speech: sorted, non-overlapping ``(start, end)`` sample spans of speech (end exclusive).
        overlap: sorted ``(start, end)`` sample spans where two speakers talk at once (empty
            when the detector does not look for overlap).
    """

    speech: list[Span]
    overlap: list[Span]


class ActivityDetector(Protocol):
    """Stage 1: ``(wav (T,) float32, sample_rate) -> Activity`` in samples of ``wav``."""

    def __call__(self, wav: np.ndarray, sample_rate: int) -> Activity: ...


@dataclass(frozen=True)
class VadActivity:
    """Speech from :func:`voxvec.audio.vad.speech_segments`; no overlap detection.

    Attributes:
        method: one of :data:`voxvec.audio.vad.METHODS` except ``"off"``.
    """

    method: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in VAD_METHODS or self.method == "off":
            valid = [m for m in VAD_METHODS if m != "off"]
            raise ValueError(f"VAD method must be one of {valid}, got {self.method!r}")

    def __call__(self, wav: np.ndarray, sample_rate: int) -> Activity:
        """The speech spans of ``wav`` (see :func:`voxvec.audio.vad.speech_segments`)."""
        return Activity(speech_segments(wav, sample_rate, self.method), [])


@dataclass(frozen=True)
class SpeakerCount:
    """What is known of the number of speakers.

    Attributes:
        num: the exact count (always respected), or None to estimate it.
        min: the least count an estimate may give (>= 1).
        max: the most count an estimate may give.

    Raises:
        ValueError: a count below 1, ``min > max``, or ``num`` with ``min``/``max`` that
            exclude it.
    """

    num: int | None = None
    min: int = 1
    max: int = 10

    def __post_init__(self) -> None:
        if self.num is not None and self.num < 1:
            raise ValueError(f"num_speakers must be >= 1, got {self.num}")
        if self.num is not None and not self.min <= self.num <= self.max:
            raise ValueError(
                f"num_speakers={self.num} is outside min_speakers={self.min}, "
                f"max_speakers={self.max}"
            )
        if self.min < 1 or self.max < self.min:
            raise ValueError(
                f"need 1 <= min_speakers <= max_speakers, got {self.min} and {self.max}"
            )

    @classmethod
    def of(
        cls, num: int | None = None, min: int | None = None, max: int | None = None
    ) -> SpeakerCount:
        """The count from user options: ``num`` alone, or bounds (defaults 1 and 10, or ``num``).

        Raises:
            ValueError: as the class.
        """
        if num is not None:
            return cls(num, num if min is None else min, num if max is None else max)
        lo = 1 if min is None else min
        return cls(None, lo, max if max is not None else builtins.max(10, lo))


class Clusterer(Protocol):
    """Stage 3: ``(embeddings (n, D) unit rows, count) -> labels (n,)`` in ``0..K-1``."""

    def __call__(self, embeddings: np.ndarray, count: SpeakerCount) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _kmeans(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    weights: np.ndarray | None = None,
    spherical: bool = False,
    n_iter: int = 30,
    block: int = 8192,
) -> np.ndarray:
    """Labels ``(n,)`` of k-means++ (Euclidean, or cosine when ``spherical``), in row blocks."""
    n = len(x)
    w = np.ones(n) if weights is None else weights
    first = rng.choice(n, p=w / w.sum())
    centres = [x[first]]
    dist = ((x - x[first]) ** 2).sum(-1)
    for _ in range(1, k):
        p = dist * w
        pick = rng.choice(n, p=p / p.sum()) if p.sum() > 0 else rng.integers(n)
        centres.append(x[pick])
        dist = np.minimum(dist, ((x - x[pick]) ** 2).sum(-1))
    c = np.stack(centres)
    labels = np.zeros(n, dtype=np.int64)
    for it in range(n_iter):
        new = np.empty(n, dtype=np.int64)
        for a in range(0, n, block):
            xb = x[a : a + block]
            if spherical:
                new[a : a + block] = (xb @ c.T).argmax(1)
            else:
                new[a : a + block] = ((xb[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        if it > 0 and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = labels == j
            if members.any():
                c[j] = (x[members] * w[members, None]).sum(0) / w[members].sum()
        if spherical:
            c = _normalise(c)
    return labels


def _reduce(x: np.ndarray, max_points: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(points (m, D), weights (m,), assignment (n,))``: ``x`` itself, or spherical k-means
    centroids when it has more than ``max_points`` rows (how many windows each one stands for)."""
    n = len(x)
    if n <= max_points:
        return x, np.ones(n), np.arange(n)
    assign = _kmeans(x, max_points, np.random.default_rng(seed), spherical=True, n_iter=10)
    used, assign = np.unique(assign, return_inverse=True)
    weights = np.bincount(assign).astype(np.float64)
    sums = np.zeros((len(used), x.shape[1]))
    np.add.at(sums, assign, x)
    logger.debug("clustering: %d windows reduced to %d k-means centroids", n, len(used))
    return _normalise(sums), weights, assign


def _average_linkage(
    x: np.ndarray, weights: np.ndarray, *, threshold: float, n_min: int, n_max: int | None
) -> np.ndarray:
    """Average-linkage agglomeration on cosine similarity.

    Merges the closest pair while there are more than ``n_max`` clusters (None: no upper
    limit), or while their similarity is at least ``threshold`` and there are more than
    ``n_min``. Returns labels ``(m,)`` in ``0..K-1``.
    """
    m = len(x)
    sim = (x @ x.T).astype(np.float64)
    np.fill_diagonal(sim, -np.inf)
    size = weights.astype(np.float64).copy()
    parent = np.arange(m)
    active = m
    while active > 1:
        i, j = np.unravel_index(int(np.argmax(sim)), sim.shape)
        forced = n_max is not None and active > n_max
        if not forced and (active <= n_min or sim[i, j] < threshold):
            break
        merged = (size[i] * sim[i] + size[j] * sim[j]) / (size[i] + size[j])
        sim[i], sim[:, i] = merged, merged
        sim[j], sim[:, j] = -np.inf, -np.inf
        sim[i, i] = -np.inf
        size[i] += size[j]
        parent[parent == j] = i
        active -= 1
    return np.unique(parent, return_inverse=True)[1]


@dataclass(frozen=True)
class AgglomerativeClusterer:
    """Average-linkage agglomerative clustering with a cosine stopping threshold.

    Attributes:
        threshold: merging stops when the closest clusters are less similar than this (when
            the count is not given); chosen on the validation conversations.
        max_points: more windows than this are first reduced by spherical k-means.
        seed: seed of the reduction.
    """

    threshold: float = 0.35
    max_points: int = 1000
    seed: int = 0

    def __call__(self, embeddings: np.ndarray, count: SpeakerCount) -> np.ndarray:
        """Labels ``(n,)`` of the windows (see :class:`Clusterer`)."""
        if len(embeddings) == 0:
            return np.zeros(0, dtype=np.int64)
        points, weights, assign = _reduce(_normalise(embeddings), self.max_points, self.seed)
        n_max = count.num if count.num is not None else count.max
        n_min = count.num if count.num is not None else count.min
        labels = _average_linkage(
            points, weights, threshold=self.threshold, n_min=n_min, n_max=n_max
        )
        return labels[assign]


MIN_NEIGHBOURS = 5
"""Affinities kept per window at the least: with 2-3 neighbours (``prune`` of a 20-window file)
one speaker's windows fall apart into several components and a given count splits a voice."""


@dataclass(frozen=True)
class SpectralClusterer:
    """Spectral clustering with the count from the eigen-gap, then a centroid merge.

    The affinity is the cosine similarity with, per row, all but the ``prune`` fraction of
    highest values set to zero (then symmetrised); the count is where the eigenvalues of the
    normalised Laplacian jump most, within the bounds; rows of its first ``K`` eigenvectors are
    clustered by k-means. The eigen-gap cannot say "one speaker", and over-estimates on
    some files (many small clusters on short recordings), so when the count is not given the
    clusters whose centroids have a cosine of at least ``merge_threshold`` are then merged
    (centroid linkage, see :func:`_centroid_linkage`), down to the lower bound: one speaker
    when nothing bounds it.

    Attributes:
        prune: fraction of each row's affinities kept (the nearest neighbours; at least
            :data:`MIN_NEIGHBOURS`, so that a short file's few windows keep a connected graph).
        merge_threshold: the least centroid cosine at which estimated clusters are merged
            (it depends on the model's score scale: :meth:`from_card` reads the model's own).
        max_points: more windows than this are first reduced by spherical k-means.
        seed: seed of k-means.
    """

    prune: float = 0.2
    merge_threshold: float = 0.6
    max_points: int = 1000
    seed: int = 0

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> SpectralClusterer:
        """The clusterer with a model card's settings: ``card["diarization"]["spectral"]``
        (``prune`` and ``merge_threshold``, chosen for that model on the validation split by
        ``bench/diarize_tune.py``), else the class defaults (CAM++'s settings; a model of
        another score scale over- or under-splits with them).

        Raises:
            ValueError: the card's settings hold another key.
        """
        settings = dict((card.get(DIARIZATION_CARD_KEY) or {}).get("spectral") or {})
        unknown = sorted(set(settings) - {"prune", "merge_threshold"})
        if unknown:
            raise ValueError(
                f"model card {DIARIZATION_CARD_KEY}.spectral: unknown keys {unknown}; valid: "
                "prune, merge_threshold"
            )
        if not settings:
            logger.warning(
                "%s: the model card has no diarization settings; using the defaults (tune them: "
                "python bench/diarize_tune.py --model ...)",
                card.get("name") or card.get("source") or "the model",
            )
        return cls(**settings)

    def __call__(self, embeddings: np.ndarray, count: SpeakerCount) -> np.ndarray:
        """Labels ``(n,)`` of the windows (see :class:`Clusterer`)."""
        n = len(embeddings)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        x = _normalise(embeddings.astype(np.float64))
        points, weights, assign = _reduce(x, self.max_points, self.seed)
        m = len(points)
        if count.num is not None and count.num >= m:
            return np.arange(m)[assign]
        if m < 3:
            return np.zeros(n, dtype=np.int64) if count.min <= 1 else np.arange(m)[assign]
        sim = np.clip(points @ points.T, 0.0, None)
        keep = min(m, max(MIN_NEIGHBOURS, int(np.ceil(self.prune * m))))
        cut = np.partition(sim, m - keep, axis=1)[:, m - keep : m - keep + 1]
        aff = np.where(sim >= cut, sim, 0.0)
        aff = (aff + aff.T) / 2
        degree = aff.sum(1)
        inv = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
        lap = np.eye(m) - inv[:, None] * aff * inv[None, :]
        values, vectors = np.linalg.eigh(lap)
        if count.num is not None:
            k = count.num
        else:
            lo, hi = max(2, count.min), min(count.max, m - 1)
            if hi < lo:
                k = max(1, min(count.min, m))
            else:
                gaps = values[lo : hi + 1] - values[lo - 1 : hi]  # gap after the k-th value
                k = lo + int(np.argmax(gaps))
        if k == 1:
            return np.zeros(n, dtype=np.int64)
        spec = _normalise(vectors[:, :k])
        rng = np.random.default_rng(self.seed)
        labels = _kmeans(spec, k, rng, weights=weights)
        labels = np.unique(labels, return_inverse=True)[1]
        if count.num is None:
            labels = self._merge(points, weights, labels, count.min)
        return labels[assign]

    def _merge(
        self, points: np.ndarray, weights: np.ndarray, labels: np.ndarray, n_min: int
    ) -> np.ndarray:
        k = int(labels.max()) + 1
        sums = np.zeros((k, points.shape[1]))
        np.add.at(sums, labels, points * weights[:, None])
        return _centroid_linkage(sums, threshold=self.merge_threshold, n_min=n_min)[labels]


def _centroid_linkage(sums: np.ndarray, *, threshold: float, n_min: int) -> np.ndarray:
    """Centroid-linkage agglomeration of clusters given by the sums of their windows.

    Merges the two clusters whose centroids (the normalised sums) have the highest cosine while
    it is at least ``threshold`` and more than ``n_min`` clusters remain, down to one. A merged
    cluster's centroid is the mean of all its windows, so clusters are compared voice to voice:
    the noise of small clusters (a few windows each, as over-split short recordings give)
    averages out as they grow, which the mean of their pairwise cosines (average linkage) keeps.

    Args:
        sums: ``(k, D)`` sum of each cluster's (weighted) unit window embeddings.
        threshold: the least cosine of two centroids that are merged.
        n_min: the least number of clusters left.

    Returns:
        Labels ``(k,)`` in ``0..K-1``.
    """
    sums = sums.astype(np.float64).copy()
    parent = np.arange(len(sums))
    alive = np.ones(len(sums), dtype=bool)
    while alive.sum() > max(1, n_min):
        centroids = _normalise(sums)
        sim = centroids @ centroids.T
        sim[~alive] = -np.inf
        sim[:, ~alive] = -np.inf
        np.fill_diagonal(sim, -np.inf)
        i, j = np.unravel_index(int(np.argmax(sim)), sim.shape)
        if sim[i, j] < threshold:
            break
        sums[i] += sums[j]
        alive[j] = False
        parent[parent == j] = i
    return np.unique(parent, return_inverse=True)[1]


@dataclass(frozen=True)
class Windows:
    """Window embeddings of a whole recording, with their times and speech regions.

    Attributes:
        embeddings: ``(n, D)`` float32 unit rows.
        starts_s: ``(n,)`` window starts in seconds of the recording.
        ends_s: ``(n,)`` window ends.
        region: ``(n,)`` index of the speech region (in ``speech_s``) each window lies in.
        speech_s: ``(R, 2)`` speech regions ``(start, end)`` in seconds.
        overlap_s: ``(O, 2)`` overlapped-speech spans in seconds.
        duration_s: length of the recording.
    """

    embeddings: np.ndarray
    starts_s: np.ndarray
    ends_s: np.ndarray
    region: np.ndarray
    speech_s: np.ndarray
    overlap_s: np.ndarray
    duration_s: float


@dataclass(frozen=True)
class FrameResegmenter:
    """Stage 4: frame-level speaker labels from the window scores (see the module docstring).

    Attributes:
        frame_s: the frame step in seconds.
        min_segment_s: runs of one speaker shorter than this join a neighbour.
    """

    frame_s: float = 0.01
    min_segment_s: float = 0.3

    def __call__(
        self, windows: Windows, labels: np.ndarray
    ) -> tuple[list[tuple[float, float, int]], list[tuple[float, float, int]]]:
        """``(segments, exclusive_segments)`` as ``(start_s, end_s, cluster)`` lists.

        Args:
            windows: the recording's windows and regions.
            labels: ``(n,)`` cluster of each window.
        """
        k = int(labels.max()) + 1 if len(labels) else 1
        if len(labels):
            centroids = _normalise(
                np.stack([windows.embeddings[labels == j].mean(0) for j in range(k)])
            )
            scores_w = windows.embeddings @ centroids.T  # (n, K)
            centres = (windows.starts_s + windows.ends_s) / 2
        exclusive: list[tuple[float, float, int]] = []
        extra: list[tuple[float, float, int]] = []
        order = np.argsort(windows.region, kind="stable")
        bounds = np.searchsorted(windows.region[order], np.arange(len(windows.speech_s) + 1))
        for r, (rs, r_end) in enumerate(windows.speech_s):
            n_frames = max(1, int(round((r_end - rs) / self.frame_s)))
            t = rs + (np.arange(n_frames) + 0.5) * self.frame_s
            members = order[bounds[r] : bounds[r + 1]]
            if not len(labels):
                frame_labels = np.zeros(n_frames, dtype=np.int64)
                score = np.zeros((n_frames, 1))
            elif len(members) == 0:  # too short to embed: the nearest window's speaker
                nearest = int(np.argmin(np.abs(centres - (rs + r_end) / 2)))
                frame_labels = np.full(n_frames, labels[nearest])
                score = np.tile(scores_w[nearest], (n_frames, 1))
            else:
                score = np.zeros((n_frames, k))
                norm = np.zeros(n_frames)
                for w in members:
                    a = max(0, int(np.floor((windows.starts_s[w] - rs) / self.frame_s)))
                    b = min(n_frames, int(np.ceil((windows.ends_s[w] - rs) / self.frame_s)))
                    phase = (t[a:b] - windows.starts_s[w]) / (
                        windows.ends_s[w] - windows.starts_s[w]
                    )
                    weight = np.sin(np.pi * np.clip(phase, 0.0, 1.0)) ** 2 + 1e-3
                    score[a:b] += weight[:, None] * scores_w[w]
                    norm[a:b] += weight
                score /= np.maximum(norm, 1e-12)[:, None]
                frame_labels = self._smooth(score.argmax(1))
            edges = rs + np.arange(n_frames + 1) * self.frame_s
            edges[-1] = r_end
            exclusive += _runs(frame_labels, edges)
            if k >= 2 and len(windows.overlap_s):
                in_overlap = np.zeros(n_frames, dtype=bool)
                for os_, oe in windows.overlap_s:
                    if oe > rs and os_ < r_end:
                        in_overlap[(t >= os_) & (t < oe)] = True
                if in_overlap.any():
                    ranked = np.argsort(-score, axis=1)
                    second = np.where(ranked[:, 0] == frame_labels, ranked[:, 1], ranked[:, 0])
                    extra += [
                        seg for seg in _runs(np.where(in_overlap, second, -1), edges) if seg[2] >= 0
                    ]
        return _merge_same(exclusive + extra), _merge_same(exclusive)

    def _smooth(self, frame_labels: np.ndarray) -> np.ndarray:
        """Relabel runs shorter than ``min_segment_s`` with the previous (else next) run."""
        min_frames = int(round(self.min_segment_s / self.frame_s))
        out = frame_labels.copy()
        changed = True
        while changed:
            changed = False
            change = np.flatnonzero(np.diff(out)) + 1
            starts = np.concatenate([[0], change])
            ends = np.concatenate([change, [len(out)]])
            if len(starts) == 1:
                break
            lengths = ends - starts
            i = int(np.argmin(lengths))
            if lengths[i] < min_frames:
                out[starts[i] : ends[i]] = out[starts[i] - 1] if i > 0 else out[ends[i]]
                changed = True
        return out


def _runs(labels: np.ndarray, edges: np.ndarray) -> list[tuple[float, float, int]]:
    """``(start_s, end_s, label)`` of each run of equal labels (frame ``i`` spans
    ``[edges[i], edges[i+1])``)."""
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(labels)]])
    return [
        (float(edges[a]), float(edges[b]), int(labels[a]))
        for a, b in zip(starts, ends, strict=True)
    ]


def _merge_same(
    segments: list[tuple[float, float, int]], gap_s: float = 1e-6
) -> list[tuple[float, float, int]]:
    """Sort, and join a speaker's segments that touch or overlap."""
    out: list[tuple[float, float, int]] = []
    last: dict[int, int] = {}
    for start, end, spk in sorted(segments):
        i = last.get(spk)
        if i is not None and start <= out[i][1] + gap_s:
            out[i] = (out[i][0], max(end, out[i][1]), spk)
        else:
            last[spk] = len(out)
            out.append((start, end, spk))
    return sorted(out)


# ----------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class DiarizeConfig:
    """Options of :class:`Diarizer` (defaults chosen by DER on the validation conversations).

    Attributes:
        window_s: embedding window length in seconds.
        hop_s: seconds between windows.
        min_region_s: speech regions shorter than this are not embedded (they take the
            nearest window's speaker).
        block_s: audio is decoded and processed this many seconds at a time.
        batch_size: windows per forward pass.
    """

    window_s: float = 1.5
    hop_s: float = 0.75
    min_region_s: float = 0.4
    block_s: float = 600.0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not 0 < self.hop_s <= self.window_s:
            raise ValueError(f"need 0 < hop_s <= window_s, got {self.hop_s}, {self.window_s}")
        if self.block_s < 10 * self.window_s:
            raise ValueError(f"block_s must be >= 10 x window_s, got {self.block_s}")


def _blocks(
    audio: str | os.PathLike | np.ndarray, sample_rate: int | None, target_rate: int, block_s: float
) -> Iterator[np.ndarray]:
    """The recording at ``target_rate`` in consecutive blocks of about ``block_s`` seconds.

    Files are decoded block by block (soundfile) and resampled with a streaming soxr
    resampler; arrays are resampled whole.

    Raises:
        FileNotFoundError / AudioError: the file is missing, unreadable, or holds NaN/inf.
        ValueError: an array without ``sample_rate``.
    """
    import soundfile as sf
    import soxr

    if isinstance(audio, np.ndarray):
        if sample_rate is None:
            raise ValueError("sample_rate is required for array input")
        wav = io.check_waveform(audio, "input") if audio.size else audio.astype(np.float32)
        wav = np.clip(io.resample(wav, sample_rate, target_rate), -1.0, 1.0)
        step = int(block_s * target_rate)
        for a in range(0, len(wav), step):
            yield wav[a : a + step]
        return
    path = Path(audio)
    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError, OSError):
        io.read(path)  # raises the precise error naming the file
        raise
    with f:
        rate = int(f.samplerate)
        stream = (
            None if rate == target_rate else soxr.ResampleStream(rate, target_rate, 1, "float32")
        )
        n_in = int(block_s * rate)
        read_any = False
        while True:
            data = f.read(n_in, dtype="float32", always_2d=True)
            last = len(data) < n_in
            read_any = read_any or len(data) > 0
            wav = data.mean(axis=1, dtype=np.float32) if len(data) else np.zeros(0, np.float32)
            if len(wav):
                io.check_waveform(wav, f"'{path}'")
            if stream is not None:
                wav = stream.resample_chunk(wav, last=last)
            if len(wav):
                yield np.clip(wav, -1.0, 1.0)
            if last:
                break
        if not read_any:
            raise io.AudioError(f"'{path}' holds no audio (zero-length)")


class Diarizer:
    """Who spoke when, with replaceable stages (see the module docstring).

    Args:
        embedder: the speaker model (any voxvec :class:`~voxvec.inference.Embedder`; its
            window and VAD options are not used: the diarizer windows the speech itself).
        config: window, block and batch options.
        activity: stage 1; default :class:`VadActivity` (``"auto"``).
        clusterer: stage 3; default :class:`SpectralClusterer` with the settings of the
            embedder's model card (:meth:`SpectralClusterer.from_card`).
        resegmenter: stage 4; default :class:`FrameResegmenter`.
        namer: names clusters after known speakers (e.g. a speaker store's identification);
            unnamed clusters become ``SPEAKER_00``, ``SPEAKER_01``... in order of appearance.
    """

    def __init__(
        self,
        embedder: Embedder,
        config: DiarizeConfig | None = None,
        *,
        activity: ActivityDetector | None = None,
        clusterer: Clusterer | None = None,
        resegmenter: FrameResegmenter | None = None,
        namer: Namer | None = None,
    ) -> None:
        self.config = config or DiarizeConfig()
        self.embedder = Embedder(
            embedder.model,
            card=embedder.card,
            window_s=self.config.window_s,
            hop_s=self.config.hop_s,
            vad="off",
            min_speech_s=0.0,
            precision=embedder.precision,
        )
        self.activity: ActivityDetector = activity or VadActivity("auto")
        self.clusterer: Clusterer = clusterer or SpectralClusterer.from_card(self.embedder.card)
        self.resegmenter = resegmenter or FrameResegmenter()
        self.namer = namer

    @property
    def sample_rate(self) -> int:
        """The rate the recording is processed at: the embedding model's."""
        return self.embedder.sample_rate

    def windows(
        self, audio: str | os.PathLike | np.ndarray, sample_rate: int | None = None
    ) -> Windows:
        """Stages 1 and 2 over a whole recording, block by block.

        Args:
            audio: an audio file, or a ``(T,)`` waveform at ``sample_rate``.
            sample_rate: the waveform's rate in Hz (arrays only).

        Returns:
            The window embeddings with their times and the speech and overlap spans.

        Raises:
            FileNotFoundError / AudioError: the file is missing or unreadable (named).
        """
        sr = self.sample_rate
        min_region = max(round(self.config.min_region_s * sr), self.embedder.model.min_samples)
        emb: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        regions: list[np.ndarray] = []
        speech: list[tuple[float, float]] = []
        overlap: list[tuple[float, float]] = []
        offset = 0
        for block in _blocks(audio, sample_rate, sr, self.config.block_s):
            act = self.activity(block, sr)
            overlap += [((offset + a) / sr, (offset + b) / sr) for a, b in act.overlap]
            long = [(i, a, b) for i, (a, b) in enumerate(act.speech) if b - a >= min_region]
            if long:
                found = self.embedder.embed_windows(
                    [block[a:b] for _, a, b in long], sr, batch_size=self.config.batch_size
                )
                for (i, a, _), win in zip(long, found, strict=True):
                    emb.append(win.embeddings)
                    starts.append(win.starts_s + (offset + a) / sr)
                    ends.append(win.ends_s + (offset + a) / sr)
                    regions.append(np.full(len(win.embeddings), len(speech) + i))
            speech += [((offset + a) / sr, (offset + b) / sr) for a, b in act.speech]
            offset += len(block)
        dim = self.embedder.embed_dim
        return Windows(
            embeddings=np.concatenate(emb) if emb else np.zeros((0, dim), np.float32),
            starts_s=np.concatenate(starts) if starts else np.zeros(0),
            ends_s=np.concatenate(ends) if ends else np.zeros(0),
            region=np.concatenate(regions) if regions else np.zeros(0, np.int64),
            speech_s=np.array(speech, dtype=np.float64).reshape(-1, 2),
            overlap_s=np.array(overlap, dtype=np.float64).reshape(-1, 2),
            duration_s=offset / sr,
        )

    def __call__(
        self,
        audio: str | os.PathLike | np.ndarray,
        sample_rate: int | None = None,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> Diarization:
        """Diarize one recording.

        Args:
            audio: an audio file (any format :func:`voxvec.audio.io.read` decodes), or a
                ``(T,)`` float waveform at ``sample_rate``.
            sample_rate: the waveform's rate in Hz (arrays only).
            num_speakers: the exact number of speakers (always respected when there is
                enough speech to find that many), or None to estimate it.
            min_speakers: the least number an estimate may give (default 1).
            max_speakers: the most number an estimate may give (default 10).

        Returns:
            The :class:`Diarization`; no segments (and no error) when there is no speech.

        Raises:
            FileNotFoundError / voxvec.audio.io.AudioError: the file is missing or unreadable;
                the message names it.
            ValueError: inconsistent speaker counts, or an array without ``sample_rate``.
        """
        count = SpeakerCount.of(num_speakers, min_speakers, max_speakers)
        source = os.fspath(audio) if not isinstance(audio, np.ndarray) else "input"
        win = self.windows(audio, sample_rate)
        labels = self.clusterer(win.embeddings, count)
        if count.num is not None and len(labels) and labels.max() + 1 < count.num:
            logger.warning(
                "%s: only %d distinct speaker windows, fewer than num_speakers=%d",
                source,
                labels.max() + 1,
                count.num,
            )
        segments, exclusive = self.resegmenter(win, labels)
        names = self._names(win, labels, exclusive)
        logger.info(
            "%s: %.1f s, %d windows, %d speakers", source, win.duration_s, len(labels), len(names)
        )

        def build(segs: list[tuple[float, float, int]]) -> tuple[Segment, ...]:
            return tuple(Segment(a, b, names[c]) for a, b, c in segs if b > a)

        return Diarization(source, win.duration_s, build(segments), build(exclusive))

    def _names(
        self, win: Windows, labels: np.ndarray, exclusive: list[tuple[float, float, int]]
    ) -> dict[int, str]:
        """Cluster -> label: known names from the namer, else SPEAKER_xx by first appearance."""
        clusters = list(dict.fromkeys(c for _, _, c in exclusive))
        known: dict[int, str] = {}
        if self.namer is not None and len(labels):
            centroids = _normalise(
                np.stack([win.embeddings[labels == c].mean(0) for c in clusters])
            )
            for c, name in zip(clusters, self.namer(centroids), strict=True):
                if name is not None:
                    known[c] = name
        names: dict[int, str] = {}
        n_unknown = 0
        for c in clusters:
            if c in known:
                names[c] = known[c]
            else:
                names[c] = f"SPEAKER_{n_unknown:02d}"
                n_unknown += 1
        return names


def store_namer(
    store: SpeakerStore, embedder: Embedder, threshold: float, margin: float = 0.05
) -> Namer:
    """A :data:`Namer` that names clusters after the enrolled speakers of a store.

    Each cluster centroid is identified with :meth:`voxvec.apps.store.SpeakerStore.identify`
    (the open-set rule of ``voxvec identify``: the best score must clear ``threshold`` and beat
    the runner-up by ``margin``). A name goes to at most one cluster per recording: when two
    clusters match the same speaker, the higher score keeps the name, the other stays unknown.

    Args:
        store: the speaker store (made with ``embedder``'s model).
        embedder: the model the diarizer embeds with.
        threshold: the cosine threshold (see
            :func:`voxvec.apps.calibration.identification_threshold`).
        margin: the least lead over the runner-up.

    Returns:
        The namer.

    Raises:
        voxvec.apps.identity.ModelMismatchError: the store was made with another model.
    """
    from voxvec.apps.identity import ModelIdentity

    model = ModelIdentity.of(embedder)
    store.model.check(model, f"speaker store {store.path}")

    def name(centroids: np.ndarray) -> list[str | None]:
        if not len(store):
            return [None] * len(centroids)
        matches = store.identify(centroids, model=model, threshold=threshold, margin=margin)
        best: dict[str, int] = {}
        for i, m in enumerate(matches):
            if m.speaker is not None and (
                m.speaker not in best or m.score > matches[best[m.speaker]].score
            ):
                best[m.speaker] = i
        return [
            m.speaker if best.get(m.speaker or "") == i else None for i, m in enumerate(matches)
        ]

    return name


def diarize(
    audio: str | os.PathLike | np.ndarray,
    embedder: Embedder | None = None,
    *,
    sample_rate: int | None = None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    config: DiarizeConfig | None = None,
) -> Diarization:
    """Who spoke when in one recording, with the default stages.

    Args:
        audio: an audio file or a ``(T,)`` waveform at ``sample_rate``.
        embedder: the speaker model; None loads voxvec's default model.
        sample_rate: the waveform's rate in Hz (arrays only).
        num_speakers, min_speakers, max_speakers: see :meth:`Diarizer.__call__`.
        config: see :class:`DiarizeConfig`.

    Returns:
        The :class:`Diarization`.

    Raises:
        As :meth:`Diarizer.__call__`.
    """
    if embedder is None:
        import voxvec

        embedder = voxvec.load()
    return Diarizer(embedder, config)(
        audio,
        sample_rate,
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
    )


__all__ = [
    "Activity",
    "ActivityDetector",
    "AgglomerativeClusterer",
    "Clusterer",
    "DIARIZATION_CARD_KEY",
    "DiarizeConfig",
    "Diarization",
    "Diarizer",
    "FrameResegmenter",
    "Segment",
    "SpeakerCount",
    "SpectralClusterer",
    "VadActivity",
    "Windows",
    "diarize",
    "store_namer",
    "write_outputs",
]
