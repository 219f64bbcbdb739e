"""Columns a paper table shows beside its metric for every line (`PaperTable.columns` names them): what
each reads from a run record, how the tables show it, and the note that says what it is."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Optional, Union

from ..record import Record
from .paper import PaperTable

NA = "n/a"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


@dataclass(frozen=True)
class Column:
    name: str  # in the frame and CSV: <name>_mean and <name>_std (numbers), <name> (text)
    header: str
    note: str
    value: Callable[[Record], Union[float, str, None]]  # None where the record lacks it
    number: Callable[[float], str] = "{:,.2f}".format
    unit: str = ""  # after a shown number: "1.83 h"
    spread: bool = True  # show mean ± sample std over seeds (else the mean)
    beside_metric: bool = False  # right after the metric columns (else just before the Notes)
    text: bool = False  # distinct values over seeds, not a mean

    def summarize(self, recs: list[Record]) -> dict:
        """The line's numbers from the records of its seeds."""
        values = [self.value(r) for r in recs]
        if self.text:
            return {self.name: " / ".join(sorted({str(v) for v in values if v})) or NA}
        have = [float(v) for v in values if not _missing(v)]
        # every seed or none: a mean over some seeds would not be comparable with the metric's
        mean = statistics.fmean(have) if have and len(have) == len(recs) else math.nan
        std = statistics.stdev(have) if len(have) > 1 and len(have) == len(recs) else math.nan
        return {f"{self.name}_mean": mean, f"{self.name}_std": std}

    @property
    def frame_columns(self) -> list[str]:
        return [self.name] if self.text else [f"{self.name}_mean", f"{self.name}_std"]

    def show(self, line) -> str:
        """The cell of a line that has records."""
        if self.text:
            v = line[self.name]
            return v if isinstance(v, str) and v else NA
        mean, std = line[f"{self.name}_mean"], line[f"{self.name}_std"]
        if _missing(mean):
            return NA
        spread = f" ± {self.number(std)}" if self.spread and not _missing(std) else ""
        return self.number(mean) + spread + self.unit


def _lossless1k(paper: PaperTable) -> Column:
    key = f"{paper.metric}_lossless1k"  # finish.py: <metric>_<second test set>
    scale = 100.0 if paper.metric_unit == "%" else 1.0
    unit = f" ({paper.metric_unit})" if paper.metric_unit else ""

    def value(rec: Record) -> Optional[float]:
        v = rec.metric_extra.get(key)
        return None if v is None else scale * float(v)

    return Column(
        key, f"{paper.metric_label}{unit} ours, lossless first 1k",
        f"Lossless first 1k: the packed float32 model on the original (lossless) first 1,000 "
        f"CIFAR-10 test images, beside its {paper.metric_text} on the JPEG copies of the test set (the gap shows the "
        "JPEG effect); mean ± sample std over the seeds. n/a: a run that did not measure it (not on the JPEG "
        "copies; a run on the 1,000-image subset is measured on those same images in the main column).",
        value, number=f"{{:.{paper.decimals}f}}".format, beside_metric=True)


def _hours(h: float) -> str:
    return f"{h:,.2f}" if h >= 0.1 else f"{h:.4f}"  # a short run: to the second


def _wall_time(paper: PaperTable) -> Column:
    return Column(
        "wall_time_h", "Wall time (h)",
        "Wall time (h): the run's wall-clock time from the start of frx-train to its record (data loading, "
        "training, packing, evaluation; a resumed run adds its earlier parts), in hours, mean over the seeds. "
        "It compares only between lines that ran on the same (Ran on).",
        lambda rec: rec.wall_time_s / 3600.0, number=_hours, unit=" h", spread=False)


def ran_on(rec: Record) -> Optional[str]:
    """What a run ran on, short: "cpu, 2 threads", "cuda (NVIDIA H200)", "cuda, 4 processes"."""
    device = str(rec.device or "").split(":")[0]
    if not device:
        return None
    out = [f"{device} ({rec.versions['gpu']})" if device == "cuda" and rec.versions.get("gpu") else device]
    if device == "cpu" and rec.versions.get("threads"):
        out.append(f"{rec.versions['threads']} threads")
    if int(rec.versions.get("processes") or 1) > 1:
        out.append(f"{rec.versions['processes']} processes")
    return ", ".join(out)


def _ran_on(paper: PaperTable) -> Column:
    return Column(
        "ran_on", "Ran on",
        "Ran on: the run's device (the record's `device`), with torch's thread count on a CPU where the record "
        "has it (`versions.threads`; the processor is `versions.cpu`), the GPU's name where the record has it "
        "(`versions.gpu`) and the process count of a run on several; "
        "' / ' between seeds that ran on different ones.",
        ran_on, text=True)


COLUMNS: dict[str, Callable[[PaperTable], Column]] = {
    "lossless1k": _lossless1k, "wall_time": _wall_time, "ran_on": _ran_on}


def columns_for(paper: PaperTable) -> list[Column]:
    """The columns the paper table declares, in its order."""
    return [COLUMNS[name](paper) for name in paper.columns]
