"""torch.hub entry points of voxvec: ``torch.hub.load(repo, "convgru_embedder")``.

See ``voxvec/hub.py`` for what each returns. Only model constructors are public here, so
``torch.hub.list`` shows exactly the models.
"""

from voxvec.hub import convgru_embedder, convgru_embedder_sc09, gru_embedder, voxvec_default

dependencies = ["torch", "numpy", "soundfile", "soxr", "safetensors"]

__all__ = ["convgru_embedder", "convgru_embedder_sc09", "gru_embedder", "voxvec_default"]
