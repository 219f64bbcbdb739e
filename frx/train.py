"""frx-train: train one configuration, evaluate it from its packed file, write its record.

    frx-train experiment=table1/lenet5_v2                 # one paper row
    frx-train experiment=table1/lenet5_v2 fr.epsilon=0.01 # any knob is an override
    frx-train -m fr.epsilon=0.01,0.001                    # a sweep (hydra/launcher=parallel: 2 at a time)
    frx-train experiment=demo                             # LeNet-5 with FR on the offline MNIST sample
    frx-train experiment=table1/lenet5_v2 trainer.resume=true  # continue after a crash

The run directory (`run.dir`, stable per experiment/overrides/scale/seed) holds the
checkpoint of the last finished epoch, the packed models (`model.float32.frx`,
`model.float16.frx`), sample pictures and Hydra's logs. The record (JSON, see
`frx.record`) goes to `run.records_dir`. The final metric is measured on a freshly
built plain model loaded from the float32 packed file; `value_fp16` from the float16
one; `value_live` on the training model itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import random
import re
import shutil
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import checkpoint as ckpt
from . import record as rec
from .tasks import TASKS

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
log = logging.getLogger("frx.train")


class UserError(Exception):
    """A problem with the configuration or the data that the user can fix; shown without a traceback."""


# ---------------------------------------------------------------------------------------------
# Run names: <name>[__<tag>][__<scale>]__seed<seed>
# ---------------------------------------------------------------------------------------------

# overrides that do not change what a run computes, so they do not name it
_NOT_NAMING = ("experiment", "seed", "scale", "run", "hydra", "dataset.root", "trainer.resume", "trainer.device",
               "trainer.progress", "trainer.threads", "trainer.checkpoint")


def _hydra_node(root: Any):
    if root is not None and "hydra" in root:
        return root.hydra
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def run_name(root: Any) -> str:
    """The record's `experiment`: run.name, else the experiment config, else adhoc/<model>-<dataset>."""
    if root.run.get("name"):
        return str(root.run.name)
    h = _hydra_node(root)
    choices = h.runtime.choices if h is not None else {}
    if choices.get("experiment"):
        return str(choices["experiment"])
    dataset = choices.get("dataset") or root.dataset.get("name", "data")
    return f"adhoc/{root.model.get('name', 'model')}-{dataset}"


def override_tag(overrides: List[str]) -> str:
    """A short, stable, file-name-safe tag from the overrides that change the run."""
    kept = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if any(key == k or key.startswith(k + ".") or key.startswith(k + "/") for k in _NOT_NAMING):
            continue
        kept.append(o)
    if not kept:
        return ""
    tag = ",".join(sorted(kept))
    safe = re.sub(r"[^A-Za-z0-9._=,+-]", "-", tag)
    if len(safe) > 80:
        safe = safe[:60] + "-" + hashlib.sha1(tag.encode()).hexdigest()[:10]
    return safe


def run_tag(root: Any) -> str:
    if root.run.get("tag") is not None:
        return str(root.run.tag)
    h = _hydra_node(root)
    return override_tag(list(h.overrides.task)) if h is not None else ""


def run_stem(root: Any) -> str:
    """<name>[__<tag>][__<scale>]__seed<seed>; the record is <records_dir>/<stem>.json."""
    parts = [run_name(root)]
    tag = run_tag(root)
    if tag:
        parts.append(tag)
    scale = root.scale.get("name", "full")
    if scale != "full":
        parts.append(str(scale))
    return "__".join(parts) + f"__seed{root.seed}"


if not OmegaConf.has_resolver("frx_stem"):
    OmegaConf.register_new_resolver("frx_stem", lambda *, _root_: run_stem(_root_))


# ---------------------------------------------------------------------------------------------
# Config schema and validation (before any work)
# ---------------------------------------------------------------------------------------------

@dataclass
class FRConf:
    enabled: bool = True
    epsilon: float = 0.001
    gamma: float = 0.01
    unit: str = "step"
    min_kept: Dict[str, int] = field(default_factory=lambda: {"conv": 128, "linear": 256})
    init: str = "dct"
    include: Optional[List[str]] = None
    exclude: Optional[List[str]] = None
    dims: Optional[List[int]] = None
    linear_view: str = "flat"


@dataclass
class OptimizerConf:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class SchedulerConf:
    name: str = "cosine"
    min_lr: float = 0.0
    warmup: float = 0.0


@dataclass
class TrainerConf:
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 500
    max_steps_per_epoch: Optional[int] = None
    optimizer: OptimizerConf = field(default_factory=OptimizerConf)
    scheduler: SchedulerConf = field(default_factory=SchedulerConf)
    grad_clip: Optional[float] = None
    eval_every: int = 1
    device: str = "auto"
    amp: bool = False
    amp_dtype: str = "float16"
    channels_last: bool = False
    label_smoothing: float = 0.0
    log_every: int = 1
    compile: bool = False
    deterministic: bool = True
    threads: Optional[int] = None
    resume: bool = False
    checkpoint: bool = True
    progress: bool = True


@dataclass
class PruneConf:
    enabled: bool = False
    epsilon: float = 0.001
    min_kept: Dict[str, int] = field(default_factory=lambda: {"conv": 128, "linear": 256})
    include: Optional[List[str]] = None
    exclude: Optional[List[str]] = None
    steps: Optional[int] = None
    schedule: str = "cubic"


@dataclass
class ScaleConf:
    name: str = "full"
    fid_samples: int = 10000
    fid_extractor_epochs: int = 3


@dataclass
class RunConf:
    name: Optional[str] = None
    tag: Optional[str] = None
    table: Optional[int] = None
    row: Optional[str] = None
    dir: str = "outputs"
    records_dir: str = "results/runs"
    overwrite: bool = False
    keep_packed_max_bytes: int = 65536
    cache_dir: str = ".cache/frx"


_SCHEMAS = {"fr": FRConf, "trainer": TrainerConf, "prune": PruneConf, "scale": ScaleConf, "run": RunConf}
_TOP = {"model", "dataset", "seed", "task", *_SCHEMAS}


def _unknown_keys(node: Any, schema: type, path: str) -> list[str]:
    hints = typing.get_type_hints(schema)
    bad = []
    for key in node:
        if key not in hints:
            bad.append(f"{path}.{key}")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(node.get(key), DictConfig):
            bad += _unknown_keys(node.get(key), hints[key], f"{path}.{key}")
    return bad


def validate(cfg: DictConfig) -> DictConfig:
    """Check every frx-owned key and value; raise UserError with a clear message.

    Returns the config with the typed groups merged onto their schemas."""
    unknown = sorted(set(cfg.keys()) - _TOP - {"hydra"})
    if unknown:
        raise UserError(f"unknown config keys: {', '.join(unknown)} (top-level keys are {', '.join(sorted(_TOP))})")
    for key in ("model", "dataset"):
        if not isinstance(cfg.get(key), DictConfig):
            raise UserError(f"config has no {key} group: choose one, e.g. {key}=...")
    out = cfg.copy()
    for group, schema in _SCHEMAS.items():
        node = cfg.get(group)
        if node is None:
            raise UserError(f"config has no {group} group")
        bad = _unknown_keys(node, schema, group)
        if bad:
            raise UserError(f"unknown config keys: {', '.join(bad)}")
        try:
            typed = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(node, resolve=True))
        except OmegaConfBaseException as e:
            key = str(getattr(e, "full_key", "") or "")
            where = key if key.startswith(group + ".") else f"{group}.{key}" if key else group
            raise UserError(f"bad value for {where}: {str(e).splitlines()[0]}") from None
        out[group] = OmegaConf.to_container(typed, resolve=True)
    fr, tr, pr, sc = out.fr, out.trainer, out.prune, out.scale

    def rate(name, v):
        if not (0.0 < float(v) <= 1.0):
            raise UserError(f"{name} must be in (0, 1], got {v}")

    rate("fr.epsilon", fr.epsilon)
    rate("fr.gamma", fr.gamma)
    rate("prune.epsilon", pr.epsilon)
    choices = {"fr.unit": (fr.unit, ("step", "epoch")), "fr.init": (fr.init, ("dct", "normal")),
               "fr.linear_view": (fr.linear_view, ("flat", "auto")),
               "trainer.optimizer.name": (tr.optimizer.name, ("adam", "adamw", "sgd")),
               "trainer.scheduler.name": (tr.scheduler.name, ("cosine", "linear", "none")),
               "trainer.amp_dtype": (tr.amp_dtype, ("float16", "bfloat16")),
               "prune.schedule": (pr.schedule, ("cubic", "geometric"))}
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise UserError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    for name, mk in (("fr.min_kept", fr.min_kept), ("prune.min_kept", pr.min_kept)):
        bad = set(mk) - {"conv", "linear"}
        if bad:
            raise UserError(f"{name} keys must be conv and/or linear, got {', '.join(sorted(bad))}")
        if any(v < 1 for v in mk.values()):
            raise UserError(f"{name} values must be >= 1, got {dict(mk)}")
    if not (0.0 <= tr.scheduler.warmup < 1.0 and 0.0 <= tr.label_smoothing < 1.0):
        raise UserError("trainer.scheduler.warmup and trainer.label_smoothing must be in [0, 1)")
    positive = {"trainer.epochs": tr.epochs, "trainer.batch_size": tr.batch_size, "trainer.log_every": tr.log_every,
                "trainer.eval_batch_size": tr.eval_batch_size, "scale.fid_extractor_epochs": sc.fid_extractor_epochs}
    if tr.max_steps_per_epoch is not None:
        positive["trainer.max_steps_per_epoch"] = tr.max_steps_per_epoch
    if pr.steps is not None:
        positive["prune.steps"] = pr.steps
    for name, value in positive.items():
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    if sc.fid_samples < 2:
        raise UserError("scale.fid_samples must be >= 2")
    if tr.optimizer.lr <= 0:
        raise UserError(f"trainer.optimizer.lr must be > 0, got {tr.optimizer.lr}")
    if tr.eval_every < 0:
        raise UserError(f"trainer.eval_every must be >= 0, got {tr.eval_every}")
    if fr.enabled and pr.enabled:
        raise UserError("fr.enabled and prune.enabled are both true: magnitude pruning is the baseline "
                        "for a plain network; use fr=none (or fr.enabled=false) with prune=magnitude")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", tr.device):
        raise UserError(f"trainer.device must be auto, cpu, mps, cuda or cuda:N; got {tr.device!r}")
    if tr.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.device={tr.device} but no CUDA device is available (use trainer.device=auto)")
    task = task_name(out)
    if task not in TASKS:
        raise UserError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    if out.run.table is not None and out.run.table not in (1, 2, 3, 4):
        raise UserError(f"run.table must be 1-4 or null, got {out.run.table}")
    return out


def task_name(cfg: DictConfig) -> str:
    if cfg.get("task"):
        return str(cfg.task)
    if cfg.model.get("task"):
        return str(cfg.model.task)
    from . import models

    return models.spec(cfg.model.name).task


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def weight_tensors(model: torch.nn.Module) -> list[tuple[str, str, torch.nn.Module]]:
    """(name, kind, module) for each conv/linear weight: the tensors FR can regularize."""
    from .fr import kind_of

    out = []
    for name, module in model.named_modules():
        kind = kind_of(module)
        if kind is not None and getattr(module, "weight", None) is not None:
            out.append((f"{name}.weight" if name else "weight", kind, module))
    return out


def tensor_table(model: torch.nn.Module, plain: torch.nn.Module, method: str,
                 pruned: dict | None = None) -> tuple[list[dict], dict]:
    """The record's `tensors` and `counts`. `plain` is a freshly built plain copy of the model."""
    import frx

    fr_rows = {}
    if method == "fr":
        df = frx.summary(model)
        fr_rows = {r["name"]: r for r in df.to_dict("records") if r["kind"] != "plain"}
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
    counts = {"dense_weights": dense, "kept_weights": sum(t["kept"] for t in tensors),
              "other_params": total - dense}
    return tensors, counts


def _steps_per_epoch(n: int, batch_size: int, cap: Optional[int]) -> int:
    steps = max(1, math.ceil(n / batch_size))
    return min(steps, cap) if cap else steps


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _print_summary(rec_: dict, record_path: Path, run_dir: Path) -> None:
    m, c, pb = rec_["metric"], rec_["counts"], rec_["packed_bytes"]
    kept, dense = c["kept_weights"], c["dense_weights"]
    rate = dense / kept if kept else float("inf")
    rows = [
        f"frx-train  {rec_['experiment']}  seed {rec_['seed']}  ({rec_['method']}"
        + (f", {rec_['variant']}" if rec_["variant"] != "-" else "") + f", {rec_['scale']} scale, {rec_['device']})",
        f"  {m['name']:<13} {m['value']:.4f} (from packed float32)   {m['value_fp16']:.4f} (float16)   "
        f"{m['value_live']:.4f} (live)",
        f"  kept weights  {_fmt_int(kept)} of {_fmt_int(dense)} ({100 * kept / max(dense, 1):.3g} %), "
        f"compression {rate:,.1f}x ({2 * rate:,.1f}x counting float16 as half)",
        f"  other params  {_fmt_int(c['other_params'])} (biases, norm layers; not counted above)",
        f"  packed        {_fmt_int(pb['float32'])} B float32, {_fmt_int(pb['float16'])} B float16",
        f"  wall time     {rec_['wall_time_s']:.1f} s",
        f"  record        {record_path}",
        f"  run dir       {run_dir}",
    ]
    text = "\n".join(rows)
    print(text, flush=True)
    (run_dir / "summary.txt").write_text(text + "\n")


def _limit_info(splits) -> str:
    return f"{len(splits.train)} train / {len(splits.val)} val"


def run(cfg: DictConfig) -> dict:
    """Train, pack, evaluate and record one configuration; returns the record."""
    t_start = time.time()
    cfg = validate(cfg)
    stem = run_stem(cfg)
    name = run_name(cfg)
    resolved = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
                for k, v in cfg.items() if k != "hydra"}  # (compose's hydra node has unset fields)
    run_dir = Path(resolved["run"]["dir"])
    record_path = Path(cfg.run.records_dir) / f"{stem}.json"
    if record_path.exists() and not cfg.run.overwrite:
        raise UserError(f"this run is finished: {record_path} exists. Pass run.overwrite=true to train it again "
                        f"(or change seed / run.tag)")
    tr = cfg.trainer
    if tr.threads:
        torch.set_num_threads(int(tr.threads))
    device = pick_device(tr.device)
    seed = int(cfg.seed)
    seed_everything(seed, bool(tr.deterministic))

    import frx
    from . import data, models, tasks

    task_kind = task_name(cfg)
    try:
        data.check_compatible(cfg.model, cfg.dataset)
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(str(e)) from None
    try:
        splits = data.load(cfg.dataset)
    except FileNotFoundError as e:  # the data module's DataMissing: says how to get the data
        raise UserError(str(e)) from None
    if device.type == "cuda":  # keep in-memory data sets on the GPU (Carvana streams from disk)
        splits.train, splits.val = (s.to(device) if isinstance(s, data.TensorSplit) else s
                                    for s in (splits.train, splits.val))
        splits.extra_val = {k: s.to(device) for k, s in splits.extra_val.items()}
    task = tasks.build(task_kind, cfg, splits, device, data.batches)
    model = models.build_from_config(cfg.model)

    method = "fr" if cfg.fr.enabled else ("prune" if cfg.prune.enabled else "plain")
    handle = pruner = None
    if method == "fr":
        f = cfg.fr
        sample = task.sample_input().cpu() if f.linear_view == "auto" else None
        handle = frx.regularize(model, epsilon=f.epsilon, gamma=f.gamma, unit=f.unit, min_kept=dict(f.min_kept),
                                init=f.init, include=f.include, exclude=f.exclude, dims=f.dims,
                                linear_view=f.linear_view, sample_input=sample,
                                generator=torch.Generator().manual_seed(seed))
    model.to(device)
    if tr.channels_last:
        model.to(memory_format=torch.channels_last)
    if method == "prune":
        from .prune import MagnitudePruner, budget_from_fr

        p = cfg.prune
        budget = budget_from_fr(model, p.epsilon, dict(p.min_kept), p.include, p.exclude)
        steps = p.steps or max(1, tr.epochs // 2)
        # the last pruning step comes at the end of an epoch: leave at least one epoch to retrain after it
        pruner = MagnitudePruner(model, budget, steps=max(1, min(steps, tr.epochs - 1)), schedule=p.schedule)

    optimizers = task.optimizers(model)
    steps_per_epoch = _steps_per_epoch(len(splits.train), tr.batch_size, tr.max_steps_per_epoch)
    total_steps = steps_per_epoch * tr.epochs
    schedulers = [_scheduler(o, tr.scheduler, total_steps) for o in optimizers] if tr.scheduler.name != "none" else []
    train_model = torch.compile(model) if tr.compile else model
    gen = torch.Generator().manual_seed(seed)  # data order

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / ckpt.FILENAME
    start_epoch, epochs_log, elapsed_before = 0, [], 0.0
    if tr.resume and ckpt_path.exists():
        state = ckpt.load(ckpt_path)
        if state.get("stem") != stem:
            raise UserError(f"{ckpt_path} belongs to run {state.get('stem')!r}, not {stem!r}")
        if pruner is not None:
            _restore_prune_masks(pruner, state["model"])
            pruner.load_state_dict(state["pruner"])
        model.load_state_dict(state["model"])
        if handle is not None:
            handle.load_state_dict(state["fr"])
        for o, s in zip(optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for s, st in zip(schedulers, state["schedulers"]):
            s.load_state_dict(st)
        task.load_state_dict(state["task"])
        ckpt.set_rng_state(state["rng"], gen)
        start_epoch, epochs_log = int(state["epoch"]), list(state["epochs"])
        elapsed_before = float(state.get("elapsed", 0.0))
        log.info("resuming %s after epoch %d from %s", stem, start_epoch, ckpt_path)
    elif ckpt_path.exists():
        log.warning("%s exists from an unfinished run; starting afresh (trainer.resume=true continues it)",
                    ckpt_path)

    from tqdm.auto import tqdm

    log.info("%s: %s %s on %s (%s), %d epochs x %d steps", name, method, model.__class__.__name__,
             _limit_info(splits), device, tr.epochs, steps_per_epoch)
    session_start = time.time()
    for epoch in range(start_epoch, tr.epochs):
        t0 = time.time()
        model.train()
        losses: list[float] = []
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{tr.epochs}",
                   disable=None if tr.progress else True,  # None: only on a terminal
                   leave=False, dynamic_ncols=True)
        for i, batch in enumerate(task.batches(splits.train, tr.batch_size, shuffle=True, generator=gen)):
            if i >= steps_per_epoch:
                break
            out = task.train_step(train_model, batch, optimizers)
            for s in schedulers:
                s.step()
            if handle is not None:
                handle.step()
            losses.append(out["loss"])
            if (i + 1) % tr.log_every == 0:  # read numbers back from the device only here
                out = {k: float(v) for k, v in out.items()}
                if not math.isfinite(out["loss"]):
                    raise UserError(f"training diverged at epoch {epoch + 1}, step {i + 1}: loss {out['loss']}")
                post = {k: f"{v:.4f}" for k, v in out.items()}
                post["kept"] = _fmt_int(handle.kept() if handle is not None else _kept_now(model, pruner))
                bar.set_postfix(post, refresh=False)
            bar.update()
        bar.close()
        losses = [float(v) for v in losses]
        bad = [v for v in losses if not math.isfinite(v)]
        if bad:  # (steps between log lines are checked here)
            raise UserError(f"training diverged in epoch {epoch + 1}: a step's loss is {bad[0]}")
        if handle is not None:
            handle.epoch_end()
        if pruner is not None and not pruner.done:
            pruner.step()
        last = epoch + 1 == tr.epochs
        val = None
        if (tr.eval_every and (epoch + 1) % tr.eval_every == 0) or last:
            val = task.evaluate(model, splits.val)
        kept = handle.kept() if handle is not None else _kept_now(model, pruner)
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None, "val_metric": val,
                 "kept": kept, "beta": handle.beta if handle is not None else None,
                 "lr": optimizers[0].param_groups[0]["lr"], "time_s": round(time.time() - t0, 3)}
        epochs_log.append(entry)
        log.info("epoch %d/%d  loss %.4f  %skept %s  (%.1f s)", epoch + 1, tr.epochs, entry["train_loss"],
                 f"{task.metric} {val:.4f}  " if val is not None else "", _fmt_int(kept), entry["time_s"])
        if tr.checkpoint:
            ckpt.save(ckpt_path, {
                "stem": stem, "epoch": epoch + 1, "epochs": epochs_log, "model": model.state_dict(),
                "fr": handle.state_dict() if handle is not None else None,
                "pruner": pruner.state_dict() if pruner is not None else None,
                "optimizers": [o.state_dict() for o in optimizers],
                "schedulers": [s.state_dict() for s in schedulers], "task": task.state_dict(),
                "rng": ckpt.rng_state(gen), "elapsed": elapsed_before + time.time() - session_start})

    # ---- finish: pack, evaluate from the packed files, record --------------------------------
    pruned = pruner.finalize() if pruner is not None else None
    model.eval()
    value_live = task.evaluate(model, splits.val)
    meta = {"experiment": name, "model": cfg.model.get("name"), "seed": seed, "method": method}
    packed, values = {}, {}
    for dtype in ("float32", "float16"):
        path = run_dir / f"model.{dtype}.frx"
        packed[dtype] = int(frx.pack(model, path, dtype=dtype, meta=meta, overwrite=True))
        fresh = models.build_from_config(cfg.model)
        fresh.load_state_dict(frx.unpack(path))
        fresh.to(device).eval()
        values[dtype] = task.evaluate(fresh, splits.val)
        if dtype == "float32":
            plain32 = fresh
    tensors, counts = tensor_table(model, plain32, method, pruned)
    samples = task.save_samples(plain32, run_dir / "samples.png")

    record_path.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(task.metric_extra())
    for s in samples:
        if s.stat().st_size <= 512 * 1024:
            dst = record_path.with_name(f"{stem.split('/')[-1]}.{s.name}")
            shutil.copyfile(s, dst)
            extra.setdefault("samples", []).append(dst.name)
    if packed["float16"] <= cfg.run.keep_packed_max_bytes:
        dst = record_path.with_name(f"{stem.split('/')[-1]}.float16.frx")
        shutil.copyfile(run_dir / "model.float16.frx", dst)
        extra["packed_float16_file"] = dst.name
    extra["data"] = dict(getattr(splits, "info", {}) or {})
    for key, split in splits.extra_val.items():  # further test sets, measured like `value` (packed float32)
        extra[f"{task.metric}_{key}"] = task.evaluate(plain32, split)
    wall = elapsed_before + time.time() - t_start
    record = {
        "schema": rec.SCHEMA, "experiment": name, "table": cfg.run.table, "row": cfg.run.row,
        "variant": cfg.fr.linear_view if method == "fr" else "-", "method": method, "scale": cfg.scale.name,
        "model": cfg.model.get("name"), "dataset": cfg.dataset.get("name") or _choice("dataset"),
        "task": task_kind, "seed": seed, "device": str(device), "git_commit": rec.git_commit(),
        "versions": rec.versions(), "config": resolved, "epochs": epochs_log,
        "metric": {"name": task.metric, "higher_is_better": task.higher_is_better, "value": values["float32"],
                   "value_fp16": values["float16"], "value_live": value_live},
        "metric_extra": extra, "tensors": tensors, "counts": counts, "packed_bytes": packed,
        "wall_time_s": round(wall, 3), "created": rec.now_utc(),
    }
    rec.write(record_path, record)
    _print_summary(record, record_path, run_dir)
    return record


def _scheduler(optimizer, sc, total_steps: int):
    """cosine: to min_lr at the last step; linear: linear warm-up over the first `warmup` fraction
    of the steps, then linear decay to min_lr (a triangular one-cycle). Both step once per batch."""
    if sc.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=sc.min_lr)
    peak = optimizer.param_groups[0]["lr"]
    up = max(1, round(sc.warmup * total_steps)) if sc.warmup > 0 else 0
    floor = sc.min_lr / peak

    def factor(step: int) -> float:
        if step < up:
            return (step + 1) / up
        return floor + (1 - floor) * max(0.0, (total_steps - step) / max(1, total_steps - up))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _choice(group: str) -> Optional[str]:
    h = _hydra_node(None)
    return h.runtime.choices.get(group) if h is not None else None


def _kept_now(model: torch.nn.Module, pruner) -> int:
    if pruner is not None:
        return sum(pruner.kept().values())
    return sum(m.weight.numel() for _, _, m in weight_tensors(model))


def _restore_prune_masks(pruner, state: dict) -> None:
    """Re-create the pruning masks saved in a checkpoint so that its state_dict loads."""
    from torch.nn.utils import prune

    for name, (module, param, _, _) in pruner.targets.items():
        mask = state.get(f"{name}_mask")
        if mask is not None and not hasattr(module, f"{param}_mask"):
            prune.custom_from_mask(module, param, mask.to(getattr(module, param).device))


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------

def compose(overrides: list[str] | None = None, config_dir: str | os.PathLike | None = None) -> DictConfig:
    """The config `frx-train <overrides>` would run (Hydra's compose API), hydra node included."""
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir or CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []), return_hydra_config=True)


def _main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except UserError as e:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"frx-train: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def main() -> None:
    import hydra

    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(_main)()


if __name__ == "__main__":
    # run the copy imported as frx.train, so that launchers pickle the task function by reference
    from frx.train import main as _main_by_reference

    _main_by_reference()
