"""metrics.csv in the run folder: a row per logged optimizer step (every trainer.log_every steps,
by default each) and a row per epoch, for spreadsheets, pandas or any plotting tool (like
Lightning's CSVLogger). The epoch rows are the record's `epochs`; the step rows add the step's
loss(es), kept count, beta and learning rate. Rewritten after every
epoch (and on Ctrl-C), so it always matches the last checkpoint."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .files import atomic_write_bytes

FILENAME = "metrics.csv"
FIRST = ["kind", "epoch", "step"]


def rows(steps: list[dict], epochs: list[dict]) -> list[dict]:
    """Step rows (kind "step") then, after each epoch's steps, its epoch row (kind "epoch")."""
    out = [{"kind": "step", **s} for s in steps] + [{"kind": "epoch", **e} for e in epochs]
    return sorted(out, key=lambda r: (r["epoch"], r["kind"] == "epoch"))  # stable: steps keep their order


def write(path: str | Path, steps: list[dict], epochs: list[dict]) -> None:
    table = rows(steps, epochs)
    columns = list(FIRST)
    for r in table:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    atomic_write_bytes(path, buf.getvalue().encode())
