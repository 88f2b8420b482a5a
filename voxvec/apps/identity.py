"""Which model made an embedding: embeddings of different models are not comparable.

A :class:`ModelIdentity` holds the model's name, its embedding size, its sample rate and a
fingerprint of its weights (sha256 over every tensor of its state dict, by name), so two bundles
with one name but different weights are told apart. Speaker stores and calibrations record the
identity of the model that made them and refuse another (:meth:`ModelIdentity.check`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxvec.inference import Embedder


class ModelMismatchError(ValueError):
    """Embeddings of one model were offered to a store or calibration made with another."""


@dataclass(frozen=True)
class ModelIdentity:
    """The model behind a set of embeddings.

    Attributes:
        name: the model's name (its card's ``name``, else its file), for messages.
        fingerprint: sha256 (hex) of the model's weights; what :meth:`check` compares.
        embed_dim: size D of its embeddings.
        sample_rate: the rate in Hz it takes audio at.
    """

    name: str
    fingerprint: str
    embed_dim: int
    sample_rate: int

    @classmethod
    def of(cls, embedder: Embedder) -> ModelIdentity:
        """The identity of an :class:`~voxvec.inference.Embedder`'s model (hashes its weights)."""
        from voxvec.weights.state import weights_fingerprint

        card = embedder.card
        name = card.get("name") or card.get("source") or type(embedder.model).__name__
        fingerprint = weights_fingerprint(embedder.model)
        return cls(str(name), fingerprint, embedder.embed_dim, embedder.sample_rate)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> ModelIdentity:
        """Read :meth:`to_dict`'s form back.

        Raises:
            ValueError: a field is missing or of the wrong type (the message names ``where``).
        """
        try:
            return cls(
                name=str(data["name"]),
                fingerprint=str(data["fingerprint"]),
                embed_dim=int(data["embed_dim"]),
                sample_rate=int(data["sample_rate"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{where}: the model identity {data!r} is malformed ({err}); expected name, "
                "fingerprint, embed_dim and sample_rate"
            ) from None

    def check(self, other: ModelIdentity, what: str) -> None:
        """Refuse embeddings of ``other`` in something made with this model.

        Args:
            other: the model the new embeddings come from.
            what: what was made with this model, for the message (e.g. ``"speaker store DIR"``).

        Raises:
            ModelMismatchError: the fingerprints or embedding sizes differ.
        """
        if other.fingerprint == self.fingerprint and other.embed_dim == self.embed_dim:
            return
        from voxvec.weights.pretrained import bundled_with_fingerprint

        # A record made under an alias (voxvec-default) names the bundled version with its weights.
        same = bundled_with_fingerprint(self.fingerprint) or self.name
        raise ModelMismatchError(
            f"{what} was made with model {self.name!r} (D={self.embed_dim}, weights "
            f"{self.fingerprint[:12]}); these embeddings come from {other.name!r} "
            f"(D={other.embed_dim}, weights {other.fingerprint[:12]}). Embeddings of different "
            f"models are not comparable: use --model {same} (the same weights), or make a new "
            "one with this model"
        )
