"""Run records: one JSON file per finished run, the input of `frx-report`.

The format (schema 1) is documented in the README; `REQUIRED` lists its top-level
fields. Records are written atomically (temporary file + `os.replace`), so a
reader never sees half a record and a crash never leaves a corrupt one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping

from .fr.codec import atomic_write_bytes

SCHEMA = 1
REQUIRED = (
    "schema", "experiment", "table", "row", "variant", "method", "scale", "model", "dataset", "task",
    "seed", "device", "git_commit", "versions", "config", "epochs", "metric", "metric_extra",
    "tensors", "counts", "packed_bytes", "wall_time_s", "created",
)
METRIC_FIELDS = ("name", "higher_is_better", "value", "value_fp16", "value_live")


def write(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Check `record` and write it atomically as indented JSON."""
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"record lacks fields {missing}")
    missing = [k for k in METRIC_FIELDS if k not in record["metric"]]
    if missing:
        raise ValueError(f"record metric lacks fields {missing}")
    # default=str: a stray Path or numpy scalar must not lose a finished run at the last step
    atomic_write_bytes(path, (json.dumps(record, indent=1, allow_nan=True, default=str) + "\n").encode())
    return Path(path)


def read(path: str | os.PathLike) -> dict:
    with open(path) as f:
        return json.load(f)


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The checked-out commit of the source tree (with "+dirty" when it has local changes)."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import torch

    try:
        from importlib.metadata import version

        frx_version = version("frx")
    except Exception:  # not installed as a distribution (source tree on sys.path)
        frx_version = None
    return {"python": platform.python_version(), "torch": torch.__version__, "frx": frx_version}


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
