"""Data sets: ``load(dataset_cfg) -> Splits(train, val, info)``, ``batches(...)``,
``names()``, ``present(root)``.

A dataset config (frx/conf/dataset/<name>.yaml) names its loader in ``source``
(one of ``names()``) and sets ``root``, ``resize`` (H, W), ``normalize``,
``limit_train`` / ``limit_val`` and loader options.
"""
from __future__ import annotations

from typing import Any

# isort: off
from . import mnist, cifar10, carvana, mnist5k  # noqa: F401  (each registers itself: frx-data shows them in this order)
# isort: on
from .common import ChecksumError, DataMissing, Splits, TensorSplit, batches
from .registry import DataSpec, names, register, spec, specs


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
    splits = spec(src).load(cfg)
    splits.info.setdefault("dataset", cfg.get("name", src))
    return splits


def present(root) -> dict[str, str]:
    """What is in a data root: {data set: short description}."""
    return {name: what for d in specs() for name, what in d.describe(root).items()}


__all__ = ["ChecksumError", "DataMissing", "DataSpec", "Splits", "TensorSplit", "batches", "load", "names",
           "present", "register", "source_of", "spec", "specs"]
