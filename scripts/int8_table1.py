"""Metric of every Table 1 FR row with int8 coefficients beside float16, on the full test set.

    FRX_DATA=data python scripts/int8_table1.py [--records results/runs/table1] [--out results/int8_table1.csv]

The float32 weights of these runs were not kept: the int8 file is quantized from the committed
float16 packed file (`frx.fr.codec.repack`), so int8 carries float16's rounding too. Both files
are evaluated here the same way frx-train evaluates (a fresh plain model loaded from the file).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

import frx
from frx import data, models, tasks
from frx.fr import codec


def evaluate(cfg, path: Path, task) -> float:
    model = models.build_from_config(cfg.model)
    model.load_state_dict(frx.unpack(path))
    return task.evaluate(model.eval(), task.splits.val)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", default="results/runs/table1")
    ap.add_argument("--out", default=None, help="also write the table as CSV here")
    ap.add_argument("--data-root", default=os.environ.get("FRX_DATA", "data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, splits = [], {}
    for rec_path in sorted(Path(args.records).glob("*.json")):
        rec = json.loads(rec_path.read_text())
        f16_name = rec.get("metric_extra", {}).get("packed_float16_file")
        if rec.get("method") != "fr" or not f16_name:
            continue
        cfg = OmegaConf.create(rec["config"])
        cfg.dataset.root = args.data_root
        key = cfg.dataset.name
        if key not in splits:
            splits[key] = data.load(cfg.dataset)
        task = tasks.build(rec["task"], cfg, splits[key], torch.device("cpu"), data.batches)
        f16 = rec_path.with_name(f16_name)
        with tempfile.TemporaryDirectory() as tmp:
            i8 = Path(tmp) / "model.int8.frx"
            codec.repack(f16, i8, "int8")
            header = frx.unpack_meta(i8)["tensors"]
            kept = sum(codec._stored_count(e) for e in header if e["kind"] == "fr")
            coef_bytes = sum(e["bytes"] for e in header if e["kind"] == "fr")
            v16, v8 = evaluate(cfg, f16, task), evaluate(cfg, i8, task)
            rows.append({"row": rec["row"], "variant": rec["variant"], "seed": rec["seed"], "kept": kept,
                         "top1_recorded_fp16": round(100 * rec["metric"]["value_fp16"], 2),
                         "top1_fp16": round(100 * v16, 2), "top1_int8": round(100 * v8, 2),
                         "loss_points": round(100 * (v16 - v8), 2),
                         "bytes_fp16": f16.stat().st_size, "bytes_int8": i8.stat().st_size,
                         "int8_bytes_per_kept": round(coef_bytes / kept, 3)})
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


if __name__ == "__main__":
    main()
