"""Is this the same person? Verification of two sides (each one or several recordings) with a
threshold that says where it came from, and a calibrated log-likelihood ratio when a
:class:`~voxvec.apps.calibration.Calibration` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voxvec.apps.calibration import Calibration, resolve_threshold

if TYPE_CHECKING:
    from voxvec.inference import Embedder, EmbedInput


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify`.

    Attributes:
        score: cosine similarity of the two sides' speaker embeddings, in [-1, 1].
        llr: calibrated log-likelihood ratio (natural log), None without a calibration.
        same: the decision (score >= threshold), None when no threshold is known.
        threshold: the cosine threshold used, or None.
        threshold_source: where the threshold came from, in words ("" when none).
        n_a, n_b: recordings on each side.
    """

    score: float
    llr: float | None
    same: bool | None
    threshold: float | None
    threshold_source: str
    n_a: int
    n_b: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "score": self.score,
            "llr": self.llr,
            "same": self.same,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "n_a": self.n_a,
            "n_b": self.n_b,
        }


def verify(
    embedder: Embedder,
    a: EmbedInput,
    b: EmbedInput,
    *,
    threshold: float | str | None = None,
    calibration: Calibration | None = None,
    sample_rate: int | None = None,
) -> Verification:
    """Whether ``a`` and ``b`` are the same speaker.

    Each side is embedded as one speaker: the re-normalised mean of its recordings
    (:meth:`~voxvec.inference.Embedder.embed_speaker`).

    Args:
        embedder: the model.
        a, b: inputs as :meth:`~voxvec.inference.Embedder.embed` accepts (a path, a list of
            paths and waveforms...).
        threshold: a cosine score or an operating-point name (of ``calibration`` when given,
            else of the model card); None for the ``"eer"`` point.
        calibration: a calibration of this model (gives the llr and its operating points).
        sample_rate: rate in Hz of any waveforms given.

    Returns:
        The score, llr, decision and threshold.

    Raises:
        ValueError: an unknown operating point; an input fails (as ``embed``).
        voxvec.apps.identity.ModelMismatchError: the calibration is of another model.
    """
    from voxvec.inference import similarity

    chosen = resolve_threshold(threshold, embedder, calibration)
    emb_a = embedder.embed(a, sample_rate)
    emb_b = embedder.embed(b, sample_rate)
    for side, emb in (("a", emb_a), ("b", emb_b)):
        if len(emb) == 0:
            raise ValueError(f"side {side} holds no recording")
    score = float(similarity(emb_a.mean(0), emb_b.mean(0)))
    llr = None if calibration is None else float(calibration.llr([score])[0])
    return Verification(
        score=score,
        llr=llr,
        same=None if chosen is None else score >= chosen.value,
        threshold=None if chosen is None else chosen.value,
        threshold_source="" if chosen is None else chosen.source,
        n_a=len(emb_a),
        n_b=len(emb_b),
    )
