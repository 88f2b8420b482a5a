"""voxvec.atomic: files appear complete or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from voxvec.atomic import atomic_open, atomic_path


def test_written_file_appears_complete_in_a_new_folder(tmp_path: Path) -> None:
    target = tmp_path / "new" / "out.csv"
    with atomic_open(target) as f:
        f.write("path,speaker\n")
        assert not target.exists()  # nothing under the real name until the block ends
    assert target.read_text() == "path,speaker\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.csv"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_files_get_normal_permissions_whatever_the_writer_used(tmp_path: Path) -> None:
    """safetensors creates owner-only (0600) files; a model bundle must be readable by others."""
    import os
    import stat

    target = tmp_path / "bundle.safetensors"
    with atomic_path(target) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"x")
        os.close(fd)
    old = os.umask(0o027)
    try:
        with atomic_open(tmp_path / "strict.csv") as f:
            f.write("a\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~old
    assert stat.S_IMODE((tmp_path / "strict.csv").stat().st_mode) == 0o640


def test_a_write_error_names_the_file(tmp_path: Path) -> None:
    """A full disk or a file-size limit says which file could not be written."""
    import errno

    target = tmp_path / "manifest.csv"
    with pytest.raises(OSError, match=r"cannot write .*manifest\.csv: No space left") as info:
        with atomic_path(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
    named = tmp_path / "other.bin"
    with pytest.raises(OSError) as kept, atomic_path(target):
        raise FileNotFoundError(errno.ENOENT, "gone", str(named))
    assert kept.value.filename == str(named)  # an error that names its file is left as it is
