"""2-D projections of embeddings coloured by speaker (UMAP or t-SNE), as PNG figures.

Needs the ``plot`` extra (``pip install 'voxvec[plot]'``): matplotlib, plus umap-learn for UMAP
or scikit-learn for t-SNE. Everything is imported inside the functions.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METHODS = ("umap", "tsne")
_NAMES = {"umap": "UMAP", "tsne": "t-SNE"}
_PACKAGES = {"umap": ("umap", "umap-learn"), "tsne": ("sklearn", "scikit-learn")}
"""method -> (module, package) of its projection."""


def _missing(package: str, err: ImportError) -> ImportError:
    return ImportError(
        f"{package} is needed for embedding plots: pip install 'voxvec[plot]' ({err})"
    )


def check_plot_dependencies(method: str = "umap") -> None:
    """Fail now, not after the embedding, when a plot with ``method`` could not be drawn.

    Raises:
        ValueError: unknown method.
        ImportError: matplotlib or the method's package is missing (names the extra).
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}; valid: {', '.join(METHODS)}")
    needed = {"matplotlib": "matplotlib", _PACKAGES[method][0]: _PACKAGES[method][1]}
    for module, package in needed.items():
        if importlib.util.find_spec(module) is None:
            raise _missing(package, ImportError(f"no module named {module!r}"))


def project_2d(embeddings: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """Project embeddings to 2-D with cosine distance.

    Args:
        embeddings: ``(N, D)`` with N >= 3.
        method: ``"umap"`` (umap-learn) or ``"tsne"`` (scikit-learn).
        seed: random state of the projection.

    Returns:
        ``(N, 2)`` float coordinates.

    Raises:
        ValueError: unknown method or fewer than 3 points.
        ImportError: the method's package is missing (names the extra to install).
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}; valid: {', '.join(METHODS)}")
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"need (N, D) embeddings with N >= 3 to project, got shape {x.shape}")
    n = x.shape[0]
    if method == "umap":
        try:
            import umap
        except ImportError as err:
            raise _missing("umap-learn", err) from err
        reducer: Any = umap.UMAP(
            n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed
        )
    else:
        try:
            from sklearn.manifold import TSNE
        except ImportError as err:
            raise _missing("scikit-learn", err) from err
        # Barnes-Hut only pays off for large N; on a few hundred points exact is faster
        reducer = TSNE(
            n_components=2,
            perplexity=min(30.0, (n - 1) / 3),
            metric="cosine",
            init="pca",
            method="exact" if n <= 500 else "barnes_hut",
            random_state=seed,
        )
    return np.asarray(reducer.fit_transform(x), dtype=np.float64)


def projection_figure(
    embeddings: np.ndarray,
    speakers: Sequence[str],
    *,
    method: str = "umap",
    max_speakers: int = 20,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """A scatter plot of the 2-D projection, one colour per speaker (for files or tensorboard).

    Args:
        embeddings: ``(N, D)`` embeddings.
        speakers: ``(N,)`` speaker id of each row.
        method: ``"umap"`` or ``"tsne"``.
        max_speakers: plot at most this many speakers (a seeded random choice) so colours stay
            distinguishable.
        seed: seed of the speaker choice and the projection.
        title: figure title; None names the method and counts.

    Returns:
        A matplotlib ``Figure`` (not attached to pyplot, so nothing global changes).

    Raises:
        ValueError: ``speakers`` does not match ``embeddings``, or as :func:`project_2d`.
        ImportError: matplotlib or the projection package is missing.
    """
    x = np.asarray(embeddings)
    if len(speakers) != len(x):
        raise ValueError(f"{len(speakers)} speaker ids for {len(x)} embeddings")
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise _missing("matplotlib", err) from err
    names = sorted(set(speakers))
    if len(names) > max_speakers:
        rng = np.random.default_rng(seed)
        names = sorted(rng.choice(names, max_speakers, replace=False).tolist())
    chosen = set(names)
    rows = [i for i, s in enumerate(speakers) if s in chosen]
    points = project_2d(x[rows], method=method, seed=seed)
    labels = [speakers[i] for i in rows]

    fig = Figure(figsize=(8, 6.5), dpi=120)
    ax = fig.add_subplot()
    colours = _colours(len(names))
    for k, name in enumerate(names):
        mask = np.array([s == name for s in labels])
        ax.scatter(points[mask, 0], points[mask, 1], s=14, color=colours[k], label=name)
    ax.set_title(title or f"{_NAMES[method]} of {len(rows)} embeddings, {len(names)} speakers")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(names) <= 20:
        ax.legend(fontsize="x-small", markerscale=1.5, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n <= 20 else "hsv"]
    return [cmap(k / max(n, 1)) if n > 20 else cmap(k) for k in range(n)]


def plot_embeddings(
    embeddings: np.ndarray,
    speakers: Sequence[str],
    path: str | os.PathLike[str],
    *,
    method: str = "umap",
    max_speakers: int = 20,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Write :func:`projection_figure` to an image file (PNG, or what the suffix names).

    Returns:
        The path written.

    Raises:
        As :func:`projection_figure`.
    """
    fig = projection_figure(
        embeddings, speakers, method=method, max_speakers=max_speakers, seed=seed, title=title
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
