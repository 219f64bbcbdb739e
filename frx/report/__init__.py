"""frx-report: run records -> the paper's Tables 1-4 (see `frx.report.cli` for what is written).

- `paper`: the published numbers and the notes printed under each table,
- `columns`: the further columns a paper table declares (what each reads from a record, its note),
- `frames`: records -> numeric frames (one line per paper row and run group),
- `writers`: Markdown / CSV / LaTeX tables and per-layer files,
- `figures`: metric against kept weights,
- `cli`: `generate()` and the `frx-report` command.
"""

from .cli import generate, main
from .frames import NA, NOT_RUN, PIPELINE_CHECK, REDUCED_SCALE, load_records

__all__ = ["NA", "NOT_RUN", "PIPELINE_CHECK", "REDUCED_SCALE", "generate", "load_records", "main"]
