"""A run folder is owned by one run at a time: an exclusive lock on <run dir>/.lock while the run lives."""

from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .config import UserError

LOCK = ".lock"


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold <run_dir>/.lock (flock, released by the OS however the process ends); a second run into the
    same folder gets a UserError instead of overwriting the first one's files."""
    f = open(Path(run_dir) / LOCK, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            raise UserError(f"{run_dir} is in use by another run ({owner}); "
                            "wait for it to end or set run.dir") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield
    finally:
        f.close()  # the file stays: removing it would let two runs lock two different files
