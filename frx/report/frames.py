"""Numeric frames: one line per paper row x (method, linear view, scale, tag) from the run records."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..record import Record, from_dict, is_record
from .columns import NA, Column, columns_for
from .paper import DEEPCOMPRESSION, PAPER, PaperRow

NOT_RUN = "not run"
VARIANT_SUFFIX = {"flat": "", "-": "", None: "", "auto": " (frx shape-aware)"}
PERCENT_METRICS = {"top1", "dice"}
# Scales that run an experiment's whole recipe (full: as configured, gpu: the same on a GPU) or
# evaluate a released model. Any other scale is not comparable with the paper: smoke only checks the
# pipeline, a reduced scale (e.g. one CPU epoch of a longer recipe) is a real but shorter run. Their
# numbers are shown, never compared with the paper or a baseline.
RESULT_SCALES = ("full", "gpu", "cpu", "release")
PIPELINE_CHECK = "pipeline check"
REDUCED_SCALE = "reduced scale"
SCALE_ORDER = {s: i for i, s in enumerate(RESULT_SCALES + ("smoke",))}  # lines of one row: results first
# records of a model frx did not train (the authors' release, converted): shown beside the paper's rows
CONVERTED_SUFFIX = ", evaluated by frx"

# numeric columns that describe our measurement (filled with "not run" when no record exists)
OURS_COLUMNS = ["model", "n", "seeds", "metric_mean", "metric_std", "metric_diff", "metric_source", "metric_int8_mean",
                "metric_int8_std", "int8_source", "dense_weights", "kept_weights",
                "other_params", "params_ours", "params_diff", "rate_fp32", "rate_fp16", "rate_ours_paper_convention",
                "rate_diff", "packed_bytes_fp16", "fid_feature_extractor", "data_note", "origin"]
DIFF_COLUMNS = ["metric_diff", "params_diff", "rate_diff"]


def ours_columns(number: int) -> list[str]:
    """The measured columns of a table's frame: every table's, then those its paper table adds."""
    return OURS_COLUMNS + [c for col in columns_for(PAPER[number]) for c in col.frame_columns]


def is_not_compared(scale) -> bool:
    """Whether a line at this scale is kept out of every comparison (smoke or a reduced scale)."""
    return scale not in RESULT_SCALES


def not_compared_label(scale) -> str:
    """What a line at a scale that is not compared shows in place of a difference."""
    return PIPELINE_CHECK if scale == "smoke" else REDUCED_SCALE


def load_records(records_dir: str | Path) -> list[Record]:
    """All run records under records_dir (recursively), one per file, `path` relative to records_dir."""
    root = Path(records_dir)
    if not root.is_dir():
        print(f"frx-report: no records directory {root}: every row will say 'not run'", file=sys.stderr)
    out = []
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            raw = json.loads(path.read_text())
            if is_record(raw):
                out.append(from_dict(raw, path, root))
        except (OSError, ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
            print(f"frx-report: skipping {path}: {err}", file=sys.stderr)
    return out


def metric_scale(rec: Record) -> float:
    return 100.0 if rec.metric.get("name") in PERCENT_METRICS else 1.0


def record_metric(rec: Record, fp16: bool) -> tuple[float, str]:
    """(metric in display units, source). fp16 rows use the model unpacked from the float16 pack; the
    others the float32 pack, else (when the record has no float32 measurement) the live model or the
    float16 pack."""
    m = rec.metric
    order = [("value_fp16", "fp16 pack")] if fp16 else []
    order += [("value", "fp32 pack"), ("value_live", "live model"), ("value_fp16", "fp16 pack")]
    for key, source in order:
        if m.get(key) is not None:
            return float(m[key]) * metric_scale(rec), source
    return math.nan, "no metric"


def _stats(values: list[float]) -> tuple[float, float]:
    s = pd.Series(values, dtype=float)
    if s.empty:
        return math.nan, math.nan
    return float(s.mean()), (float(s.std(ddof=1)) if len(s) > 1 else math.nan)


def data_label(rec: Record) -> str:
    """The record's data-set note, short: "CIFAR-10 (JPEG copies): 50000 training ..." -> the part
    before the colon; synthetic data and subsets say so; "" when the data loader left no note."""
    d = rec.data
    if d.get("data_note"):
        return str(d["data_note"]).split(":")[0].strip()
    if d.get("synthetic"):
        return "synthetic data"
    if d.get("subset_note"):
        return "subset: " + str(d["subset_note"]).split(" (")[0]
    return ""


def _model_name(rec: Record) -> str:
    """Model name with its architecture when the name does not say it ("vgg16 (vgg19-config)")."""
    return f"{rec.model} ({rec.arch})" if rec.arch else str(rec.model)


def _count(values: list[int]) -> int | float:
    """A count over seeds: the number itself when all seeds agree, else their mean."""
    return values[0] if len(set(values)) == 1 else _stats(values)[0]


def _uniq(values) -> str:
    vals = sorted({str(v) for v in values if v not in (None, "")})
    return ", ".join(vals) if vals else NA


def summarize(recs: list[Record], prow: PaperRow | None, columns: Sequence[Column] = ()) -> dict:
    """Numbers of one table line from the records of its seeds (and those of the table's further columns)."""
    fp16 = bool(prow and prow.fp16)
    metrics = [record_metric(r, fp16) for r in recs]
    mean, std = _stats([m for m, _ in metrics])
    kept = [r.kept_weights for r in recs]
    dense = [r.dense_weights for r in recs]
    other = [int(r.counts.get("other_params", 0)) for r in recs]
    k, d, o = (_count(v) for v in (kept, dense, other))
    is_ref = bool(prow and prow.ref) or all(r.method == "plain" for r in recs)
    params_ours = d + o if is_ref else k
    int8 = [r for r in recs if r.metric.get("value_int8") is not None]
    int8_mean, int8_std = _stats([float(r.metric["value_int8"]) * metric_scale(r) for r in int8])
    packed16 = [int(r.packed_bytes["float16"]) for r in recs if r.packed_bytes.get("float16") is not None]
    out = {
        "model": _uniq(_model_name(r) for r in recs), "n": len(recs),
        "seeds": " ".join(sorted((str(r.seed) for r in recs if r.seed is not None), key=lambda x: (len(x), x))),
        "metric_mean": mean, "metric_std": std, "metric_source": _uniq(s for _, s in metrics),
        # int8 of every seed or of none: a mean over some seeds would not be comparable with the one above
        "metric_int8_mean": int8_mean if len(int8) == len(recs) else math.nan,
        "metric_int8_std": int8_std if len(int8) == len(recs) else math.nan,
        "int8_source": _uniq(r.metric_extra.get("value_int8_quantized_from") for r in int8),
        "dense_weights": d, "kept_weights": k, "other_params": o, "params_ours": params_ours,
        "rate_fp32": d / k, "rate_fp16": 2 * d / k,
        "packed_bytes_fp16": _count(packed16) if len(packed16) == len(recs) else math.nan,
        "fid_feature_extractor": _uniq(r.metric_extra.get("fid_feature_extractor") for r in recs),
        "data_note": _uniq(data_label(r) for r in recs),
        "origin": _uniq(r.metric_extra.get("origin") for r in recs if r.method == "converted"),
    }
    for col in columns:
        out.update(col.summarize(recs))
    out["rate_ours_paper_convention"] = out["rate_fp16"] if fp16 else out["rate_fp32"]
    if prow is not None and not any(is_not_compared(r.scale) for r in recs):
        # an FID depends on its feature network: frx's is not the paper's, so no Δ against its values
        if not any(r.metric.get("name") == "fid" for r in recs):
            out["metric_diff"] = mean - prow.metric
        out["params_diff"] = params_ours - prow.params
        out["rate_diff"] = out["rate_ours_paper_convention"] - prow.rate
    return out


def _variant(rec: Record) -> str:
    """The linear view of a line: FR's, or "flat" (the paper's transform) for runs without FR."""
    return rec.linear_view or "flat"


def _label(row: str, key: tuple, ref: bool = False) -> str:
    """Row label with what sets a line apart: linear-view variant, a dense run on a compressed row, a tag."""
    method, variant, _, tag = key
    label = row + VARIANT_SUFFIX.get(variant, f" (frx {variant})")
    if method == "plain" and not ref:
        label += " (dense, no FR)"
    if method == "prune":
        label += " (magnitude pruning)"
    if method == "converted":
        label += CONVERTED_SUFFIX
    return label + (f" [{tag}]" if tag else "")


def _groups(recs: list[Record]) -> dict[tuple, list[Record]]:
    """(method, variant, scale, tag) -> records (the seeds of one line); ordered with the paper's
    transform, full scale and untagged runs first."""
    out: dict[tuple, list[dict]] = {}
    for r in recs:
        out.setdefault((r.method, _variant(r), r.scale, r.tag), []).append(r)
    method_order = {"plain": 0, "fr": 0, "prune": 1}
    return dict(sorted(out.items(), key=lambda kv: (
        method_order.get(kv[0][0], 2), kv[0][1] != "flat", kv[0][1], kv[0][3] != "", kv[0][3],
        SCALE_ORDER.get(kv[0][2], 9), str(kv[0][2]))))


# -------------------------------------------------------------------------------------- main table
def table_frame(number: int, records: list[Record]) -> pd.DataFrame:
    """Numeric frame of one paper table: a line per paper row x (variant, scale) that was run,
    or a single "not run" line for a paper row without records; then rows not in the paper."""
    paper = PAPER[number]
    columns = columns_for(paper)
    mine = [r for r in records if r.table == number and r.method in ("fr", "plain", "converted")]
    by_row: dict[str, list[Record]] = {}
    for r in mine:
        by_row.setdefault(r.row, []).append(r)
    lines = []
    for prow in paper.rows:
        base = {"table": number, "row": prow.label, "metric_name": paper.metric_label,
                "metric_paper": prow.metric, "params_paper": prow.params, "params_paper_text": prow.params_text,
                "rate_paper": prow.rate, "rate_paper_text": prow.rate_text,
                "rate_paper_convention": "fp16" if prow.fp16 else "fp32"}
        recs = by_row.get(prow.label, [])
        # a float16 row (AlexNet-v4) shows its source row's float16 packs at each scale and tag it was not run at
        own = {(r.scale, r.tag) for r in recs}
        copies = [r for r in by_row.get(prow.fp16_of, []) if (r.scale, r.tag) not in own] if prow.fp16_of else []
        if not recs and not copies:
            lines.append({**base, "label": prow.label, "variant": "flat", "method": NA, "scale": NA, "tag": "",
                          "status": NOT_RUN, "notes": ""})
            continue
        copied = f"from the {prow.fp16_of} runs: metric of their float16 pack, other columns theirs"
        for key, group in _groups(recs + copies).items():
            note = copied if group[0].row == prow.fp16_of else ""
            lines.append({**base, "label": _label(prow.label, key, prow.ref), "variant": key[1], "method": key[0],
                          "scale": key[2], "tag": key[3], "status": "ok", "notes": note,
                          **summarize(group, prow, columns)})
    known = {p.label for p in paper.rows}
    for row, recs in sorted(by_row.items(), key=lambda kv: str(kv[0])):
        if row in known:
            continue
        for key, group in _groups(recs).items():
            label = _label(str(row), key) + ("" if key[0] == "converted" else " (not in paper)")
            lines.append({"table": number, "row": row, "label": label,
                          "variant": key[1], "method": key[0], "scale": key[2], "tag": key[3],
                          "metric_name": paper.metric_label, "status": "ok", "notes": "",
                          **summarize(group, None, columns)})
    df = pd.DataFrame(lines)
    for col in ours_columns(number) + ["metric_paper", "params_paper", "params_paper_text", "rate_paper",
                                       "rate_paper_text", "rate_paper_convention"]:
        if col not in df:
            df[col] = math.nan
    front = ["table", "row", "label", "variant", "method", "scale", "tag", "status"]
    return df[front + [c for c in df.columns if c not in front]]


# --------------------------------------------------------------------------------------- baselines
def baselines_frame(number: int, records: list[Record]) -> pd.DataFrame | None:
    """FR vs frx magnitude pruning at the same kept count (and, for Table 1, DeepCompression quoted)."""
    paper = PAPER[number]
    prune = [r for r in records if r.table == number and r.method == "prune"]
    if number != 1 and not prune:
        return None
    fr = [r for r in records if r.table == number and r.method in ("fr", "plain")]
    lines = []
    for prow in paper.rows:
        dc = DEEPCOMPRESSION.get(prow.label) if number == 1 else None
        fr_groups = _groups([r for r in fr if r.row == prow.label])
        pr_groups = _groups([r for r in prune if r.row == prow.label])
        pairs = [(fk, pk) for fk in fr_groups for pk in pr_groups if pk[2] == fk[2]]  # same scale
        pairs += [(fk, None) for fk in fr_groups if not any(fk2 == fk for fk2, _ in pairs)]
        pairs += [(None, pk) for pk in pr_groups if not any(pk2 == pk for _, pk2 in pairs)]
        for fk, pk in pairs or [(None, None)]:
            f = summarize(fr_groups[fk], prow) if fk else None
            p = summarize(pr_groups[pk], prow) if pk else None
            key = fk or (pk and ("fr", "flat", pk[2], "")) or ("fr", "flat", None, "")
            line = {"table": number, "row": prow.label, "label": _label(prow.label, key, prow.ref),
                    "scale": key[2] if key[2] is not None else NOT_RUN,
                    "prune_run": (pr_groups[pk][0].experiment + (f" [{pk[3]}]" if pk[3] else "")) if pk else NA}
            if number == 1:
                line.update({"dc_metric_quoted": dc[0] if dc else math.nan, "dc_rate_quoted": dc[1] if dc else NA,
                             "dc_params_quoted": dc[3] if dc else NA})
            line.update({
                "fr_status": "ok" if f else NOT_RUN, "fr_n": f["n"] if f else 0,
                "fr_kept_weights": f["kept_weights"] if f else math.nan,
                "fr_metric_mean": f["metric_mean"] if f else math.nan,
                "fr_metric_std": f["metric_std"] if f else math.nan,
                "prune_status": ("n/a (dense reference)" if prow.ref else (
                    "ok" if p else NOT_RUN)),
                "prune_n": p["n"] if p else 0,
                "prune_kept_weights": p["kept_weights"] if p else math.nan,
                "prune_metric_mean": p["metric_mean"] if p else math.nan,
                "prune_metric_std": p["metric_std"] if p else math.nan,
            })
            comparable = f and p and not is_not_compared(line["scale"])
            line["fr_minus_prune"] = (f["metric_mean"] - p["metric_mean"]) if comparable else math.nan
            lines.append(line)
    return pd.DataFrame(lines)


# ------------------------------------------------------------------------------------------ layers
def layer_frame(rec: Record) -> pd.DataFrame:
    rows = []
    for t in rec.tensors:
        dense, kept = int(t["dense"]), int(t["kept"])
        rows.append({"layer": t["name"], "type": t.get("kind", NA), "shape": "x".join(map(str, t.get("shape") or [])),
                     "view": "x".join(map(str, t["view"])) if t.get("view") else "-",
                     "dense": dense, "kept": kept, "rate fp32": dense / kept, "rate fp16": 2 * dense / kept})
    df = pd.DataFrame(rows, columns=["layer", "type", "shape", "view", "dense", "kept", "rate fp32", "rate fp16"])
    if rows:
        d, k = int(df["dense"].sum()), int(df["kept"].sum())
        df.loc[len(df)] = ["total", "", "", "", d, k, d / k, 2 * d / k]
    return df
