"""Metric of every Table 1 FR row with int8 coefficients beside float16, on the full test set.

    FRX_DATA=data python scripts/int8_table1.py [--records results/runs/table1] [--out results/int8_table1.csv]
                                                [--update-records]

The float32 weights of these runs were not kept: the int8 file is quantized from the committed
float16 packed file (`frx.fr.codec.repack`), so int8 carries float16's rounding too. Both files
are evaluated here the same way frx-train evaluates (a fresh plain model loaded from the file).

--update-records writes the measurement into each run record (the one home of a run's numbers,
which frx-report reads): metric.value_int8, packed_bytes.int8, and
metric_extra.value_int8_quantized_from = "float16 packed file" (runs trained since int8 packing
have value_int8 from their own float32 coefficients and no such note). A record whose recorded
float16 metric this script does not reproduce is left alone (and the script fails).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

import frx
from frx import data, models, record, tasks
from frx.config import TrainerConf
from frx.fr import codec

QUANTIZED_FROM = "float16 packed file"


def evaluate(cfg, path: Path, task) -> float:
    model = models.build_from_config(cfg.model)
    model.load_state_dict(frx.unpack(path))
    return task.evaluate(model.eval(), task.splits.val)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", default="results/runs/table1")
    ap.add_argument("--out", default=None, help="also write the table as CSV here")
    ap.add_argument("--data-root", default=os.environ.get("FRX_DATA", "data"))
    ap.add_argument("--update-records", action="store_true",
                    help="write metric.value_int8 (and packed_bytes.int8) into each measured record")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, splits, updates = [], {}, []
    for rec_path in sorted(Path(args.records).glob("*.json")):
        rec = record.read(rec_path)
        f16_name = rec.metric_extra.get("packed_float16_file")
        if rec.method != "fr" or not f16_name:
            continue
        cfg = OmegaConf.create(rec.config)
        # a record's config has the trainer keys of its day: today's defaults fill the newer ones
        cfg.trainer = OmegaConf.merge(OmegaConf.structured(TrainerConf), cfg.trainer)
        cfg.dataset.root = args.data_root
        key = cfg.dataset.name
        if key not in splits:
            splits[key] = data.load(cfg.dataset)
        task = tasks.build(rec.task, cfg, splits[key], torch.device("cpu"), data.batches)
        f16 = rec_path.with_name(f16_name)
        with tempfile.TemporaryDirectory() as tmp:
            i8 = Path(tmp) / "model.int8.frx"
            codec.repack(f16, i8, "int8")
            header = frx.unpack_meta(i8)["tensors"]
            kept = sum(codec._stored_count(e) for e in header if e["kind"] == "fr")
            coef_bytes = sum(e["bytes"] for e in header if e["kind"] == "fr")
            v16, v8 = evaluate(cfg, f16, task), evaluate(cfg, i8, task)
            rows.append({"row": rec.row, "variant": rec.linear_view, "seed": rec.seed, "kept": kept,
                         "top1_recorded_fp16": round(100 * rec.metric["value_fp16"], 2),
                         "top1_fp16": round(100 * v16, 2), "top1_int8": round(100 * v8, 2),
                         "loss_points": round(100 * (v16 - v8), 2),
                         "bytes_fp16": f16.stat().st_size, "bytes_int8": i8.stat().st_size,
                         "int8_bytes_per_kept": round(coef_bytes / kept, 3)})
            updates.append((rec_path, rec, v16, v8, i8.stat().st_size))
        print(rows[-1], file=sys.stderr, flush=True)
    if not rows:
        sys.exit(f"no FR record with a packed float16 file under {args.records}")
    buf = io.StringIO()
    buf.write(f"# python scripts/int8_table1.py --records {args.records}"
              f"{' --out ' + args.out if args.out else ''}  (int8 quantized from the float16 file; "
              f"groups of {codec.INT8_GROUP} coefficients per float32 scale; full test set)\n")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    print(buf.getvalue(), end="")
    worst = max(r["loss_points"] for r in rows)
    print(f"# worst loss int8 vs float16: {worst:.2f} points over {len(rows)} rows")
    if args.out:
        Path(args.out).write_text(buf.getvalue() + f"# worst loss int8 vs float16: {worst:.2f} points\n")
    if args.update_records:
        update_records(updates)


def update_records(updates) -> None:
    """metric.value_int8 into each record, after checking that the float16 file gives the recorded metric."""
    off = [p.name for p, rec, v16, _, _ in updates if abs(v16 - rec.metric["value_fp16"]) > 1e-6]
    if off:
        sys.exit(f"int8_table1: error: the float16 file does not give the recorded value_fp16 for {', '.join(off)}; "
                 "no record updated")
    for path, rec, _, v8, size in updates:
        rec.metric["value_int8"] = v8
        rec.packed_bytes["int8"] = size
        rec.metric_extra["value_int8_quantized_from"] = QUANTIZED_FROM
        record.write(path, rec)  # (as the current schema)
        print(f"updated {path}: value_int8 {v8:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
