"""Writers: formatted Markdown / CSV / LaTeX tables and the per-layer Markdown files."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from ..fr.codec import atomic_write_bytes
from ..record import Record
from .frames import NA, NOT_RUN, OURS_COLUMNS, baselines_frame, layer_frame, table_frame
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


def display_frame(df: pd.DataFrame, paper: PaperTable) -> pd.DataFrame:
    """Formatted strings for Markdown / LaTeX; lines without a record say "not run"."""
    unit = f" ({paper.metric_unit})" if paper.metric_unit else ""
    mname = paper.metric_label + unit
    fid = paper.number == 4
    rows = []
    for _, r in df.iterrows():
        ok = r["status"] != NOT_RUN
        in_paper = not (isinstance(r["rate_paper"], float) and math.isnan(r["rate_paper"]))
        pd_ = 1 if fid else 2
        row = {
            "Row": r["label"], "Scale": r["scale"] if ok else NOT_RUN, "Model": r["model"] if ok else NOT_RUN,
            "n": str(int(r["n"])) if ok else "0",
            f"{mname} ours": _metric(r["metric_mean"], r["metric_std"], pd_) if ok else NOT_RUN,
            f"{mname} paper": _num(r["metric_paper"], pd_) if in_paper else "not in paper",
            f"Δ {paper.metric_label}": _signed(r["metric_diff"], pd_) if ok else NOT_RUN,
            "Kept weights ours": _num(r["kept_weights"]) if ok else NOT_RUN,
            "Params ours (paper's count)": _num(r["params_ours"]) if ok else NOT_RUN,
            "Params paper": r["params_paper_text"] if in_paper else "not in paper",
            "Δ params": _signed(r["params_diff"], 0) if ok else NOT_RUN,
            "Rate ours fp32": _rate(r["rate_fp32"]) if ok else NOT_RUN,
            "Rate ours fp16": _rate(r["rate_fp16"]) if ok else NOT_RUN,
            "Rate paper": f"{r['rate_paper_text']} [{r['rate_paper_convention']}]" if in_paper else "not in paper",
            "Δ rate (paper's convention)": _signed(r["rate_diff"], 1) if ok else NOT_RUN,
            "Other params ours": _num(r["other_params"]) if ok else NOT_RUN,
        }
        if fid:
            row["FID features"] = r["fid_feature_extractor"] if ok else NOT_RUN
        notes = [r["metric_source"]] if ok else []
        if isinstance(r.get("notes"), str) and r["notes"]:
            notes.append(r["notes"])
        row["Notes"] = "; ".join(notes) if notes else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def baselines_display(df: pd.DataFrame, paper: PaperTable) -> pd.DataFrame:
    fid = paper.number == 4
    d = 1 if fid else 2
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
            "FR − pruning": _signed(r["fr_minus_prune"], d) if (fr_ok and pr_ok) else NA,
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
_NUMERIC = re.compile(r"[+-]?[\d,]+(\.\d+)?( ± [\d,]+(\.\d+)?)?×?")


def to_markdown(shown: pd.DataFrame) -> str:
    """A Markdown table of formatted strings; columns of numbers (and "not run" / "n/a") right-aligned."""
    def numeric(col) -> bool:
        vals = [str(v) for v in shown[col] if str(v) not in (NOT_RUN, NA, "")]
        return bool(vals) and all(_NUMERIC.fullmatch(v) for v in vals)

    align = ["right" if numeric(c) else "left" for c in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align)


def _write_frames(stem: Path, numeric: pd.DataFrame, shown: pd.DataFrame, caption: str) -> str:
    csv = numeric.copy()
    # measured columns of lines without a record say "not run" (or why they are empty), never blanks
    groups = {"status": OURS_COLUMNS + ["metric_diff", "params_diff", "rate_diff"],
              "fr_status": [c for c in csv if c.startswith("fr_") and c != "fr_status"] + ["fr_minus_prune"],
              "prune_status": [c for c in csv if c.startswith("prune_") and c != "prune_status"]}
    for status, cols in groups.items():
        if status not in csv:
            continue
        miss = csv[status] != "ok"
        for col in [c for c in cols if c in csv]:
            csv[col] = csv[col].astype(object)
            csv.loc[miss, col] = csv.loc[miss, status]
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
          *[f"- {n}" for n in notes_for(paper)], "",
          _write_frames(out / f"table{number}", df, shown, f"Table {number} (reproduced). {paper.caption}"), ""]
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


