"""Writing files safely: the bottom of frx, used by every layer above it (the FR package included)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path


def atomic_write(path, write) -> None:
    """Call write(file) on a temporary file, sync it and os.replace it onto `path`: a reader never
    sees a half-written file, and nothing needs to be held in memory whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path, data: bytes) -> None:
    """`atomic_write` of one bytes object."""
    atomic_write(path, lambda f: f.write(data))


_TEMP_NAME = re.compile(r"\.(.+)\.(\d+)\.tmp")  # atomic_write's temporary files
STALE_AFTER_S = 600


def remove_stale_temp_files(folder) -> list[Path]:
    """Delete the temporary files that killed atomic writes left in `folder`: only names that
    atomic_write makes, whose process is gone and that are older than STALE_AFTER_S (a writer on
    another machine sharing the folder has long finished by then). Returns the removed paths."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP_NAME.fullmatch(p.name)
        if m is None or not p.is_file() or time.time() - p.stat().st_mtime < STALE_AFTER_S:
            continue
        try:
            os.kill(int(m.group(2)), 0)
            continue  # its writer still runs
        except ProcessLookupError:
            pass
        except PermissionError:  # a live process of another user
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed
