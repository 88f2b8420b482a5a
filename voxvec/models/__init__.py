"""Model architectures; importing this package registers every one of them.

One architecture per file, each with its frozen config dataclass, registered by name.
"""

from voxvec.models import convgru, ecapa, gru
from voxvec.models.base import SpeakerEncoder

__all__ = ["SpeakerEncoder", "convgru", "ecapa", "gru"]
