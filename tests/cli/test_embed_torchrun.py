"""``torchrun -m voxvec embed``: two real CPU processes (gloo) share the inputs, and the merged
output is the file one process writes, with each failed file reported once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voxvec.data.manifest import read_manifest
from voxvec.embedding_files import (
    output_lock,
    part_files,
    parts_folder,
    read_embeddings,
    side_files,
)

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ("--chunk-size", "2", "--batch-size", "3", "--device", "cpu", "-q")


@pytest.fixture
def manifest(shared_data: Path, tmp_path: Path) -> Path:
    """Nine real recordings of several speakers and, fifth, a file that is not audio."""
    items = read_manifest(shared_data / "speechocean762" / "manifest.csv")[::40][:9]
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    rows = [f"{item.path},{item.speaker}" for item in items]
    rows.insert(4, f"{bad},nobody")
    path = tmp_path / "inputs.csv"
    path.write_text("path,speaker\n" + "\n".join(rows) + "\n")
    return path


def _run(*argv: str | Path, processes: int = 1) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR"):
        env.pop(name, None)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = [sys.executable, *(launcher if processes > 1 else []), "-m", "voxvec", "embed"]
    return subprocess.run(
        [*command, *map(str, argv), *OPTIONS],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_two_processes_write_what_one_writes_and_report_the_bad_file_once(
    manifest: Path, tmp_path: Path
) -> None:
    single, merged = tmp_path / "single.csv", tmp_path / "merged.csv"
    one = _run(manifest, "--out", single)
    assert one.returncode == 1, one.stderr[-3000:]

    two = _run(manifest, "--out", merged, processes=2)

    assert two.returncode == 1, two.stderr[-3000:]  # a file failed: 1, as for one process
    assert "rank 1/2: embedding 10 files" in two.stderr
    assert merged.read_bytes() == single.read_bytes()  # the same rows, bit for bit
    assert side_files(merged)[2].read_bytes() == side_files(single)[2].read_bytes()
    assert two.stderr.count("notes.wav") == 1  # by the process that embedded it; one report
    assert two.stderr.count("embedded 9 files, 1 failed (1 cannot decode") == 1
    assert not parts_folder(merged).exists()
    table = read_embeddings(merged)
    assert len(table.embeddings) == 9 and "nobody" not in (table.speakers or [])


def test_a_failed_process_leaves_the_other_part_and_a_rerun_resumes_it(
    manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "emb.npz"
    with output_lock(part_files(out, 1)[0]):  # another job is writing rank 1's part
        failed = _run(manifest, "--out", out, processes=2)
    assert failed.returncode == 1 and not out.exists()  # torchrun: a process failed
    assert "1 of 2 parts missing: rank 1 (rank-00001.npz):" in failed.stderr, failed.stderr[-3000:]
    assert "is being written by another job" in failed.stderr
    assert part_files(out, 0)[1].is_file() and not part_files(out, 1)[1].exists()

    resumed = _run(manifest, "--out", out, "--resume", processes=2)

    assert "embedded 9 files, 1 failed" in resumed.stderr, resumed.stderr[-3000:]
    assert "(6 from the interrupted run)" in resumed.stderr  # rank 0's chunks: 0-1, 4-5, 8-9
    single = tmp_path / "single.csv"
    assert _run(manifest, "--out", single).returncode == 1
    a, b = read_embeddings(single), read_embeddings(out)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert (a.ids, a.speakers) == (b.ids, b.speakers)
