"""The package version, in one place: ``pyproject.toml`` reads it, ``voxvec.__version__`` shows it.

Modules below the package root (``voxvec.train`` stamping model cards, the CLI) import it from
here, so none of them imports the root package's API.
"""

__version__ = "0.2.0"
