"""A run folder is owned by one run at a time: an exclusive lock on <run dir>/.lock while the run lives."""

from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .config import UserError

LOCK = ".lock"
# run folders whose lock this process took before Hydra wrote into them (frx.checks.ValidateFirst); `locked`
# then takes the lock over for the run
_held: dict[Path, IO] = {}


def _lock(run_dir: Path) -> IO:
    f = open(Path(run_dir) / LOCK, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        owner = f.read().strip() or "another process"
        f.close()
        raise UserError(f"{run_dir} is in use by another run ({owner}); wait for it to end or set run.dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f


def hold(run_dir: Path) -> None:
    """Take the lock of `run_dir` (made if missing) until `release`, for the run this process starts next."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    key = Path(run_dir).resolve()
    if key not in _held:
        _held[key] = _lock(run_dir)


def release(run_dir: Path) -> None:
    f = _held.pop(Path(run_dir).resolve(), None)
    if f is not None:
        f.close()


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold <run_dir>/.lock (flock, released by the OS however the process ends); a second run into the
    same folder gets a UserError instead of overwriting the first one's files."""
    f = _held.pop(Path(run_dir).resolve(), None) or _lock(run_dir)  # taken by `hold` for this run, or now
    try:
        yield
    finally:
        f.close()  # the file stays: removing it would let two runs lock two different files
