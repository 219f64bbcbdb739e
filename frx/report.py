"""Run records -> the paper's Tables 1-4, our numbers beside the published ones.

    frx-report [--records results/runs] [--out results] [--no-figures]

Reads every run record (JSON, one per run) under --records and writes, under --out:

- table1.md ... table4.md, with .csv and .tex: one line per paper row (and per scale and
  linear-view variant that was run): our metric (mean ± std over seeds, n), the paper's, the
  difference; kept weights, compression rate in both conventions, the paper's rate and
  parameter count, the differences; biases/norm parameters in their own column.
  Rows without a record say "not run".
- table1_baselines.{md,csv,tex} (and tableN_baselines for any other table with pruning
  records): DeepCompression's numbers quoted from the paper, frx's per-layer magnitude
  pruning at the same kept count as each FR row, and FR, side by side. Also appended to tableN.md.
- layers/<record path>.md: the per-layer table of each run (layer, type, dense, kept, rate).
- figures/table<N>_metric_vs_kept.png: metric against kept weights (log x), FR and pruning.

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
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

NOT_RUN = "not run"
NA = "n/a"


@dataclass(frozen=True)
class PaperRow:
    label: str
    metric: float  # in the table's display unit (% for top-1/dice, raw FID)
    rate_text: str  # verbatim (LaTeX removed)
    rate: float  # the "(N×)" factor
    params_text: str  # verbatim
    params: int  # the number as printed ("266K" -> 266,000)
    fp16: bool = False  # the paper lists this row's parameters as float16
    ref: bool = False  # dense reference row: the paper's count includes biases / norm params
    fp16_of: str | None = None  # row that is this row stored as float16 (AlexNet-v4 = v3 in float16)


@dataclass(frozen=True)
class PaperTable:
    number: int
    caption: str
    metric_label: str  # the paper's column name
    metric_unit: str  # "%" or ""
    rows: tuple[PaperRow, ...]


def _r(label, metric, rate_text, rate, params_text, params, **kw):
    return PaperRow(label, metric, rate_text, rate, params_text, params, **kw)


PAPER: dict[int, PaperTable] = {
    1: PaperTable(1, "The compression between the proposed approach and DeepCompress[11] on MINIST dataset [17].",
                  "Top-1 Accuracy", "%", (
                      _r("LeNet300-ref", 98.15, "100%(1×)", 1, "266K(float32)", 266_000, ref=True),
                      _r("LeNet300-v1", 97.11, "0.88%(114×)", 114, "4238(float16)", 4238, fp16=True),
                      _r("LeNet300-v2", 95.69, "0.53%(188×)", 188, "2816(float16)", 2816, fp16=True),
                      _r("LeNet5-ref", 98.78, "100%(1×)", 1, "431K(float32)", 431_000, ref=True),
                      _r("LeNet5-v1", 98.35, "0.89%(112×)", 112, "7668(float16)", 7668, fp16=True),
                      _r("LeNet5-v2", 97.52, "0.09%(1110×)", 1110, "776(float16)", 776, fp16=True),
                  )),
    2: PaperTable(2, "The evaluation of the proposed frequency regularization on Alexnet [16], VGG [30] and "
                     "ResNet [12] using CIFAR10 dataset [15].", "Top-1 Accuracy", "%", (
                      _r("AlexNet-ref", 76.45, "100%(1×)", 1, "57,044,810", 57_044_810, ref=True),
                      _r("AlexNet-v1", 77.44, "1%(100×)", 100, "570,365", 570_365),
                      _r("AlexNet-v2", 70.46, "0.1%(1000×)", 1000, "57,364", 57_364),
                      _r("AlexNet-v3", 59.22, "0.00246%(40514×)", 40514, "1,408", 1408),
                      _r("AlexNet-v4", 58.55, "0.00123%(81029×)", 81029, "1,408(float16)", 1408, fp16=True,
                         fp16_of="AlexNet-v3"),
                      _r("VGG16-ref", 85.84, "100%(1×)", 1, "20,040,522", 20_040_522, ref=True),
                      _r("VGG16-v1", 84.77, "1%(100×)", 100, "200,578", 200_578),
                      _r("VGG16-v2", 73.01, "0.1%(1000×)", 1000, "20,302", 20_302),
                      _r("VGG16-v3", 65.99, "0.0102%(9785×)", 9785, "2,048", 2048),
                      _r("ResNet18-ref", 85.43, "100%(1×)", 1, "11,173,962", 11_173_962, ref=True),
                      _r("ResNet18-v1", 85.34, "1%(100×)", 100, "111,901", 111_901),
                      _r("ResNet18-v2", 83.23, "0.1%(1000×)", 1000, "12,058", 12_058),
                      _r("ResNet18-v3", 77.64, "0.024%(4156×)", 4156, "2,688", 2688),
                  )),
    3: PaperTable(3, "The evaluation of the proposed frequency regularization on UNet for image segmentation "
                     "tasks using Carvana Image Masking Challenge dataset [13].", "Dice Score", "%", (
                      _r("UNet-ref", 99.13, "100%(1×)", 1, "31,043,586", 31_043_586, ref=True),
                      _r("UNet-v1", 99.51, "1%(100×)", 100, "310,960", 310_960),
                      _r("UNet-v2", 99.37, "0.1%(1000×)", 1000, "31,096", 31_096),
                      _r("UNet-v3", 98.86, "0.0047%(21146×)", 21146, "2,936(float16)", 2936, fp16=True),
                  )),
    4: PaperTable(4, "The evaluatio of the proposed frequency regularization on generative adversarial network "
                     "(GAN) and variational autoencoder (VAE).", "Fid value", "", (
                      _r("GAN-ref", 244, "100%(1×)", 1, "6,338,176", 6_338_176, ref=True),
                      _r("GAN-fr1", 248, "1.02%(98×)", 98, "64,383", 64_383),
                      _r("VAE-ref", 81, "100%(1×)", 1, "971,200", 971_200, ref=True),
                      _r("VAE-fr1", 94, "10%(10×)", 10, "97,134", 97_134),
                  )),
}

# Table 1, left half: DeepCompress [11] as quoted by the paper (top-1 %, rate text, rate, params text).
DEEPCOMPRESSION = {
    "LeNet300-ref": (98.36, "100%(1×)", 1, "266K(float32)"),
    "LeNet300-v1": (98.42, "2.5%(40×)", 40, "21k(float6)"),
    "LeNet5-ref": (99.20, "100%(1×)", 1, "431K(float32)"),
    "LeNet5-v1": (99.26, "2.56%(39×)", 39, "34K(float6)"),
}

VARIANT_SUFFIX = {"flat": "", "-": "", None: "", "auto": " (frx shape-aware)"}
PERCENT_METRICS = {"top1", "dice"}
SCALE_ORDER = {"full": 0, "smoke": 1}

# numeric columns that describe our measurement (filled with "not run" when no record exists)
OURS_COLUMNS = ["model", "n", "seeds", "metric_mean", "metric_std", "metric_diff", "metric_source", "dense_weights",
                "kept_weights", "other_params", "params_ours", "params_diff", "rate_fp32", "rate_fp16",
                "rate_ours_paper_convention", "rate_diff", "fid_feature_extractor"]


# ----------------------------------------------------------------------------------------- records
def load_records(records_dir: str | Path) -> list[dict]:
    """All run records under records_dir (recursively), one per file; each gets `_path`
    (relative to records_dir) and `_tag` (the run's tag from its file name, "" when none)."""
    root = Path(records_dir)
    if not root.is_dir():
        print(f"frx-report: no records directory {root}: every row will say 'not run'", file=sys.stderr)
    out = []
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"frx-report: skipping {path}: {err}", file=sys.stderr)
            continue
        if not isinstance(rec, dict) or "schema" not in rec or "experiment" not in rec:
            continue
        rec["_path"] = path.relative_to(root).as_posix()
        rec["_tag"] = run_tag(path.stem, rec)
        out.append(rec)
    return out


def run_tag(stem: str, rec: dict) -> str:
    """The tag in a record file name <name>[__<tag>][__<scale>]__seed<seed> (runs of one experiment
    with extra overrides carry one), "" when none."""
    parts = stem.split("__")
    if len(parts) < 2 or not re.fullmatch(r"seed-?\d+", parts[-1]):
        return ""
    parts = parts[1:-1]
    if parts and parts[-1] == str(rec.get("scale")):
        parts = parts[:-1]
    return "__".join(parts)


def kept_weights(rec: dict) -> int:
    """Kept weights from the per-tensor kept counts (falls back to counts.kept_weights)."""
    tensors = rec.get("tensors") or []
    return int(sum(t["kept"] for t in tensors)) if tensors else int(rec["counts"]["kept_weights"])


def dense_weights(rec: dict) -> int:
    tensors = rec.get("tensors") or []
    return int(sum(t["dense"] for t in tensors)) if tensors else int(rec["counts"]["dense_weights"])


def metric_scale(rec: dict) -> float:
    return 100.0 if rec.get("metric", {}).get("name") in PERCENT_METRICS else 1.0


def record_metric(rec: dict, fp16: bool) -> tuple[float, str]:
    """(metric in display units, source). fp16 rows use the model unpacked from the float16 pack."""
    m = rec.get("metric") or {}
    for key, source in ((("value_fp16", "fp16 pack"),) if fp16 else ()) + (("value", "fp32 pack"),
                                                                            ("value_live", "live model")):
        if m.get(key) is not None:
            return float(m[key]) * metric_scale(rec), source
    return math.nan, "no metric"


def _stats(values: list[float]) -> tuple[float, float]:
    s = pd.Series(values, dtype=float)
    return float(s.mean()), (float(s.std(ddof=1)) if len(s) > 1 else math.nan)


def _model_name(rec: dict) -> str:
    """Record's model name with its architecture variant when the config names one ("vgg16 (vgg19-config)")."""
    variant = (((rec.get("config") or {}).get("model") or {}) if isinstance(rec.get("config"), dict) else {}).get(
        "variant")
    return f"{rec.get('model')} ({variant})" if variant else str(rec.get("model"))


def _count(values: list[int]) -> int | float:
    """A count over seeds: the number itself when all seeds agree, else their mean."""
    return values[0] if len(set(values)) == 1 else _stats(values)[0]


def _uniq(values) -> str:
    vals = sorted({str(v) for v in values if v not in (None, "")})
    return ", ".join(vals) if vals else NA


def summarize(recs: list[dict], prow: PaperRow | None) -> dict:
    """Numbers of one table line from the records of its seeds."""
    fp16 = bool(prow and prow.fp16)
    metrics = [record_metric(r, fp16) for r in recs]
    mean, std = _stats([m for m, _ in metrics])
    kept = [kept_weights(r) for r in recs]
    dense = [dense_weights(r) for r in recs]
    other = [int((r.get("counts") or {}).get("other_params", 0)) for r in recs]
    k, d, o = (_count(v) for v in (kept, dense, other))
    is_ref = bool(prow and prow.ref) or all(r.get("method") == "plain" for r in recs)
    params_ours = d + o if is_ref else k
    out = {
        "model": _uniq(_model_name(r) for r in recs), "n": len(recs),
        "seeds": " ".join(sorted((str(r.get("seed")) for r in recs), key=lambda x: (len(x), x))),
        "metric_mean": mean, "metric_std": std, "metric_source": _uniq(s for _, s in metrics),
        "dense_weights": d, "kept_weights": k, "other_params": o, "params_ours": params_ours,
        "rate_fp32": d / k, "rate_fp16": 2 * d / k,
        "fid_feature_extractor": _uniq((r.get("metric_extra") or {}).get("fid_feature_extractor") for r in recs),
    }
    out["rate_ours_paper_convention"] = out["rate_fp16"] if fp16 else out["rate_fp32"]
    if prow is not None:
        out["metric_diff"] = mean - prow.metric
        out["params_diff"] = params_ours - prow.params
        out["rate_diff"] = out["rate_ours_paper_convention"] - prow.rate
    return out


def _variant(rec: dict) -> str:
    v = rec.get("variant")
    return "flat" if v in (None, "-", "") else str(v)


def _label(row: str, key: tuple, ref: bool = False) -> str:
    """Row label with what sets a line apart: linear-view variant, a dense run on a compressed row, a tag."""
    method, variant, _, tag = key
    label = row + VARIANT_SUFFIX.get(variant, f" (frx {variant})")
    if method == "plain" and not ref:
        label += " (dense, no FR)"
    if method == "prune":
        label += " (magnitude pruning)"
    return label + (f" [{tag}]" if tag else "")


def _groups(recs: list[dict]) -> dict[tuple, list[dict]]:
    """(method, variant, scale, tag) -> records (the seeds of one line); ordered with the paper's
    transform, full scale and untagged runs first."""
    out: dict[tuple, list[dict]] = {}
    for r in recs:
        out.setdefault((r.get("method"), _variant(r), r.get("scale"), r.get("_tag", "")), []).append(r)
    method_order = {"plain": 0, "fr": 0, "prune": 1}
    return dict(sorted(out.items(), key=lambda kv: (
        method_order.get(kv[0][0], 2), kv[0][1] != "flat", kv[0][1], kv[0][3] != "", kv[0][3],
        SCALE_ORDER.get(kv[0][2], 9), str(kv[0][2]))))


# -------------------------------------------------------------------------------------- main table
def table_frame(number: int, records: list[dict]) -> pd.DataFrame:
    """Numeric frame of one paper table: a line per paper row x (variant, scale) that was run,
    or a single "not run" line for a paper row without records; then rows not in the paper."""
    paper = PAPER[number]
    mine = [r for r in records if r.get("table") == number and r.get("method") in ("fr", "plain")]
    by_row: dict[str, list[dict]] = {}
    for r in mine:
        by_row.setdefault(r.get("row"), []).append(r)
    lines = []
    for prow in paper.rows:
        base = {"table": number, "row": prow.label, "metric_name": paper.metric_label,
                "metric_paper": prow.metric, "params_paper": prow.params, "params_paper_text": prow.params_text,
                "rate_paper": prow.rate, "rate_paper_text": prow.rate_text,
                "rate_paper_convention": "fp16" if prow.fp16 else "fp32"}
        recs, note = by_row.get(prow.label, []), ""
        if not recs and prow.fp16_of and by_row.get(prow.fp16_of):
            recs = by_row[prow.fp16_of]
            note = f"from the {prow.fp16_of} runs: metric of their float16 pack"
        if not recs:
            lines.append({**base, "label": prow.label, "variant": "flat", "method": NA, "scale": NA, "tag": "",
                          "status": NOT_RUN, "notes": ""})
            continue
        for key, group in _groups(recs).items():
            lines.append({**base, "label": _label(prow.label, key, prow.ref), "variant": key[1], "method": key[0],
                          "scale": key[2], "tag": key[3], "status": "ok", "notes": note, **summarize(group, prow)})
    known = {p.label for p in paper.rows}
    for row, recs in sorted(by_row.items(), key=lambda kv: str(kv[0])):
        if row in known:
            continue
        for key, group in _groups(recs).items():
            lines.append({"table": number, "row": row, "label": f"{_label(str(row), key)} (not in paper)",
                          "variant": key[1], "method": key[0], "scale": key[2], "tag": key[3],
                          "metric_name": paper.metric_label, "status": "ok", "notes": "", **summarize(group, None)})
    df = pd.DataFrame(lines)
    for col in OURS_COLUMNS + ["metric_paper", "params_paper", "params_paper_text", "rate_paper", "rate_paper_text",
                               "rate_paper_convention", "metric_diff", "params_diff", "rate_diff"]:
        if col not in df:
            df[col] = math.nan
    front = ["table", "row", "label", "variant", "method", "scale", "tag", "status"]
    return df[front + [c for c in df.columns if c not in front]]


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


def notes_for(paper: PaperTable) -> list[str]:
    m = "top-1 accuracy in %" if paper.number in (1, 2) else ("Dice score in %" if paper.number == 3 else "FID")
    notes = [
        f"Metric: {m}, measured on the model unpacked from its packed file: the float16 pack for rows the paper "
        "lists in float16 (Notes: fp16 pack), the float32 pack otherwise. Ours = mean ± sample std over n seeds.",
        "Kept weights ours: sum of the per-tensor kept counts of the run records (tensors[].kept, the FR mask "
        "boundaries k) over the regularized conv/linear weights. Biases and norm parameters are not counted there; "
        "they are in 'Other params ours'.",
        "Rate ours fp32 = dense weights / kept weights (each kept number one parameter). "
        "Rate ours fp16 = dense weights / (kept weights / 2): the paper's float16 convention, each float16 number "
        "counted as half a parameter (AlexNet-v4: 57,035,456 / (1,408 / 2) = 81,016×).",
        "Rate paper: as published; [fp16] marks rows whose parameter count the paper gives in float16 (it uses the "
        "fp16 convention there), [fp32] the others. Δ rate compares ours in the same convention as that row.",
        "Params: the paper's -ref rows count all parameters (weights, biases, norm parameters); its compressed rows "
        "count kept weights only. 'Params ours (paper's count)' follows the same rule. 266K/431K are rounded in "
        "the paper.",
        "Scale: full = the paper-size run; smoke = a short run that checks the pipeline, not comparable with the "
        "paper. Rows without a record say 'not run'.",
        "Row labels: a plain label is the paper's transform (linear weights transformed as 2-D out x in, 'flat'); "
        "'(frx shape-aware)' is frx's shape-aware linear view (variant 'auto'), an extra row not in the paper.",
    ]
    if paper.number == 1:
        notes.append("Paper arithmetic: the LeNet5 rates use the weight count (430,500 / (776 / 2) = 1,109.5, "
                     "printed 1110×); the LeNet300 rates match neither count (266,200 / (4,238 / 2) = 125.6× "
                     "against the printed 114×; 266,200 / (2,816 / 2) = 189.1× against 188×).")
        notes.append("DeepCompression [11] numbers are quoted from the paper, not re-run; frx's own baseline is "
                     "per-layer magnitude pruning at the same kept count per tensor as each FR row (section below).")
    if paper.number == 2:
        notes.append("The paper's 'VGG16' is the 19-layer configuration (VGG-19 with BN, one Linear(512, 10): "
                     "20,040,522 parameters, as the paper's count and per-layer table); the Model column says "
                     "which network a row used: 'vgg16 (vgg19-config)' is the paper's, 'vgg16_true' the "
                     "16-layer one. AlexNet-v4 is AlexNet-v3 stored as float16.")
    if paper.number in (2, 3, 4):
        notes.append("Paper arithmetic: this table's published rates equal the -ref row's total parameter count "
                     "(biases and norm parameters included) / kept count (x 2 on float16 rows), truncated: "
                     "AlexNet-v4 57,044,810 / 704 = 81,029×. Our rate columns divide dense weights only "
                     "(57,035,456 / 704 = 81,016×), so Δ rate includes that difference.")
    if paper.number == 4:
        notes.append("FID depends on the feature extractor: 'FID features' names the one each row used. The paper "
                     "does not say which it used, so FID values are comparable only within this table's runs.")
    return notes


# --------------------------------------------------------------------------------------- baselines
def baselines_frame(number: int, records: list[dict]) -> pd.DataFrame | None:
    """FR vs frx magnitude pruning at the same kept count (and, for Table 1, DeepCompression quoted)."""
    paper = PAPER[number]
    prune = [r for r in records if r.get("table") == number and r.get("method") == "prune"]
    if number != 1 and not prune:
        return None
    fr = [r for r in records if r.get("table") == number and r.get("method") in ("fr", "plain")]
    lines = []
    for prow in paper.rows:
        dc = DEEPCOMPRESSION.get(prow.label) if number == 1 else None
        fr_groups = _groups([r for r in fr if r.get("row") == prow.label])
        pr_groups = _groups([r for r in prune if r.get("row") == prow.label])
        pairs = [(fk, pk) for fk in fr_groups for pk in pr_groups if pk[2] == fk[2]]  # same scale
        pairs += [(fk, None) for fk in fr_groups if not any(fk2 == fk for fk2, _ in pairs)]
        pairs += [(None, pk) for pk in pr_groups if not any(pk2 == pk for _, pk2 in pairs)]
        for fk, pk in pairs or [(None, None)]:
            f = summarize(fr_groups[fk], prow) if fk else None
            p = summarize(pr_groups[pk], prow) if pk else None
            key = fk or (pk and ("fr", "flat", pk[2], "")) or ("fr", "flat", None, "")
            line = {"table": number, "row": prow.label, "label": _label(prow.label, key, prow.ref),
                    "scale": key[2] if key[2] is not None else NOT_RUN,
                    "prune_run": (pr_groups[pk][0].get("experiment") + (f" [{pk[3]}]" if pk[3] else "")) if pk else NA}
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
            line["fr_minus_prune"] = (f["metric_mean"] - p["metric_mean"]) if (f and p) else math.nan
            lines.append(line)
    return pd.DataFrame(lines)


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


# ------------------------------------------------------------------------------------------ layers
def layer_frame(rec: dict) -> pd.DataFrame:
    rows = []
    for t in rec.get("tensors") or []:
        dense, kept = int(t["dense"]), int(t["kept"])
        rows.append({"layer": t["name"], "type": t.get("kind", NA), "shape": "x".join(map(str, t.get("shape") or [])),
                     "view": "x".join(map(str, t["view"])) if t.get("view") else "-",
                     "dense": dense, "kept": kept, "rate fp32": dense / kept, "rate fp16": 2 * dense / kept})
    df = pd.DataFrame(rows, columns=["layer", "type", "shape", "view", "dense", "kept", "rate fp32", "rate fp16"])
    if rows:
        d, k = int(df["dense"].sum()), int(df["kept"].sum())
        df.loc[len(df)] = ["total", "", "", "", d, k, d / k, 2 * d / k]
    return df


def write_layers(rec: dict, path: Path) -> None:
    df = layer_frame(rec)
    shown = df.assign(**{"dense": df["dense"].map(_num), "kept": df["kept"].map(_num),
                         "rate fp32": df["rate fp32"].map(_rate), "rate fp16": df["rate fp16"].map(_rate)})
    counts = rec.get("counts") or {}
    head = [f"# Per-layer kept weights: {rec.get('experiment')} seed {rec.get('seed')}", "",
            f"Paper row: {rec.get('row') or NA} (Table {rec.get('table') or NA}); method {rec.get('method')}; "
            f"variant {rec.get('variant')}; scale {rec.get('scale')}; model {rec.get('model')}; "
            f"record {rec.get('_path')}.", "",
            "rate fp32 = dense / kept; rate fp16 = dense / (kept / 2) (the paper's float16 convention). "
            f"Not counted above: {_num(counts.get('other_params', math.nan))} other parameters "
            "(biases, norm parameters).", "", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head) + to_markdown(shown) + "\n")


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
    csv.to_csv(stem.with_suffix(".csv"), index=False, na_rep=NA)
    tex = shown.to_latex(index=False, escape=True, caption=caption, label=f"tab:{stem.name}")
    for char, macro in LATEX_CHARS.items():  # plain pdflatex, no unicode setup needed
        tex = tex.replace(char, macro)
    stem.with_suffix(".tex").write_text(tex)
    md = to_markdown(shown)
    return md


def write_table(number: int, records: list[dict], out: Path) -> dict[str, pd.DataFrame]:
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
    (out / f"table{number}.md").write_text("\n".join(md))
    return frames


def figure_points(number: int, records: list[dict]) -> pd.DataFrame:
    """One point per run: series, paper row, kept weights, metric (display units)."""
    paper = PAPER[number]
    fp16 = {p.label: p.fp16 for p in paper.rows}
    pts = []
    for r in records:
        if r.get("table") != number:
            continue
        method, variant = r.get("method"), r.get("variant")
        series = {"plain": "dense reference", "prune": "magnitude pruning (per layer)"}.get(
            method, "FR (frx shape-aware)" if variant == "auto" else "FR (paper's transform)")
        pts.append({"series": f"{series}, {r.get('model')} [{r.get('scale')}]", "row": r.get("row"),
                    "kept": kept_weights(r),
                    "metric": record_metric(r, fp16.get(r.get("row"), False))[0]})
    return pd.DataFrame(pts, columns=["series", "row", "kept", "metric"])


def generate(records_dir: str | Path = "results/runs", out: str | Path = "results", figures: bool = True) -> dict:
    """Write every table, per-layer table and figure; returns {table number: frames}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = load_records(records_dir)
    result = {n: write_table(n, records, out) for n in PAPER}
    layers = out / "layers"
    written = set()
    for rec in records:
        path = layers / Path(rec["_path"]).with_suffix(".md")
        write_layers(rec, path)
        written.add(path)
    for old in layers.rglob("*.md") if layers.is_dir() else []:
        if old not in written:  # a record that no longer exists
            old.unlink()
    if figures:
        from frx import figures as figs

        for n, paper in PAPER.items():
            pts = figure_points(n, records)
            if len(pts):
                published = [(p.params, p.metric, p.label) for p in paper.rows if not p.ref]
                ylabel = paper.metric_label + (f" ({paper.metric_unit})" if paper.metric_unit else "")
                figs.metric_vs_kept(pts, out / "figures" / f"table{n}_metric_vs_kept.png",
                                    title=f"Table {n}: {ylabel} vs kept weights", ylabel=ylabel,
                                    paper=published, lower_is_better=(n == 4))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="frx-report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", default="results/runs", help="directory of run records (searched recursively)")
    ap.add_argument("--out", default="results", help="output directory for tables, layers/ and figures/")
    ap.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    args = ap.parse_args(argv)
    result = generate(args.records, args.out, figures=not args.no_figures)
    for n, frames in result.items():
        df = frames["main"]
        ran = int((df["status"] != NOT_RUN).sum())
        print(f"table{n}: {ran} of {len(df)} lines with records -> {Path(args.out) / f'table{n}.md'}")
    print(f"frx-report done at {_dt.datetime.now().isoformat(timespec='seconds')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
