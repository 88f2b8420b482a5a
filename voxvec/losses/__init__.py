"""Training losses: :class:`GE2ELoss` (N speakers x M utterances), :class:`AAMSoftmax` and the
combined objective :class:`SpeakerLoss` built from a :class:`LossConfig`.

All are ``nn.Module`` objects with learned parameters (GE2E's scale and bias, AAM's class
sub-centres) that the trainer optimises and checkpoints together with the model.
"""

from voxvec.losses.combined import LossConfig, SpeakerLoss
from voxvec.losses.ge2e import GE2ELoss
from voxvec.losses.margin import AAMSoftmax

__all__ = ["AAMSoftmax", "GE2ELoss", "LossConfig", "SpeakerLoss"]
