"""``torchrun -m voxvec embed``: two real CPU processes (gloo) share the inputs, and the merged
output is the file one process writes, with each failed file reported once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_embed import SLOW_VOXVEC  # voxvec with every chunk 0.2 s slower
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


def _command(*argv: str | Path, processes: int = 1, script: Path | None = None) -> list[str]:
    """``voxvec embed ARGV``, in ``processes`` processes by torchrun (``script`` instead of
    ``-m voxvec``)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    program = ["-m", "voxvec"] if script is None else [str(script)]
    prefix = [sys.executable, *(launcher if processes > 1 else []), *program, "embed"]
    return [*prefix, *map(str, argv), *OPTIONS]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR"):
        env.pop(name, None)
    return env


def _run(*argv: str | Path, processes: int = 1) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*argv, processes=processes), env=_env(), capture_output=True, text=True,
        timeout=300,
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


def test_a_process_killed_outright_stops_the_job_and_resume_finishes_it(
    manifest: Path, tmp_path: Path
) -> None:
    out, script = tmp_path / "emb.npy", tmp_path / "slow_voxvec.py"
    script.write_text(SLOW_VOXVEC)
    part = part_files(out, 1)[0]
    journal, lock, _ = side_files(part)
    job = subprocess.Popen(
        _command(manifest, "--out", out, processes=2, script=script),
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not (journal.is_file() and journal.read_bytes().count(b"\n") >= 2):
        assert job.poll() is None, job.stderr.read() if job.stderr else ""
        assert time.monotonic() < deadline, "rank 1 never finished a chunk"
        time.sleep(0.01)
    os.kill(int(lock.read_text()), signal.SIGKILL)  # rank 1, which holds its part's lock
    _, err = job.communicate(timeout=120)
    assert job.returncode != 0 and not out.exists(), err[-3000:]
    assert not part_files(out, 1)[1].exists() and journal.is_file()  # killed in its part

    resumed = _run(manifest, "--out", out, "--resume", processes=2)

    assert resumed.returncode == 1, resumed.stderr[-3000:]  # the bad file
    assert "from the interrupted run)" in resumed.stderr  # at least rank 1's first chunk
    single = tmp_path / "single.npy"
    assert _run(manifest, "--out", single).returncode == 1
    assert out.read_bytes() == single.read_bytes()
    assert not parts_folder(out).exists()
