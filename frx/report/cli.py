"""Run records -> the paper's Tables 1-4, our numbers beside the published ones.

    frx-report [--records results/runs] [--out DIR] [--no-figures] [--smoke-figures]

Reads every run record (JSON, one per run) under --records and writes, under --out (results, the
paper tables, for the paper records results/runs; outputs/report for any other records, so that a
report of one's own runs never replaces the paper tables):

- table1.md ... table4.md, with .csv and .tex: one line per paper row (and per scale and
  linear-view variant that was run): our metric (mean ± std over seeds, n), the paper's, the
  difference; kept weights, compression rate in both conventions, the paper's rate and
  parameter count, the differences; biases/norm parameters in their own column.
  Rows without a record say "not run".
- table1_baselines.{md,csv,tex} (and tableN_baselines for any other table with pruning
  records): DeepCompression's numbers quoted from the paper, frx's per-layer magnitude
  pruning at the same kept count as each FR row, and FR, side by side. Also appended to tableN.md.
- layers/<record path>.md: the per-layer table of each run (layer, type, dense, kept, rate).
- figures/table<N>_metric_vs_kept.png: metric against kept weights (log x), FR and pruning
  (smoke and reduced-scale runs, which are not compared with the paper, only with --smoke-figures).

Counting conventions (also written into every table's notes):
- kept weights = sum over regularized/pruned weight tensors of the record's `tensors[].kept`
  (FR: the mask boundaries k); dense weights = sum of `tensors[].dense`.
- rate fp32 = dense / kept; rate fp16 = dense / (kept / 2): the paper's float16 rows count a
  float16 number as half a parameter (AlexNet-v4: 57,035,456 / (1,408 / 2) = 81,016x; the paper's
  81,029x divides the total parameter count, biases included: 57,044,810 / 704).
- the paper's "-ref" parameter counts include biases and norm parameters; its compressed rows
  count kept weights only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from ..naming import PAPER_RECORDS
from .figures import write_figures
from .frames import NOT_RUN, load_records
from .paper import PAPER
from .writers import write_layers, write_table

PAPER_TABLES = "results"  # where the paper tables live (`make report`, `make tableN`)
OWN_TABLES = "outputs/report"  # the default for records other than the paper's


def default_out(records_dir: str | Path) -> str:
    """results for the paper records, else outputs/report: the paper tables change only when named."""
    return PAPER_TABLES if Path(records_dir).resolve() == Path(PAPER_RECORDS).resolve() else OWN_TABLES


def generate(records_dir: str | Path = PAPER_RECORDS, out: str | Path = PAPER_TABLES, figures: bool = True,
             smoke_figures: bool = False) -> dict:
    """Write every table, per-layer table and figure (smoke runs left out of the figures unless
    smoke_figures); returns {table number: frames}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = load_records(records_dir)
    result = {n: write_table(n, records, out) for n in PAPER}
    layers = out / "layers"
    written = set()
    for rec in records:
        path = layers / Path(rec.path).with_suffix(".md")
        write_layers(rec, path)
        written.add(path)
    for old in layers.rglob("*.md") if layers.is_dir() else []:
        if old not in written:  # a record that no longer exists
            old.unlink()
    if figures:
        write_figures(records, out, smoke=smoke_figures)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="frx-report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", default=PAPER_RECORDS, help="directory of run records (searched recursively)")
    ap.add_argument("--out", help=f"output directory for tables, layers/ and figures/ (default: {PAPER_TABLES} for "
                                  f"--records {PAPER_RECORDS}, else {OWN_TABLES})")
    ap.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    ap.add_argument("--smoke-figures", action="store_true",
                    help="also plot smoke and reduced-scale runs (left out of the figures by default)")
    args = ap.parse_args(argv)
    args.out = args.out or default_out(args.records)
    result = generate(args.records, args.out, figures=not args.no_figures, smoke_figures=args.smoke_figures)
    for n, frames in result.items():
        df = frames["main"]
        ran = int((df["status"] != NOT_RUN).sum())
        print(f"table{n}: {ran} of {len(df)} lines with records -> {Path(args.out) / f'table{n}.md'}")
    print(f"frx-report done at {_dt.datetime.now().isoformat(timespec='seconds')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
