"""Figures of the tables: metric against kept weights, our runs beside the paper's points."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import figures
from ..record import Record
from .frames import is_not_compared, record_metric
from .paper import PAPER


def figure_points(number: int, records: list[Record], smoke: bool = False) -> pd.DataFrame:
    """One point per run: series, paper row, kept weights, metric (display units). Smoke runs (pipeline
    checks) only when `smoke`."""
    fp16 = {p.label: p.fp16 for p in PAPER[number].rows}
    pts = []
    for r in records:
        if r.table != number or (is_not_compared(r.scale) and not smoke):
            continue
        series = {"plain": "dense reference", "prune": "magnitude pruning (per layer)",
                  "converted": "authors' release, evaluated by frx"}.get(
            r.method, "FR (frx shape-aware)" if r.linear_view == "auto" else "FR (paper's transform)")
        pts.append({"series": f"{series}, {r.model} [{r.scale}]", "row": r.row, "kept": r.kept_weights,
                    "metric": record_metric(r, fp16.get(r.row, False))[0]})
    return pd.DataFrame(pts, columns=["series", "row", "kept", "metric"])


def write_figures(records: list[Record], out: Path, smoke: bool = False) -> None:
    """figures/table<N>_metric_vs_kept.png for each table with points (an old one of a table without
    points is removed, so that no figure outlives its records)."""
    for n, paper in PAPER.items():
        pts = figure_points(n, records, smoke)
        path = out / "figures" / f"table{n}_metric_vs_kept.png"
        if not len(pts):
            path.unlink(missing_ok=True)
        else:
            published = [(p.params, p.metric, p.label) for p in paper.rows if not p.ref]
            ylabel = paper.metric_label + (f" ({paper.metric_unit})" if paper.metric_unit else "")
            figures.metric_vs_kept(pts, path,
                                   title=f"Table {n}: {ylabel} vs kept weights", ylabel=ylabel,
                                   paper=published, lower_is_better=not paper.higher_is_better)
