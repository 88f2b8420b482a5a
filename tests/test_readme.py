"""The README's code runs as written: every block is either run here or says why it cannot be.

The blocks that run offline (the quick start's embed, the Python API, the evaluation command,
the export and its onnxruntime block, the offline torch.hub lines) run in a sandbox folder laid
out as the README assumes: the repository's ``configs`` beside ``../shared``, so that the
README's relative paths hold and what the commands write stays out of the repository.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import voxvec

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

NOT_RUN = {
    ("Quick start", 1): "installs and runs this test suite",
    ("Command line", 0): "placeholder files (recordings/, a.wav, long.wav ...)",
    ("Command line", 1): "torchrun over machines; tests/cli/test_embed_torchrun runs 2 processes",
    ("Who is this?", 0): "placeholder files (alice1.wav, unknown.wav, labelled.csv ...)",
    ("Who spoke when?", 0): "placeholder recordings (meeting.wav, call.wav); see tests/cli",
    ("Who spoke when?", 1): "placeholder model path and recording; see tests/apps",
    ("HTTP service", 0): "starts a server; tests/serve runs the real one",
    ("Training", 0): "placeholder corpora under /data",
    ("Training", 1): "placeholder manifests (mine/train.csv); tests/train fine-tunes",
    ("Training", 2): "trains the default model for an hour; tests/train distils",
    ("Training", 3): "torchrun on several GPUs or machines",
    ("Torch-free inference (ONNX)", 0): "run with its Python block (pip lines excepted)",
    ("Streaming", 1): "needs a microphone and sounddevice",
}
"""The blocks no test runs, and why (the others are run below)."""


def _blocks() -> dict[tuple[str, int], str]:
    """(section, index of the block in its section) -> the block's code, for every block."""
    text = README.read_text(encoding="utf-8")
    heads = [(m.start(), m.group(1)) for m in re.finditer(r"^#{2,3} (.+)$", text, re.M)]
    blocks: dict[tuple[str, int], str] = {}
    for m in re.finditer(r"^( *)```(?:bash|python)\n(.*?)^\1```", text, re.M | re.S):
        section = [head for pos, head in heads if pos < m.start()][-1]
        index = sum(1 for key in blocks if key[0] == section)
        blocks[(section, index)] = m.group(2)
    return blocks


RUN = {
    ("Quick start", 0),
    ("Python API", 0),
    ("Evaluation", 0),
    ("Export", 0),
    ("Export", 1),
    ("torch.hub", 0),
    ("Torch-free inference (ONNX)", 1),
    ("Streaming", 0),
}


def test_every_block_is_run_or_says_why_not() -> None:
    assert set(_blocks()) == RUN | set(NOT_RUN)


@pytest.fixture
def sandbox(shared_data: Path, tmp_path: Path) -> Path:
    """A folder where the README's relative paths (../shared/data, configs/) resolve."""
    if shared_data.resolve() != (REPO.parent / "shared" / "data").resolve():
        pytest.skip("the README's paths assume ../shared/data beside the repository")
    work = tmp_path / "voxvec"
    work.mkdir()
    (work / "configs").symlink_to(REPO / "configs")
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    return work


def _commands(block: str) -> list[str]:
    """The block's commands, continuation lines joined, comments and blank lines left out."""
    joined = block.replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one README command as a shell would, with this interpreter's ``voxvec``."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(
        shlex.split(command.split("  #")[0]),
        cwd=cwd,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    return proc


def test_quick_start_embeds_the_file(sandbox: Path) -> None:
    install, embed = _commands(_blocks()[("Quick start", 0)])
    assert install.startswith("pip install")  # not run: the package is installed
    _run(embed, sandbox)
    emb = np.load(sandbox / "emb.npy")
    assert emb.shape == (1, 256) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_python_api_block_runs(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sandbox)
    namespace: dict = {}
    exec(compile(_blocks()[("Python API", 0)], "README.md", "exec"), namespace)
    assert namespace["emb"].shape == (2, 256)
    assert namespace["alice"].shape == (256,)
    # a3 against a1 + a2: three recordings of one speaker, accepted at the card's threshold.
    embedder, score, same = namespace["embedder"], namespace["score"], namespace["same"]
    assert score == pytest.approx(
        voxvec.similarity(embedder.embed(namespace["a3"])[0], namespace["alice"]), abs=1e-4
    )
    assert same is True and score > embedder.threshold  # measured: 0.70 vs 0.46
    windows = namespace["windows"]
    assert windows.embeddings.shape[1] == 256 and len(windows.starts_s) > 5
    np.testing.assert_allclose(windows.ends_s[:-1] - windows.starts_s[:-1], 2.0)
    assert windows.ends_s[-1] == pytest.approx(windows.duration_s)


@pytest.mark.slow
def test_evaluation_command_gives_the_documented_numbers(sandbox: Path) -> None:
    command = _commands(_blocks()[("Evaluation", 0)])[0]
    _run(command, sandbox)
    report = json.loads((sandbox / "report.json").read_text())
    assert report["model"] == "voxvec-default" and report["n_failed_files"] == 0
    text = README.read_text(encoding="utf-8")
    eer = float(re.search(r"the first command of \"Evaluation\" gives EER ([\d.]+)%", text)[1])
    min_dcf = float(re.search(r"minDCF ([\d.]+) at\s+p_target 0.01 \(40,000 trials", text)[1])
    assert report["n_trials"] == 40000
    # bfloat16 rounds with the batch shape: the last digit may move between machines.
    assert report["raw"]["eer"] * 100 == pytest.approx(eer, abs=0.02)
    assert report["raw"]["min_dcf"]["0.01"]["value"] == pytest.approx(min_dcf, abs=0.002)
    assert (sandbox / "trials.txt").is_file()


@pytest.mark.slow
def test_export_blocks_run(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pip, export, placeholder = _commands(_blocks()[("Export", 0)])
    assert pip.startswith("pip install") and "runs/my-run" in placeholder  # not run
    _run(export, sandbox)
    monkeypatch.chdir(sandbox)
    namespace: dict = {}
    exec(compile(_blocks()[("Export", 1)], "README.md", "exec"), namespace)
    expected = voxvec.load(device="cpu", precision="float32", window_s=None).embed(
        namespace["wav"], sample_rate=16000
    )
    np.testing.assert_allclose(namespace["emb"], expected, atol=1e-4)


@pytest.mark.slow
def test_torch_free_inference_blocks_run(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    *exports, pip = _commands(_blocks()[("Torch-free inference (ONNX)", 0)])
    assert pip.startswith("pip install --no-deps")  # not run: the package is installed
    for command in exports:
        _run(command, sandbox)
    monkeypatch.chdir(sandbox)
    namespace: dict = {}
    exec(compile(_blocks()[("Torch-free inference (ONNX)", 1)], "README.md", "exec"), namespace)
    reference = voxvec.load(device="cpu", precision="float32")
    files = [namespace["a1"], namespace["a2"]]
    np.testing.assert_allclose(namespace["emb"], reference.embed(files), atol=1e-4)
    assert namespace["same"] is True and namespace["small"].precision == "int8"
    sizes = [(sandbox / f"voxvec-default{s}.onnx").stat().st_size for s in ("", "-int8")]
    assert round(sizes[0] / 1e6, 1) == 8.8 and round(sizes[1] / 1e6, 1) == 2.5


def test_streaming_block_gives_the_offline_windows(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sandbox)
    namespace: dict = {}
    exec(compile(_blocks()[("Streaming", 0)], "README.md", "exec"), namespace)
    embedder, result = namespace["embedder"], namespace["result"]
    offline = embedder.embed_windows(namespace["wav"], 16000)[0]
    np.testing.assert_array_equal(result.starts_s, offline.starts_s)
    # The Embedder's default precision: bfloat16 rounding differs with the batch shape.
    np.testing.assert_allclose(result.embeddings, offline.embeddings, atol=2e-3)
    assert namespace["running"] is not None and namespace["stream"].changes


def test_torch_hub_offline_lines_run() -> None:
    lines = _blocks()[("torch.hub", 0)].splitlines()
    offline = [line for line in lines if "downloads" not in line and "gru" not in line]
    assert len(offline) == 3  # import torch and the two offline entry points
    namespace: dict = {}
    code = "\n".join(offline).replace("/path/to/voxvec", str(REPO))
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["embedder"].precision in ("float32", "bfloat16")
    assert namespace["exact"].precision == "float32"
