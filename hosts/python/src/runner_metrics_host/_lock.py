"""One run per storage root (spec 7): the same ``flock`` on ``<root>/.lock`` as
the Rust host (host/src/lock.rs), so a Python run and a ``runner-metrics`` run
never work on one root at once."""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path

LOCK_FILE = ".lock"
POLL_INTERVAL = 0.05


class Busy(Exception):
    """Another run held the lock for longer than the wait."""


def acquire(root: Path, wait: float = 0.0) -> int:
    """The locked descriptor of ``<root>/.lock``, holding this pid; never follows a
    symlink or waits on a FIFO there (OSError naming what is there instead)."""
    path, deadline = root / LOCK_FILE, time.monotonic() + max(0.0, wait)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(0, "not a regular file", str(path))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"{path} is held by {_holder(fd)}") from None
                os.close(fd)
                time.sleep(POLL_INTERVAL)
                continue
            named, ours = os.stat(path, follow_symlinks=False), os.fstat(fd)
            if (named.st_dev, named.st_ino) != (ours.st_dev, ours.st_ino):
                os.close(fd)  # the holder removed it meanwhile: lock the new one
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        except FileNotFoundError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise


def release(root: Path, fd: int) -> None:
    """Removes the file while still holding it (a root looks the same after a run)."""
    try:
        os.unlink(root / LOCK_FILE)
    except OSError:
        pass
    os.close(fd)


def _holder(fd: int) -> str:
    text: str | None = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or None
    return f"pid {text}" if text and text.isdigit() else "another run"
