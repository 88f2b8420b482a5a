"""Tests for voxvec.eval.plots: 2-D projections written as PNG."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from voxvec.eval.plots import plot_embeddings, project_2d, projection_figure


def clusters(n_speakers: int, files: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_speakers, 16)) * 3
    x = np.repeat(centres, files, axis=0) + rng.normal(size=(n_speakers * files, 16))
    return x, [f"spk{k}" for k in range(n_speakers) for _ in range(files)]


def test_tsne_projection_keeps_speakers_apart() -> None:
    pytest.importorskip("sklearn")
    x, speakers = clusters(3, 10)
    points = project_2d(x, method="tsne", seed=0)
    assert points.shape == (30, 2) and np.all(np.isfinite(points))
    labels = np.array(speakers)
    centres = np.stack([points[labels == s].mean(0) for s in sorted(set(speakers))])
    within = np.mean(
        [
            np.linalg.norm(points[labels == s] - c, axis=1).mean()
            for s, c in zip(sorted(set(speakers)), centres, strict=True)
        ]
    )
    between = np.mean(
        [np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1 :]]
    )
    assert between > 2 * within


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    x, speakers = clusters(4, 8)
    out = plot_embeddings(x, speakers, tmp_path / "figs" / "tsne.png", method="tsne")
    assert out == tmp_path / "figs" / "tsne.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5000


def test_speaker_cap_is_seeded() -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    x, speakers = clusters(8, 4)
    fig = projection_figure(x, speakers, method="tsne", max_speakers=3, seed=1)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(legend) == 3 and set(legend) < set(speakers)
    again = projection_figure(x, speakers, method="tsne", max_speakers=3, seed=1)
    assert [t.get_text() for t in again.axes[0].get_legend().get_texts()] == legend
    other = projection_figure(x, speakers, method="tsne", max_speakers=3, seed=2)
    assert [t.get_text() for t in other.axes[0].get_legend().get_texts()] != legend


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` fail
    with pytest.raises(ImportError, match=r"voxvec\[plot\]"):
        project_2d(np.ones((5, 3)), method="umap")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="method"):
        project_2d(np.ones((5, 3)), method="pca")
    with pytest.raises(ValueError, match="N >= 3"):
        project_2d(np.ones((2, 3)), method="tsne")
    with pytest.raises(ValueError, match="speaker ids"):
        projection_figure(np.ones((5, 3)), ["a"], method="tsne")


def test_check_plot_dependencies_fails_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from voxvec.eval.plots import check_plot_dependencies

    with pytest.raises(ValueError, match="unknown projection method 'pca'"):
        check_plot_dependencies("pca")
    real = importlib.util.find_spec
    for method, module, package in (
        ("umap", "umap", "umap-learn"),
        ("tsne", "sklearn", "scikit-learn"),
        ("tsne", "matplotlib", "matplotlib"),
    ):
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a, m=module: None if name == m else real(name, *a),
        )
        with pytest.raises(ImportError, match=rf"{package} is needed .*voxvec\[plot\]"):
            check_plot_dependencies(method)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    check_plot_dependencies("umap")
