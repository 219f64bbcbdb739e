"""Tasks: what a model learns and how it is scored, behind one interface.

The training loop in `frx.train` is the same for every task; a task supplies

- `optimizers(model)`: the optimizers (one, or one per network for a GAN),
- `train_step(model, batch, optimizers)`: one optimization step on a batch, returns the losses,
- `evaluate(model, split)`: the task's metric on a data split (a float),
- `metric`, `higher_is_better`, `metric_extra()`: how the metric reads,
- `sample_input()`: a small input batch (for `fr.linear_view=auto`),
- `save_samples(model, path)`: pictures of what the model does (PNG), or nothing.

Metrics: classification "top1" (fraction), segmentation "dice" (fraction),
gan/vae "fid" (lower is better).

A task is a `Task` subclass in its own module here, registered by name with `@register`;
every module of this package is imported below, so nothing else lists the tasks.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from typing import Any, Callable, Iterable, Mapping

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .. import registry
from ..optim import make_optimizer


class Task:
    """Base class: a single optimizer over all parameters, AMP and gradient clipping."""

    name = ""
    metric = ""
    higher_is_better = True
    data_task = "classification"  # the `task` of the data sets it trains on (labelled images for gan / vae too)

    def __init__(self, cfg: Any, splits: Any, device: torch.device, batches: Callable[..., Iterable]):
        """cfg: the run's config; splits: `frx.data.Splits` (train, val); batches: the data
        module's batch iterator `batches(split, batch_size, shuffle, generator, device)`."""
        self.cfg = cfg
        self.splits = splits
        self.device = torch.device(device)
        self._batches = batches
        self.amp_dtype = getattr(torch, str(cfg.trainer.amp_dtype))
        self.amp = bool(cfg.trainer.amp) and amp_applies(self.device, self.amp_dtype)
        self.grad_clip = cfg.trainer.grad_clip
        # bfloat16 has float32's range: only float16 needs loss scaling
        self.scaler = torch.amp.GradScaler("cuda") if self.amp and self.amp_dtype == torch.float16 else None

    # -- data ---------------------------------------------------------------------------------
    def batches(self, split: Any, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None, shard: tuple[int, int] | None = None) -> Iterable:
        """shard: (rank, world size) of a run on several processes: this process's rows of each batch."""
        return self._batches(split, batch_size=batch_size, shuffle=shuffle, generator=generator,
                             device=self.device, shard=shard)

    def sample_input(self, n: int = 2) -> torch.Tensor:
        x = next(iter(self.batches(self.splits.train, n)))[0]
        return x[:n]

    # -- optimization -------------------------------------------------------------------------
    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def optimizers(self, model: nn.Module) -> list[torch.optim.Optimizer]:
        return [make_optimizer(model.parameters(), self.cfg.trainer.optimizer)]

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """zero_grad, backward, clip, step; with a GradScaler under float16 autocast."""
        optimizer.zero_grad(set_to_none=True)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.grad_clip:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, float(self.grad_clip))
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, float(self.grad_clip))
            optimizer.step()

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Mapping[str, float]]:
        raise NotImplementedError

    def train_step(self, model: nn.Module, batch: Any, optimizers: list[torch.optim.Optimizer],
                   weight: float = 1.0) -> dict:
        """One optimization step. Returns {"loss": ..., ...} as numbers or 0-dim tensors (extra entries
        are shown and logged); tensors are read back only when a log line needs them. `weight` scales the
        loss that is differentiated: a process of a distributed run whose share of the batch is larger or
        smaller than the others' (DDP averages the gradients over the processes)."""
        with self.autocast():
            loss, extra = self.loss(model, batch)
        self.backward_step(loss if weight == 1 else loss * weight, optimizers[0])
        return {"loss": loss.detach(), **extra}

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, split: Any) -> float:
        raise NotImplementedError

    def metric_extra(self) -> dict:
        return {}

    def save_samples(self, model: nn.Module, path) -> list:
        """Write PNG pictures of the model's output; returns the paths written."""
        return []

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: Mapping) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def amp_applies(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether trainer.amp autocasts on `device`: always on CUDA; on the CPU in bfloat16 only (its
    AVX-512 BF16 kernels make it faster there; float16 on the CPU is slower than float32)."""
    return device.type == "cuda" or (device.type == "cpu" and dtype == torch.bfloat16)


_REGISTRY: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: the task `cls.name` is built by `cls`."""
    registry.add(_REGISTRY, cls.name, cls, "task")
    return cls


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[Task]:
    if name not in _REGISTRY:
        raise ValueError(f"task must be one of {', '.join(names())}; got {name!r}")
    return _REGISTRY[name]


def build(name: str, cfg: Any, splits: Any, device: torch.device, batches: Callable[..., Iterable]) -> Task:
    return get(name)(cfg, splits, device, batches)


def _size(v):
    return tuple(int(s) for s in v) if v is not None else None


def check_compatible(model_cfg, dataset_cfg) -> None:
    """Raise ValueError listing every mismatch between a model and a data set config
    (task, channels, input size, classes, input scaling). Missing model keys are
    taken from the model registry's spec."""
    from .. import models

    m, d = _cfg(model_cfg), _cfg(dataset_cfg)
    try:
        spec = models.spec_from_config(m)
        defaults = {k: getattr(spec, k) for k in ("task", "in_channels", "input_size", "num_classes",
                                                   "min_input_size", "size_multiple", "normalize")}
    except ValueError:
        defaults = {}
    get = lambda key: m.get(key, defaults.get(key))  # noqa: E731
    mname, dname = m.get("name", "?"), d.get("name", d.get("source"))
    task, dtask = get("task"), d.get("task", "classification")
    errors = []
    wanted = _REGISTRY[task].data_task if task in _REGISTRY else None
    if wanted is None:
        errors.append(f"model {mname} has unknown task {task!r}")
    elif dtask != wanted:
        errors.append(f"model {mname} ({task}) needs a {wanted} data set, dataset {dname} is {dtask}")
    if get("in_channels") is not None and d.get("in_channels") is not None \
            and int(get("in_channels")) != int(d.in_channels):
        errors.append(f"model {mname} takes {get('in_channels')} input channels, "
                      f"dataset {dname} has {d.in_channels}")
    msize, dsize, mmin = _size(get("input_size")), _size(d.get("input_size")), get("min_input_size")
    if msize is not None and dsize != msize:
        errors.append(f"model {mname} needs {msize[0]}x{msize[1]} inputs, dataset {dname} gives "
                      f"{'any size' if dsize is None else f'{dsize[0]}x{dsize[1]}'}; "
                      f"set dataset.resize=[{msize[0]},{msize[1]}]")
    if mmin is not None and dsize is not None and min(dsize) < int(mmin):
        errors.append(f"model {mname} needs inputs of at least {mmin}x{mmin} pixels, dataset {dname} gives "
                      f"{dsize[0]}x{dsize[1]}; set dataset.resize (e.g. dataset=cifar10_64)")
    mult = get("size_multiple")
    if mult is not None and dsize is not None and any(s % int(mult) for s in dsize):
        fit = [max(int(mult), round(s / int(mult)) * int(mult)) for s in dsize]
        errors.append(f"model {mname} needs height and width that are multiples of {mult}, dataset {dname} "
                      f"gives {dsize[0]}x{dsize[1]}; set dataset.resize=[{fit[0]},{fit[1]}]")
    if task in ("classification", "segmentation") and get("num_classes") is not None \
            and d.get("num_classes") is not None and int(get("num_classes")) != int(d.num_classes):
        errors.append(f"model {mname} predicts {get('num_classes')} classes, dataset {dname} has {d.num_classes}")
    need = get("normalize")
    if need is not None and d.get("normalize", "unit") != need:
        rng = {"unit": "[0, 1]", "symmetric": "[-1, 1]"}.get(need, need)
        errors.append(f"model {mname} needs inputs scaled to {rng} (dataset.normalize={need}), "
                      f"dataset {dname} uses normalize={d.get('normalize', 'unit')}")
    if errors:
        raise ValueError(f"model {mname} and dataset {dname} do not fit:\n  - " + "\n  - ".join(errors))


def _cfg(cfg: Any) -> DictConfig:
    return cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
