"""Writers: formatted Markdown / CSV / LaTeX tables and the per-layer Markdown files."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..files import atomic_write_bytes
from ..record import Record
from .columns import columns_for
from .frames import (
    DIFF_COLUMNS,
    NA,
    NOT_RUN,
    PIPELINE_CHECK,
    REDUCED_SCALE,
    baselines_frame,
    is_not_compared,
    layer_frame,
    not_compared_label,
    ours_columns,
    table_frame,
)
from .paper import PAPER, PaperTable, notes_for


# ------------------------------------------------------------------------------------- formatting
def _num(x, digits=0) -> str:
    return NA if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def _signed(x, digits=2) -> str:
    return NA if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+,.{digits}f}"


def _rate(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NA
    return f"{x:,.1f}×" if x < 1000 else f"{x:,.0f}×"


def _metric(mean, std, digits) -> str:
    if isinstance(mean, float) and math.isnan(mean):
        return NA
    return f"{mean:.{digits}f}" + ("" if isinstance(std, float) and math.isnan(std) else f" ± {std:.{digits}f}")


def _has(df: pd.DataFrame, col: str) -> bool:
    return bool(pd.to_numeric(df[col], errors="coerce").notna().any())


def display_frame(df: pd.DataFrame, paper: PaperTable) -> pd.DataFrame:
    """Formatted strings for Markdown / LaTeX; lines without a record say "not run", smoke and reduced-scale lines show
    their numbers but compare nothing with the paper. The int8 pack's column appears when a record of the table
    carries it; the paper table's further columns (columns.py) on every line, "n/a" where the records lack them."""
    unit = f" ({paper.metric_unit})" if paper.metric_unit else ""
    mname = paper.metric_label + unit
    fid = paper.metric == "fid"
    int8 = _has(df, "metric_int8_mean")
    columns = columns_for(paper)
    rows = []
    for _, r in df.iterrows():
        ok = r["status"] != NOT_RUN
        uncompared = ok and is_not_compared(r["scale"])
        in_paper = not (isinstance(r["rate_paper"], float) and math.isnan(r["rate_paper"]))
        pd_ = paper.decimals

        def diff(col, digits):
            return NOT_RUN if not ok else not_compared_label(r["scale"]) if uncompared else _signed(r[col], digits)

        row = {"Row": r["label"], "Scale": r["scale"] if ok else NOT_RUN, "Model": r["model"] if ok else NOT_RUN,
               "n": str(int(r["n"])) if ok else "0",
               f"{mname} ours": _metric(r["metric_mean"], r["metric_std"], pd_) if ok else NOT_RUN}
        if int8:
            int8_value = _metric(r["metric_int8_mean"], r["metric_int8_std"], pd_)
            row[f"{mname} ours, int8 pack"] = int8_value if ok else NOT_RUN
        row.update({c.header: c.show(r) if ok else NOT_RUN for c in columns if c.beside_metric})
        row.update({
            f"{mname} paper": _num(r["metric_paper"], pd_) if in_paper else "not in paper",
            f"Δ {paper.metric_label}": diff("metric_diff", pd_),
            "Kept weights ours": _num(r["kept_weights"]) if ok else NOT_RUN,
            "Params ours (paper's count)": _num(r["params_ours"]) if ok else NOT_RUN,
            "Params paper": r["params_paper_text"] if in_paper else "not in paper",
            "Δ params": diff("params_diff", 0),
            "Rate ours fp32": _rate(r["rate_fp32"]) if ok else NOT_RUN,
            "Rate ours fp16": _rate(r["rate_fp16"]) if ok else NOT_RUN,
            "Rate paper": f"{r['rate_paper_text']} [{r['rate_paper_convention']}]" if in_paper else "not in paper",
            "Δ rate (paper's convention)": diff("rate_diff", 1),
            "Packed bytes ours (fp16 file)": _num(r["packed_bytes_fp16"]) if ok else NOT_RUN,
            "Other params ours": _num(r["other_params"]) if ok else NOT_RUN,
        })
        if fid:
            row["FID features"] = r["fid_feature_extractor"] if ok else NOT_RUN
        row.update({c.header: c.show(r) if ok else NOT_RUN for c in columns if not c.beside_metric})
        notes = [r["metric_source"]] if ok else []
        if ok and int8 and r["int8_source"] != NA:
            notes.append(f"int8 quantized from the {r['int8_source']}")
        for col in ("data_note", "origin", "notes"):
            if ok and isinstance(r.get(col), str) and r[col] not in ("", NA):
                notes.append(r[col])
        row["Notes"] = "; ".join(notes) if notes else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def table_notes(df: pd.DataFrame, paper: PaperTable) -> list[str]:
    """Notes that depend on what the records hold, and one per further column of the table (the paper's own
    notes are in paper.notes_for)."""
    notes = []
    if _has(df, "metric_int8_mean"):
        notes.append("int8 pack: the model unpacked from a packed file whose kept coefficients are int8 (one "
                     "float32 scale per 64 coefficients; other tensors float16), FR rows only. Where the Notes "
                     "say 'int8 quantized from the float16 packed file', the run's float32 weights were not kept "
                     "and the int8 file was made from the committed float16 file (scripts/int8_table1.py "
                     "--update-records), so it carries float16's rounding too; new runs quantize the trained "
                     "float32 coefficients.")
    notes += [c.note for c in columns_for(paper)]
    if any(str(d) not in ("", NA) for d in df["data_note"].dropna()):
        notes.append("A data-set note in the Notes column (e.g. 'CIFAR-10 (JPEG copies)') says which data every "
                     "number of that line comes from (the record's data notes).")
    shown = df.loc[df["status"] != NOT_RUN, "scale"]
    if (shown == "smoke").any():
        notes.append(f"'{PIPELINE_CHECK}': a smoke line (a few steps on a few samples) checks that the pipeline "
                     "runs; its numbers are shown but not compared with the paper or a baseline.")
    if (shown.map(is_not_compared) & (shown != "smoke")).any():
        notes.append(f"'{REDUCED_SCALE}': a real run at a reduced scale named in the Scale column (its scale file "
                     "says what was cut, e.g. epochs); its numbers are shown but not compared with the paper or a "
                     "baseline.")
    return notes


def baselines_display(df: pd.DataFrame, paper: PaperTable) -> pd.DataFrame:
    d = paper.decimals
    m = paper.metric_label + (f" ({paper.metric_unit})" if paper.metric_unit else "")
    rows = []
    for _, r in df.iterrows():
        row = {"Row": r["label"], "Scale": r["scale"]}
        if "dc_metric_quoted" in df:
            dc_ok = not math.isnan(r["dc_metric_quoted"])
            row.update({f"DeepCompression {m} (quoted)": _num(r["dc_metric_quoted"], d) if dc_ok else "not in paper",
                        "DeepCompression rate (quoted)": r["dc_rate_quoted"] if dc_ok else "not in paper",
                        "DeepCompression params (quoted)": r["dc_params_quoted"] if dc_ok else "not in paper"})
        fr_ok, pr_ok = r["fr_status"] == "ok", r["prune_status"] == "ok"
        pr_text = r["prune_status"]
        row.update({
            "FR kept weights (ours)": _num(r["fr_kept_weights"]) if fr_ok else NOT_RUN,
            f"FR {m} (ours)": _metric(r["fr_metric_mean"], r["fr_metric_std"], d) if fr_ok else NOT_RUN,
            "FR n": str(r["fr_n"]),
            "Pruning kept weights (ours)": _num(r["prune_kept_weights"]) if pr_ok else pr_text,
            f"Pruning {m} (ours)": _metric(r["prune_metric_mean"], r["prune_metric_std"], d) if pr_ok else pr_text,
            "Pruning n": str(r["prune_n"]),
            "FR − pruning": (not_compared_label(r["scale"]) if is_not_compared(r["scale"])
                             else _signed(r["fr_minus_prune"], d))
            if (fr_ok and pr_ok) else NA,
        })
        rows.append(row)
    return pd.DataFrame(rows)


def write_layers(rec: Record, path: Path) -> None:
    df = layer_frame(rec)
    shown = df.assign(**{"dense": df["dense"].map(_num), "kept": df["kept"].map(_num),
                         "rate fp32": df["rate fp32"].map(_rate), "rate fp16": df["rate fp16"].map(_rate)})
    head = [f"# Per-layer kept weights: {rec.experiment} seed {rec.seed}", "",
            f"Paper row: {rec.row or NA} (Table {rec.table or NA}); method {rec.method}; "
            f"variant {rec.linear_view or '-'}; scale {rec.scale}; model {rec.model}; record {rec.path}.", "",
            "rate fp32 = dense / kept; rate fp16 = dense / (kept / 2) (the paper's float16 convention). "
            f"Not counted above: {_num(rec.counts.get('other_params', math.nan))} other parameters "
            "(biases, norm parameters).", "", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, ("\n".join(head) + to_markdown(shown) + "\n").encode())


# ------------------------------------------------------------------------------------------ output
LATEX_CHARS = {"×": r"$\times$", "±": r"$\pm$", "Δ": r"$\Delta$", "−": "-"}
_NUMERIC = re.compile(r"[+-]?[\d,]+(\.\d+)?( ± [\d,]+(\.\d+)?)?(×| h)?")


def to_markdown(shown: pd.DataFrame) -> str:
    """A Markdown table of formatted strings; columns of numbers (and "not run" / "n/a") right-aligned."""
    def numeric(col) -> bool:
        vals = [str(v) for v in shown[col] if str(v) not in (NOT_RUN, NA, "")]
        return bool(vals) and all(_NUMERIC.fullmatch(v) for v in vals)

    align = ["right" if numeric(c) else "left" for c in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align)


def _write_frames(stem: Path, numeric: pd.DataFrame, shown: pd.DataFrame, caption: str,
                  ours: Sequence[str] = ()) -> str:
    csv = numeric.copy()
    # measured columns of lines without a record say "not run" (or why they are empty), never blanks
    groups = {"status": list(ours),
              "fr_status": [c for c in csv if c.startswith("fr_") and c != "fr_status"] + ["fr_minus_prune"],
              "prune_status": [c for c in csv if c.startswith("prune_") and c != "prune_status"]}
    for status, cols in groups.items():
        if status not in csv:
            continue
        miss = csv[status] != "ok"
        for col in [c for c in cols if c in csv]:
            csv[col] = csv[col].astype(object)
            csv.loc[miss, col] = csv.loc[miss, status]
    # smoke and reduced-scale lines: no comparison with the paper or a baseline
    uncompared = csv["scale"].map(is_not_compared) & (csv.get("status", csv.get("fr_status")) != NOT_RUN)
    for col in [c for c in DIFF_COLUMNS + ["fr_minus_prune"] if c in csv]:
        csv[col] = csv[col].astype(object)
        fill = uncompared & csv[col].map(lambda v: not isinstance(v, str))
        csv.loc[fill, col] = csv.loc[fill, "scale"].map(not_compared_label)
    atomic_write_bytes(stem.with_suffix(".csv"), csv.to_csv(index=False, na_rep=NA).encode())
    tex = shown.to_latex(index=False, escape=True, caption=caption, label=f"tab:{stem.name}")
    for char, macro in LATEX_CHARS.items():  # plain pdflatex, no unicode setup needed
        tex = tex.replace(char, macro)
    atomic_write_bytes(stem.with_suffix(".tex"), tex.encode())
    md = to_markdown(shown)
    return md


def write_table(number: int, records: list[Record], out: Path) -> dict[str, pd.DataFrame]:
    paper = PAPER[number]
    df = table_frame(number, records)
    shown = display_frame(df, paper)
    scales = sorted({str(s) for s in df["scale"] if s != NA})
    md = [f"# Table {number} (reproduced): {paper.caption}", "",
          f"Generated by `frx-report` from the run records; scales present: {', '.join(scales) or 'none'}.", "",
          *[f"- {n}" for n in notes_for(paper) + table_notes(df, paper)], "",
          _write_frames(out / f"table{number}", df, shown, f"Table {number} (reproduced). {paper.caption}",
                        ours_columns(number)), ""]
    frames = {"main": df}
    base = baselines_frame(number, records)
    if base is not None:
        bshown = baselines_display(base, paper)
        title = ("DeepCompression (quoted from the paper) and frx magnitude pruning (measured) beside FR"
                 if number == 1 else "frx magnitude pruning (measured) beside FR")
        md += [f"## Table {number}, baselines: {title}", "",
               "Pruning rows: per-layer L1 magnitude pruning with retraining (`frx.prune`), each tensor pruned to "
               "the kept count of FR's final mask for that row, so both columns have the same kept weights "
               "(a row's 'FR − pruning' is the metric difference at equal budget).", "",
               _write_frames(out / f"table{number}_baselines", base, bshown,
                             f"Table {number} baselines: {title}."), ""]
        frames["baselines"] = base
    atomic_write_bytes(out / f"table{number}.md", "\n".join(md).encode())
    return frames


