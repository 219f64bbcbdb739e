"""The config schema: each default once (the dataclasses, registered in Hydra's ConfigStore as the
`fr/default`, `trainer/default`, `prune/none`, `scale/full` and `run/default` options), the
validation of every frx-owned key before any work, with the method's own lists of choices, and
`compose`. The checks of the machine a run starts on (folders, free space) are in `frx.checks`."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import models, tasks
from .data.common import check_dataset_keys
from .fr.budget import BUDGETS
from .fr.mask import KINDS
from .fr.parametrize import INITS, LINEAR_VIEWS, MIN_KEPT
from .fr.schedule import UNITS
from .naming import NOT_COMPUTING, check_name_part, under
from .optim import OPTIMIZERS, SCHEDULERS
from .prune import SCHEDULES

CONF_DIR = Path(__file__).resolve().parent / "conf"
AMP_DTYPES = ("float16", "bfloat16")  # trainer.amp_dtype


def _choices(name: str, values: tuple[str, ...]) -> type[enum.Enum]:
    """A key's allowed strings as an Enum, which OmegaConf enforces when a group is merged onto its schema
    (the lists stay where the method defines them; configs, records and checkpoints hold the strings)."""
    return enum.Enum(name, {v: v for v in values})


Unit, Init, LinearView = _choices("Unit", UNITS), _choices("Init", INITS), _choices("LinearView", LINEAR_VIEWS)
Optimizer, Scheduler = _choices("Optimizer", OPTIMIZERS), _choices("Scheduler", SCHEDULERS)
AmpDtype, PruneSchedule = _choices("AmpDtype", AMP_DTYPES), _choices("PruneSchedule", SCHEDULES)
Budget = _choices("Budget", BUDGETS)


class UserError(Exception):
    """A problem with the configuration or the data that the user can fix; shown without a traceback."""


@dataclass
class FRConf:
    """Frequency regularization (frx.regularize). The paper's setting: gamma 0.01, floors 128 per conv
    tensor and 256 per linear tensor; epsilon 0.01 ("v1") or 0.001 ("v2")."""
    enabled: bool = True
    epsilon: float = 0.001  # floor of the kept ratio beta, in (0, 1]
    gamma: float = 0.01  # tail-dropout speed: beta <- beta - gamma * (beta - epsilon), in (0, 1]
    # advance beta once per optimizer step ("step", the authors' code) or per epoch (the paper's text)
    unit: Unit = Unit.step
    min_kept: Dict[str, int] = field(default_factory=lambda: dict(MIN_KEPT))  # per-tensor floor on kept coefficients
    # dct: T = DCT(W_init), lossless at beta=1 | normal: T ~ N(0, 0.1) as the authors did
    init: Init = Init.dct
    # module-name globs or layer type names to regularize (None = every Conv/Linear)
    include: Optional[List[str]] = None
    exclude: Optional[List[str]] = None
    dims: Optional[List[int]] = None  # transformed dims of each tensor (None = all)
    # flat: (out, in) as the paper | auto: (out, C, H, W) for a linear reading a flattened map
    linear_view: LinearView = LinearView.flat
    # beyond the paper: when coefficients are dropped, scale the kept ones so each weight keeps its norm
    keep_norm: bool = False
    # beyond the paper: while coefficients are dropped, rescale each layer so that its gain on the training
    # batches stays its initialization's (frx.fr.gain; networks without normalization layers, e.g. AlexNet)
    keep_gain: bool = False
    # tensor: the ratio beta in every tensor (the paper) | global, radius: the same total, spread (frx.fr.budget)
    budget: Budget = Budget.tensor


@dataclass
class OptimizerConf:
    name: Optimizer = Optimizer.adam
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adam/adamw only
    generator_lr: Optional[float] = None  # GAN only: the generator's lr (null: lr, as the discriminator's)


@dataclass
class SchedulerConf:
    # cosine (per step, to min_lr at the last step) | linear (warm-up, linear decay to min_lr) | none
    name: Scheduler = Scheduler.cosine
    min_lr: float = 0.0
    warmup: float = 0.0  # linear only: fraction of the steps spent rising linearly to the peak lr


@dataclass
class TrainerConf:
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 500
    max_steps_per_epoch: Optional[int] = None  # cap on optimizer steps per epoch (smoke runs)
    optimizer: OptimizerConf = field(default_factory=OptimizerConf)
    scheduler: SchedulerConf = field(default_factory=SchedulerConf)
    grad_clip: Optional[float] = None  # max global grad norm, None = off
    eval_every: int = 1  # validate every n epochs (0 = only after the last epoch)
    device: str = "auto"  # auto = cuda when present, else cpu; or cpu, cuda, cuda:1, mps
    amp: bool = False  # autocast: on CUDA in amp_dtype; on the CPU with bfloat16 only (float16 stays float32 there)
    amp_dtype: AmpDtype = AmpDtype.float16  # float16 (with a GradScaler) | bfloat16 (no scaler needed)
    channels_last: bool = False  # NHWC model and inputs (faster convolutions on a GPU)
    label_smoothing: float = 0.0  # classification cross-entropy label smoothing
    # read losses back from the device every n steps (bar, divergence check); > 1 avoids a per-step sync
    log_every: int = 1
    compile: bool = False  # torch.compile the training forward
    deterministic: bool = True  # torch.use_deterministic_algorithms (warn only) and fixed seeds
    threads: Optional[int] = None  # torch.set_num_threads; None = torch's default
    resume: bool = False  # continue from <run.dir>/checkpoint.pt
    checkpoint: bool = True  # save a checkpoint after every epoch
    # also save one mid-epoch once this many seconds passed since the last (long epochs); None = epoch ends only
    checkpoint_every_s: Optional[float] = None
    progress: bool = True  # tqdm bar per epoch
    # on several processes (torchrun): BatchNorm statistics over the whole batch (SyncBatchNorm, GPUs only), as on one
    sync_bn: bool = True
    dist_timeout_s: float = 600.0  # on several processes: how long one waits for the others before the run stops


@dataclass
class PruneConf:
    """Magnitude pruning baseline (frx.prune), off by default. The budget per tensor equals FR's final
    mask, final_kept(numel, epsilon, min_kept[kind]); use it with fr.enabled=false (prune=magnitude)."""
    enabled: bool = False
    epsilon: float = "${fr.epsilon}"  # type: ignore[assignment]  (interpolations, resolved by OmegaConf)
    min_kept: Dict[str, int] = "${fr.min_kept}"  # type: ignore[assignment]
    include: Optional[List[str]] = "${fr.include}"  # type: ignore[assignment]
    exclude: Optional[List[str]] = "${fr.exclude}"  # type: ignore[assignment]
    steps: Optional[int] = None  # pruning epochs from dense to the budget; None = half of trainer.epochs (at least 1)
    schedule: PruneSchedule = PruneSchedule.cubic  # cubic (Zhu & Gupta) | geometric


@dataclass
class ScaleConf:
    """The real run: all data, the experiment's epochs (scale=smoke shrinks everything)."""
    name: str = "full"
    fid_samples: int = 10000  # generated and real images for FID (gan, vae)
    fid_extractor_epochs: int = 3  # training of the FID feature network (once per data set, cached)


@dataclass
class RunConf:
    name: Optional[str] = None  # None = the experiment config name, or adhoc/<model>-<dataset> without one
    tag: Optional[str] = None  # tells runs of one experiment apart; None = made from the command-line overrides
    table: Optional[int] = None  # paper table (1-4) reproduced, set by experiment files
    row: Optional[str] = None  # paper row label, e.g. "LeNet5-v2"
    # checkpoints, packed models, samples and Hydra's logs; stable so that trainer.resume=true finds it
    dir: str = "outputs/${frx_stem:}"
    # the record goes to <records_dir>/<name>[__tag][__scale]__seed<seed>.json; the paper tables read
    # results/runs (frx.naming.PAPER_RECORDS), which only `make tableN` (scripts/run_missing.py) writes by default
    records_dir: str = "outputs/records"
    overwrite: bool = False  # a finished run (its record exists) is skipped unless true
    # when the run finished, checkpoint.pt (weights + optimizer state, ~3x the model for Adam) and model.float32.frx
    # are deleted from run.dir unless true; the record, model.float16.frx, metrics.csv and the logs stay
    keep_all: bool = False
    keep_packed_max_bytes: int = 65536  # copy the float16 .frx next to the record when it is this small
    cache_dir: str = "${oc.env:FRX_CACHE_DIR,${dataset.root}/cache}"  # FID feature networks (one per data set)


SCHEMAS = {"fr": FRConf, "trainer": TrainerConf, "prune": PruneConf, "scale": ScaleConf, "run": RunConf}
OPTIONS = {"fr": "default", "trainer": "default", "prune": "none", "scale": "full", "run": "default"}
TOP = {"model", "dataset", "seed", "task", *SCHEMAS}



def _plain(node: DictConfig, resolve: bool = False) -> dict:
    """A typed group as plain values, the choices as their strings."""
    return OmegaConf.to_container(node, resolve=resolve, enum_to_str=True)


_store = ConfigStore.instance()
for _group, _schema in SCHEMAS.items():
    # stored as plain dicts, so that bad keys and values reach `validate` and get its messages
    _store.store(group=_group, name=OPTIONS[_group], node=_plain(OmegaConf.structured(_schema)))


def compose(overrides: list[str] | None = None, config_dir: str | Path | None = None) -> DictConfig:
    """The config `frx-train <overrides>` would run (Hydra's compose API), hydra node included."""
    with initialize_config_dir(config_dir=str(config_dir or CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []), return_hydra_config=True)


def _unknown_keys(node: Any, schema: type, path: str) -> list[str]:
    hints = typing.get_type_hints(schema)
    bad = []
    for key in node:
        if key not in hints:
            bad.append(f"{path}.{key}")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(node.get(key), DictConfig):
            bad += _unknown_keys(node.get(key), hints[key], f"{path}.{key}")
    return bad


def _typed_groups(cfg: DictConfig) -> DictConfig:
    """The config with each frx group merged onto its schema (unknown keys and bad types refused)."""
    unknown = sorted(set(cfg.keys()) - TOP - {"hydra"})
    _check(not unknown, f"unknown config keys: {', '.join(unknown)} (top-level keys are {', '.join(sorted(TOP))})")
    for key in ("model", "dataset"):
        _check(isinstance(cfg.get(key), DictConfig), f"config has no {key} group: choose one, e.g. {key}=...")
    out = cfg.copy()
    for group, schema in SCHEMAS.items():
        node = cfg.get(group)
        _check(node is not None, f"config has no {group} group")
        bad = _unknown_keys(node, schema, group)
        _check(not bad, f"unknown config keys: {', '.join(bad)}")
        try:
            typed = OmegaConf.merge(OmegaConf.structured(schema),
                                    OmegaConf.to_container(node, resolve=True))
        except OmegaConfBaseException as e:
            key = str(getattr(e, "full_key", "") or "")
            where = key if key.startswith(group + ".") else f"{group}.{key}" if key else group
            raise UserError(f"bad value for {where}: {str(e).splitlines()[0]}") from None
        out[group] = _plain(typed, resolve=True)
    return out


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def validate(cfg: DictConfig) -> DictConfig:
    """Check every frx-owned key and value; raise UserError with a clear message.

    Returns the config with the typed groups merged onto their schemas."""
    out = _typed_groups(cfg)
    fr, tr, pr, sc = out.fr, out.trainer, out.prune, out.scale
    for name, v in (("fr.epsilon", fr.epsilon), ("fr.gamma", fr.gamma), ("prune.epsilon", pr.epsilon)):
        _check(0.0 < float(v) <= 1.0, f"{name} must be in (0, 1], got {v}")
    for name, mk in (("fr.min_kept", fr.min_kept), ("prune.min_kept", pr.min_kept)):
        bad = set(mk) - set(KINDS)
        _check(not bad, f"{name} keys must be {' and/or '.join(KINDS)}, got {', '.join(sorted(bad))}")
        _check(all(v >= 1 for v in mk.values()), f"{name} values must be >= 1, got {dict(mk)}")
    for name, v in (("trainer.scheduler.warmup", tr.scheduler.warmup), ("trainer.label_smoothing", tr.label_smoothing)):
        _check(0.0 <= v < 1.0, f"{name} must be in [0, 1), got {v}")
    positive = {"trainer.epochs": tr.epochs, "trainer.batch_size": tr.batch_size, "trainer.log_every": tr.log_every,
                "trainer.eval_batch_size": tr.eval_batch_size, "scale.fid_extractor_epochs": sc.fid_extractor_epochs,
                "trainer.max_steps_per_epoch": tr.max_steps_per_epoch, "prune.steps": pr.steps}
    for name, value in positive.items():
        _check(value is None or value >= 1, f"{name} must be >= 1, got {value}")
    _check(sc.fid_samples >= 2, "scale.fid_samples must be >= 2")
    _check(tr.eval_every >= 0, f"trainer.eval_every must be >= 0, got {tr.eval_every}")
    _check(not (fr.keep_norm and fr.keep_gain), "fr.keep_norm and fr.keep_gain each rescale the kept coefficients: "
           "choose one")
    _check(not (fr.enabled and pr.enabled), "fr.enabled and prune.enabled are both true: magnitude pruning is the "
           "baseline for a plain network; use fr=none (or fr.enabled=false) with prune=magnitude")
    _check(bool(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", tr.device)),
           f"trainer.device must be auto, cpu, mps, cuda or cuda:N; got {tr.device!r}")
    _check(not (tr.device.startswith("cuda") and not torch.cuda.is_available()),
           f"trainer.device={tr.device} but no CUDA device is available (use trainer.device=auto)")
    if tr.device.startswith("cuda:"):
        n = torch.cuda.device_count()
        _check(int(tr.device[5:]) < n, f"trainer.device={tr.device} but this machine has {n} CUDA device(s): "
                                       f"cuda:0 to cuda:{n - 1}")
    _check(tr.device != "mps" or torch.backends.mps.is_available(),
           "trainer.device=mps but MPS is not available here (use trainer.device=auto)")
    _check(out.run.table in (None, 1, 2, 3, 4), f"run.table must be 1-4 or null, got {out.run.table}")
    _check(isinstance(out.seed, int) and not isinstance(out.seed, bool) and -2**63 <= out.seed < 2**63,
           f"seed must be a 64-bit integer, got {out.seed!r}")
    _check(tr.grad_clip is None or tr.grad_clip > 0, f"trainer.grad_clip must be > 0 or null, got {tr.grad_clip}")
    _check(tr.checkpoint_every_s is None or tr.checkpoint_every_s > 0,
           f"trainer.checkpoint_every_s must be > 0 or null, got {tr.checkpoint_every_s}")
    _check(tr.threads is None or tr.threads >= 1, f"trainer.threads must be >= 1 or null, got {tr.threads}")
    _check(tr.dist_timeout_s > 0, f"trainer.dist_timeout_s must be > 0, got {tr.dist_timeout_s}")
    opt = tr.optimizer
    gen_lr = opt.lr if opt.generator_lr is None else opt.generator_lr  # unset: lr, the discriminator's
    for name, v in (("lr", opt.lr), ("generator_lr", gen_lr)):
        _check(0 < v < math.inf, f"trainer.optimizer.{name} must be > 0 and finite, got {v}")
    _check(0 <= opt.weight_decay < math.inf,
           f"trainer.optimizer.weight_decay must be >= 0 and finite, got {opt.weight_decay}")
    _check(not (opt.name == "sgd" and opt.nesterov and opt.momentum == 0),
           "trainer.optimizer.nesterov=true needs trainer.optimizer.momentum > 0 (torch's SGD refuses it without)")
    _check(0 <= opt.momentum < 1, f"trainer.optimizer.momentum must be in [0, 1), got {opt.momentum}")
    _check(len(opt.betas) == 2 and all(0 <= b < 1 for b in opt.betas),
           f"trainer.optimizer.betas must be two values in [0, 1), got {list(opt.betas)}")
    _check(0 <= (sc_min := tr.scheduler.min_lr) <= min(opt.lr, gen_lr),
           f"trainer.scheduler.min_lr must be in [0, trainer.optimizer.lr] (and generator_lr), got {sc_min}")
    _check(out.run.keep_packed_max_bytes >= 0,
           f"run.keep_packed_max_bytes must be >= 0, got {out.run.keep_packed_max_bytes}")
    for name in ("fr.dims", "fr.include"):
        value = OmegaConf.select(out, name)
        _check(value is None or len(value) > 0, f"{name} must be a non-empty list or null, got []")
    _check(fr.dims is None or len(set(fr.dims)) == len(fr.dims), f"fr.dims has repeated dims: {list(fr.dims or [])}")
    try:  # the checks that live beside what they check
        models.check_config(out.model)
        task = task_name(out)
        _check(task in tasks.names(), f"task must be one of {', '.join(tasks.names())}; got {task!r}")
        _check(tr.optimizer.generator_lr is None or task == "gan",
               f"trainer.optimizer.generator_lr is for a GAN's generator; this run's task is {task}")
        check_dataset_keys(out.dataset)
        for key, value in (("run.name", out.run.name), ("run.tag", out.run.tag), ("scale.name", sc.name)):
            check_name_part(key, value, folders=key == "run.name")
    except ValueError as e:
        raise UserError(str(e)) from None
    return out


def resolved_config(cfg: DictConfig) -> dict:
    """The run's config as stored in its record and checkpoint (without compose's hydra node: it has unset fields)."""
    return {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
            for k, v in cfg.items() if k != "hydra"}


def flatten(d, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: d}


_ABSENT = object()


@lru_cache(maxsize=1)
def schema_defaults() -> dict:
    """{dotted key: default} of every key the dataclasses define (shared: do not modify)."""
    return flatten({g: json.loads(json.dumps(_plain(OmegaConf.structured(schema)))) for g, schema in SCHEMAS.items()})


def config_diff(recorded: dict, current: dict, ignore=NOT_COMPUTING) -> list[str]:
    """Dotted keys whose values differ (JSON round trip, so tuples/lists and ints/floats compare as stored).

    A key the recorded config lacks counts as its schema default: keys added after a record was
    written default to the behaviour it was made with, so they do not make it stale.
    """
    a, b = flatten(json.loads(json.dumps(recorded))), flatten(json.loads(json.dumps(current)))
    defaults = schema_defaults()
    keys = sorted(set(a) | set(b))
    return [k for k in keys
            if not under(k, ignore) and a.get(k, defaults.get(k, _ABSENT)) != b.get(k, _ABSENT)]


def task_name(cfg: DictConfig) -> str:
    """config `task`, else the task the model is built for (its registered spec)."""
    return str(cfg.get("task") or models.spec(cfg.model.name).task)
