"""voxvec: speaker embeddings in PyTorch.

The public API: :func:`load`, :func:`available_models`, :func:`embed`, :func:`similarity`.
"""

__version__ = "0.1.0"
