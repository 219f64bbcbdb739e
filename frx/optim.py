"""Optimizers and learning-rate schedules by name: the one list of each (trainer.optimizer.name,
trainer.scheduler.name)."""

from __future__ import annotations

from typing import Any

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "linear", "none")  # none: a constant lr, no scheduler


def make_optimizer(params, ocfg, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimizer ocfg names, at ocfg.lr unless `lr` is given."""
    name = str(ocfg.name).lower()
    lr, wd = float(ocfg.lr if lr is None else lr), float(ocfg.weight_decay)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, weight_decay=wd, betas=tuple(float(b) for b in ocfg.betas))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=float(ocfg.momentum),
                               nesterov=bool(ocfg.nesterov))
    raise ValueError(f"trainer.optimizer.name must be adam, adamw or sgd, got {ocfg.name!r}")


def make_schedulers(optimizers: list[torch.optim.Optimizer], sc: Any, total_steps: int) -> list:
    """One schedule per optimizer (each from its own lr), none for sc.name == "none"."""
    return [] if sc.name == "none" else [make_scheduler(o, sc, total_steps) for o in optimizers]


def make_scheduler(optimizer: torch.optim.Optimizer, sc: Any, total_steps: int):
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
