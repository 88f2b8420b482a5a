"""Training: configs, the torchrun-aware loop, checkpoints and export.

``voxvec train`` and ``voxvec export`` are thin wrappers over :func:`train` and
:func:`export_checkpoint`::

    from voxvec.train import export_checkpoint, load_config, train

    final = train(load_config("configs/convgru.yaml", ["data.train_csv=train.csv",
                                                       "checkpoint.path=runs/convgru"]))
    export_checkpoint(final, "convgru.safetensors")
"""

from voxvec.train.checkpoint import export_checkpoint
from voxvec.train.config import TrainConfig, load_config
from voxvec.train.loop import Trainer, train

__all__ = ["TrainConfig", "Trainer", "export_checkpoint", "load_config", "train"]
