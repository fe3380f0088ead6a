"""An exclusive lock on a results directory, held for a whole run and released when the process ends.

The lock is ``fcntl.flock`` on ``DIR/.lock``. The kernel drops it when the process that holds it exits,
however it exits (SIGKILL and out-of-memory kills included), so a killed run never leaves a stale lock
behind and the same command resumes at once; while a run lives, a second run on the same directory is
refused, never mixed in. The holder writes its pid, host, command and start time into the file, so the
refusal names it. The file itself stays: deleting a lock file would race with a process opening it.

flock locks are advisory (they bind only processes that ask for them) and work on local file systems
and on NFS (Linux emulates them with POSIX byte-range locks there).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

LOCK = ".lock"


class LockError(RuntimeError):
    """The directory is locked by another process; the message names it and says what to do."""


class DirectoryLock:
    """The lock of one directory; a context manager. ``path`` follows the directory if it is renamed."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, what: str = "run") -> DirectoryLock:
        """Take the lock without waiting.

        Args:
            what: what the caller does, for the refusal message ("run", "analysis").

        Raises:
            LockError: another process holds it.
            OSError: the lock file cannot be created (no permission, read-only file system).
        """
        path = self.directory / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = _holder_of(fd)
            os.close(fd)
            raise LockError(
                f"{self.directory} is in use by another {holder or 'process'}; one process at a time may write "
                f"a results directory, so this {what} is refused rather than mixed in. Wait for the other to "
                "finish (then run this command again), or give another --out."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, _holder(what).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (also done by the kernel when the process ends)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(what: str) -> str:
    """Who holds the lock, in words."""
    command = " ".join(["python", *sys.argv]) if sys.argv and sys.argv[0] else "python"
    since = datetime.now(UTC).isoformat(timespec="seconds")
    return f"{what} (pid {os.getpid()} on {socket.gethostname()}, started {since}: {command[:200]})"


def _holder_of(fd: int, wait: float = 0.2) -> str:
    """The holder's description, waiting up to ``wait`` seconds for it.

    The holder writes it just after taking the lock, so a process refused in that instant would
    otherwise find the file empty and could not say who holds the directory.
    """
    deadline = time.monotonic() + wait
    while not (holder := _read(fd)) and time.monotonic() < deadline:
        time.sleep(0.002)
    return holder


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 400, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def try_lock(directory: str | Path) -> DirectoryLock | None:
    """The lock of ``directory`` if no one holds it, else None."""
    try:
        return DirectoryLock(directory).acquire()
    except (LockError, OSError):
        return None
