"""Atomic file writes: write to a temporary file beside the target, then rename, so a crash never leaves a
half-written checkpoint or image behind."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temporary path in the target's folder; on success it is fsync-ed and renamed onto ``target``.

    The file gets the permissions a plain ``open(target, "w")`` would give it: the target's own where it exists,
    else 0o666 less the umask.  ``mkstemp`` creates it 0o600, which would leave checkpoints and restored images
    unreadable to a group that shares the run's folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _mode_for(target: Path) -> int:
    """Permission bits for a new version of ``target``: its own where it exists, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask: from /proc on Linux, since os.umask can only read it by setting it, which for that
    instant would give files that another thread creates no mask at all."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)  # elsewhere: read it by setting the strictest mask for that instant, then set it back
    os.umask(umask)
    return umask


def check_writable(folder) -> None:
    """Create ``folder`` and write a file in it, so that a tool whose outputs go there finds a read-only or missing
    place before its work, not after; raises OSError."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
