"""The end of a run: pack the model (float32, float16 and, with FR, int8 coefficients), measure the
metric on fresh plain models loaded from the packed files, and write the record (plus small samples and packs beside it)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import nn

from . import distributed, models
from . import record as rec
from .config import UserError, resolved_config
from .files import atomic_write_bytes
from .fr import pack, summary, unpack
from .loop import Loop
from .method import method_of
from .naming import hydra_choice, run_name, run_tag
from .prune import weight_tensors

log = logging.getLogger("frx.train")

def tensor_table(model: nn.Module, plain: nn.Module, method: str,
                 pruned: dict | None = None) -> tuple[list[dict], dict]:
    """The record's `tensors` and `counts`. `plain` is a freshly built plain copy of the model."""
    fr_rows = {}
    if method == "fr":
        fr_rows = {r["name"]: r for r in summary(model).to_dict("records") if r["kind"] != "plain"}
    tensors = []
    for name, kind, module in weight_tensors(plain):
        dense = module.weight.numel()
        row = fr_rows.get(name)
        if row is not None:
            view = list(row["view"]) if row["view"] is not None else None
            kept = int(row["kept"])
        else:
            view = None
            kept = int(pruned[name]) if pruned and name in pruned else dense
        tensors.append({"name": name, "kind": kind, "shape": list(module.weight.shape), "view": view,
                        "dense": dense, "kept": kept, "regularized": row is not None})
    dense = sum(t["dense"] for t in tensors)
    total = sum(p.numel() for p in plain.parameters())
    return tensors, {"dense_weights": dense, "kept_weights": sum(t["kept"] for t in tensors),
                     "other_params": total - dense}


def pack_within_range(model: nn.Module, path: Path, dtype: str, meta: dict) -> int:
    """pack(); where a tensor other than FR's coefficients (a bias, a norm layer's statistics) is beyond
    float16's range, the other tensors go in float32 (a warning says so) rather than losing the run."""
    try:
        return pack(model, path, dtype=dtype, meta=meta, overwrite=True)
    except ValueError as e:
        if dtype == "float32" or "beyond float16's range" not in str(e):
            raise
        log.warning("%s; packing %s with the tensors other than FR's coefficients in float32", e, path.name)
        return pack(model, path, dtype=dtype, plain_dtype="float32", meta=meta, overwrite=True)


def pack_and_evaluate(cfg: DictConfig, loop: Loop, run_dir: Path, device: Any) -> tuple[dict, dict, nn.Module]:
    """(packed bytes, metric per dtype, the plain model loaded from the float32 pack). int8 stores only
    FR's kept coefficients in int8 (the other tensors in float16), so it is packed for FR runs only."""
    method = method_of(cfg)
    meta = {"experiment": run_name(cfg), "model": cfg.model.get("name"), "seed": int(cfg.seed), "method": method}
    packed, values, plain = {}, {}, {}
    for dtype in ("float32", "float16") + (("int8",) if method == "fr" else ()):
        path = run_dir / f"model.{dtype}.frx"
        try:
            packed[dtype] = int(pack_within_range(loop.model, path, dtype, meta))
        except ValueError as e:  # non-finite weights, or kept coefficients beyond float16's range
            raise UserError(f"cannot pack the trained model: {e}") from None
        plain[dtype] = models.build_from_config(cfg.model)
        plain[dtype].load_state_dict(unpack(path))
        plain[dtype].to(device).eval()
        values[dtype] = loop.task.evaluate(plain[dtype], loop.splits.val)
    return packed, values, plain["float32"]


def _keep_beside_record(cfg: DictConfig, record_path: Path, run_dir: Path, samples: list, packed: dict) -> dict:
    """Copy small sample pictures and a small float16 pack next to the record; their names for metric_extra."""
    extra: dict = {}
    stem = record_path.name[:-len(".json")]
    for s in samples:
        if s.stat().st_size <= 512 * 1024:
            dst = record_path.with_name(f"{stem}.{s.name}")
            atomic_write_bytes(dst, s.read_bytes())
            extra.setdefault("samples", []).append(dst.name)
    if packed["float16"] <= cfg.run.keep_packed_max_bytes:
        dst = record_path.with_name(f"{stem}.float16.frx")
        atomic_write_bytes(dst, (run_dir / "model.float16.frx").read_bytes())
        extra["packed_float16_file"] = dst.name
    return extra


def finish(cfg: DictConfig, loop: Loop, run_dir: Path, record_path: Path, device: Any, t_start: float,
           commit: str | None) -> rec.Record:
    """Pack, evaluate from the packed files, write and print the record (`commit`: the code's, read at the start)."""
    pruned = loop.method.finalize()
    loop.model.eval()
    value_live = loop.task.evaluate(loop.model, loop.splits.val)
    packed, values, plain32 = pack_and_evaluate(cfg, loop, run_dir, device)
    method = method_of(cfg)
    tensors, counts = tensor_table(loop.model, plain32, method, pruned)
    samples = loop.task.save_samples(plain32, run_dir / "samples.png")
    record_path.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(loop.task.metric_extra()) | _keep_beside_record(cfg, record_path, run_dir, samples, packed)
    for key, split in loop.splits.extra_val.items():  # further test sets, measured like `value` (packed float32)
        extra[f"{loop.task.metric}_{key}"] = loop.task.evaluate(plain32, split)
    spec = models.spec_from_config(cfg.model)
    record = rec.Record(
        experiment=run_name(cfg), tag=run_tag(cfg), table=cfg.run.table, row=cfg.run.row, method=method,
        linear_view=cfg.fr.linear_view if method == "fr" else None, scale=cfg.scale.name,
        model=cfg.model.name, arch=spec.arch, dataset=cfg.dataset.get("name") or hydra_choice("dataset", cfg),
        data=dict(getattr(loop.splits, "info", {}) or {}), task=loop.task.name, seed=int(cfg.seed),
        device=str(device), metric={"name": loop.task.metric, "higher_is_better": loop.task.higher_is_better,
                                    "value": values["float32"], "value_fp16": values["float16"],
                                    "value_int8": values.get("int8"), "value_live": value_live},
        metric_extra=extra, tensors=tensors, counts=counts, packed_bytes=packed, epochs=loop.log,
        config=resolved_config(cfg), git_commit=commit,
        versions=rec.versions() | ({"processes": distributed.world_size()} if distributed.world_size() > 1 else {}),
        wall_time_s=round(loop.elapsed_before + time.time() - t_start, 3), created=rec.now_utc())
    rec.write(record_path, record)
    print_summary(record, record_path, run_dir)
    return record


def print_summary(r: rec.Record, record_path: Path, run_dir: Path) -> None:
    """A few lines on stdout, also written to <run dir>/summary.txt."""
    m, c, pb = r.metric, r.counts, r.packed_bytes
    kept, dense = c["kept_weights"], c["dense_weights"]
    rate = dense / kept if kept else float("inf")
    rows = [
        f"frx-train  {r.experiment}  seed {r.seed}  ({r.method}" + (f", {r.linear_view}" if r.linear_view else "")
        + f", {r.scale} scale, {r.device})",
        f"  {m['name']:<13} {m['value']:.4f} (from packed float32)   {m['value_fp16']:.4f} (float16)   "
        f"{m['value_live']:.4f} (live)",
        f"  kept weights  {kept:,} of {dense:,} ({100 * kept / max(dense, 1):.3g} %), "
        f"compression {rate:,.1f}x ({2 * rate:,.1f}x counting float16 as half)",
        f"  other params  {c['other_params']:,} (biases, norm layers; not counted above)",
        f"  packed        {pb['float32']:,} B float32, {pb['float16']:,} B float16"
        + (f", {pb['int8']:,} B int8 ({m['name']} {m['value_int8']:.4f})" if "int8" in pb else ""),
        f"  wall time     {r.wall_time_s:.1f} s",
        f"  record        {record_path}",
        f"  run dir       {run_dir}",
    ]
    text = "\n".join(rows)
    print(text, flush=True)
    atomic_write_bytes(run_dir / "summary.txt", (text + "\n").encode())
