"""Atomic file writes: a file appears at its final path only once it is complete.

Everything voxvec writes that others read back (manifests, trial lists, the decoded-audio cache,
checkpoints, model bundles) goes through :func:`atomic_path`, so an interrupted job never leaves
a truncated file behind under a real name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


def write_error(path: str | os.PathLike[str], err: OSError) -> OSError:
    """``err`` as an error that names ``path`` ("cannot write PATH: No space left on device");
    ``err`` itself when it already names a file.

    A full disk or a file-size limit raise errors without a file name; every writer in voxvec
    reports them through this, so the user learns which file could not be written.
    """
    if err.filename is not None or str(path) in str(err):
        return err
    return type(err)(err.errno or errno.EIO, f"cannot write {path}: {err.strerror or err}")


def _umask() -> int:
    """The process's umask: from /proc where it can be read without changing it (Linux),
    else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over ``path`` when the block ends.

    The folder is created if needed. Write the whole file to the yielded path (and close it)
    inside the block; if the block raises, the temporary file is removed and ``path`` is left as
    it was (an :class:`OSError` that does not name a file gets the target's name, as a full disk
    or a file-size limit do not). The temporary name is unique, so concurrent writers never
    share it. The file gets the
    permissions of a normal new file (``0o666`` less the umask), whatever the writer used for
    the temporary (some libraries create owner-only files).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        named = write_error(target, e)
        if named is e:
            raise
        raise named from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[TextIO]:
    """A UTF-8 text file open for writing that appears at ``path`` only once complete."""
    with atomic_path(path) as tmp, tmp.open("x", newline="", encoding="utf-8") as f:
        yield f
