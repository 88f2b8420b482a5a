"""The README's Python API block runs as written on the real files it names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import voxvec

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block(section: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}\n")
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match is not None, f"no python block in README section {section!r}"
    return match.group(1)


def test_python_api_block_runs(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The block names files as ../shared/data/... from the repository root.
    if shared_data.resolve() != (README.parent.parent / "shared" / "data").resolve():
        pytest.skip("the README's paths assume ../shared/data beside the repository")
    monkeypatch.chdir(README.parent)
    namespace: dict = {}
    exec(compile(_python_block("Python API"), "README.md", "exec"), namespace)
    assert namespace["emb"].shape == (2, 256)
    assert namespace["alice"].shape == (256,)
    # a3 against a1 + a2: three recordings of one speaker, accepted at the card's threshold.
    embedder, score, same = namespace["embedder"], namespace["score"], namespace["same"]
    assert score == pytest.approx(
        voxvec.similarity(embedder.embed(namespace["a3"])[0], namespace["alice"]), abs=1e-4
    )
    assert same is True and score > embedder.threshold  # measured: 0.63 vs 0.39
    windows = namespace["windows"]
    assert windows.embeddings.shape[1] == 256 and len(windows.starts_s) > 5
    np.testing.assert_allclose(windows.ends_s[:-1] - windows.starts_s[:-1], 2.0)
    assert windows.ends_s[-1] == pytest.approx(windows.duration_s)
