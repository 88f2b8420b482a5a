"""Training losses: :class:`GE2ELoss` (N speakers x M utterances) and :class:`AAMSoftmax`.

Both are ``nn.Module`` objects with learned parameters (GE2E's scale and bias, AAM's class
sub-centres) that the trainer optimises and checkpoints together with the model.
"""

from voxvec.losses.ge2e import GE2ELoss
from voxvec.losses.margin import AAMSoftmax

__all__ = ["AAMSoftmax", "GE2ELoss"]
