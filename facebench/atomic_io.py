"""Files that are either whole or absent, with the permissions a shared folder needs, and a
full disk reported as such.

Records, caches and checkpoints are read by other runs, other users of a group's results
folder and the leaderboard; so a write goes to a temporary name beside its target and is
renamed over it only when complete, the file gets the mode the process's umask asks for (a
temporary file's 0600 would lock a group out), and running out of space is a named error
instead of a library's torn-write message or a SIGBUS from a memory-mapped page.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from facebench.errors import FacebenchError

_UMASK_LOCK = threading.Lock()
#: errno values that mean the device or the user's quota is full.
FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(FacebenchError):
    """No space left where facebench had to write; the message names the file and the fix."""


def disk_full(path: Path, exc: OSError, what: str) -> DiskFullError:
    """The error to raise for ``exc`` (errno ENOSPC or EDQUOT) while writing ``path``."""
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there now"
    except OSError:
        free = "free space unknown"
    return DiskFullError(
        f"no space left on the device holding {path.parent} while writing {what} {path.name} "
        f"({os.strerror(exc.errno)}; {free}). "
        "Free space there, or point the setting that chose this folder elsewhere (cache_dir / $FACEBENCH_CACHE "
        "for decoded images, results_root / $FACEBENCH_RESULTS for records and checkpoints).",
    )


def current_umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, write: Callable[[Any], None], suffix: str = "", what: str = "file") -> None:
    """Write through ``write(fileobj)`` into a temp file beside ``path``, then rename over it.

    The file gets mode 0666 less the umask, as ``open`` would give it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix + ".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in FULL:
            raise disk_full(path, exc, what) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def preallocate(path: Path, what: str) -> None:
    """Reserve every byte of ``path`` on disk now, so that writing through a memory map can never
    hit a full disk (which the kernel reports with SIGBUS, killing the process without a word)."""
    try:
        with open(path, "r+b") as fh:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
    except OSError as exc:
        if exc.errno in FULL:
            path.unlink(missing_ok=True)
            raise disk_full(path, exc, what) from exc
        raise
