"""The method a run trains with, behind one interface for the loop: the plain network, FR, or magnitude
pruning. The loop calls `step()` after each optimizer step and `epoch_end()` after each epoch, runs its
evaluations inside `evaluation()`, reads `kept()` and `beta`, keeps `state_dict()` in the checkpoint under
`key`, restores it around the model's state, and calls `finalize()` before the model is packed; it never
asks which method it has."""

from __future__ import annotations

import contextlib
from typing import Any, Mapping, Optional

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn.utils import prune as torch_prune

from .fr import FR, factored_inference, regularize
from .prune import MagnitudePruner, budget_from_fr, weight_tensors

CHECKPOINT_KEYS = ("fr", "pruner")  # where a checkpoint keeps the method's state (None for the others)


def method_of(cfg: DictConfig) -> str:
    return "fr" if cfg.fr.enabled else ("prune" if cfg.prune.enabled else "plain")


def attach_fr(cfg: DictConfig, model: nn.Module, task: Any):
    """frx.regularize with the run's fr settings (before the model moves to its device); None without FR."""
    if method_of(cfg) != "fr":
        return None
    f = cfg.fr
    sample = task.sample_input().cpu() if f.linear_view == "auto" else None
    return regularize(model, epsilon=f.epsilon, gamma=f.gamma, unit=f.unit, min_kept=dict(f.min_kept), init=f.init,
                      include=f.include, exclude=f.exclude, dims=f.dims, linear_view=f.linear_view,
                      sample_input=sample, generator=torch.Generator().manual_seed(int(cfg.seed)),
                      keep_norm=f.keep_norm, keep_gain=f.keep_gain, budget=f.budget)


def attach_pruner(cfg: DictConfig, model: nn.Module) -> Optional[MagnitudePruner]:
    """The magnitude pruner at FR's budget (after the model moved to its device); None without pruning."""
    if method_of(cfg) != "prune":
        return None
    p, epochs = cfg.prune, cfg.trainer.epochs
    budget = budget_from_fr(model, p.epsilon, dict(p.min_kept), p.include, p.exclude)
    steps = p.steps or max(1, epochs // 2)
    # the last pruning step comes at the end of an epoch: leave at least one epoch to retrain after it
    return MagnitudePruner(model, budget, steps=max(1, min(steps, epochs - 1)), schedule=p.schedule)


class Plain:
    """The unregularized network: nothing is scheduled or dropped."""

    name, key = "plain", None
    beta: Optional[float] = None

    def __init__(self, model: nn.Module):
        self.model = model
        self._kept: Optional[int] = None

    def step(self) -> None:
        pass

    def epoch_end(self) -> None:
        pass

    def evaluation(self) -> contextlib.AbstractContextManager:
        """Around the evaluations during training."""
        return contextlib.nullcontext()

    def kept(self) -> int:
        """The weights kept, counted when they can have changed (the loop reads them at every log line)."""
        if self._kept is None:
            self._kept = sum(m.weight.numel() for _, _, m in weight_tensors(self.model))
        return self._kept

    def state_dict(self) -> Optional[dict]:
        return None

    def before_model_load(self, checkpoint: Mapping[str, Any]) -> None:
        """From a checkpoint, what must exist before its model state loads."""

    def after_model_load(self, checkpoint: Mapping[str, Any]) -> None:
        """From a checkpoint, what follows its model state."""

    def finalize(self) -> Optional[dict[str, int]]:
        """Before packing: the per-tensor kept counts the method fixed, or None."""
        return None

    def checkpoint_entries(self) -> dict:
        return {k: self.state_dict() if k == self.key else None for k in CHECKPOINT_KEYS}


class FrequencyRegularized(Plain):
    """FR: the tail-dropout schedule of `frx.regularize`'s handle advances with the steps (or epochs)."""

    name, key = "fr", "fr"

    def __init__(self, model: nn.Module, handle: FR):
        super().__init__(model)
        self.handle = handle

    @property
    def beta(self) -> float:
        return self.handle.beta

    def step(self) -> None:
        self.handle.step()

    def epoch_end(self) -> None:
        self.handle.epoch_end()

    def evaluation(self) -> contextlib.AbstractContextManager:
        """The factored layers evaluate by the cheaper route (`scripts/epoch_cost.py` times both); the
        record's value_live, measured after training, keeps the packed model's route."""
        return factored_inference(self.model)

    def kept(self) -> int:
        return self.handle.kept()

    def state_dict(self) -> dict:
        return self.handle.state_dict()

    def after_model_load(self, checkpoint: Mapping[str, Any]) -> None:
        self.handle.load_state_dict(checkpoint["fr"])  # after the model: it sets k in the model's buffers


class Pruning(Plain):
    """Magnitude pruning at FR's budget: a pruning step after each epoch until the budget is reached."""

    name, key = "prune", "pruner"

    def __init__(self, model: nn.Module, pruner: MagnitudePruner):
        super().__init__(model)
        self.pruner = pruner

    def epoch_end(self) -> None:
        if not self.pruner.done:
            self.pruner.step()
            self._kept = None

    def kept(self) -> int:
        if self._kept is None:
            self._kept = sum(self.pruner.kept().values())
        return self._kept

    def state_dict(self) -> dict:
        return self.pruner.state_dict()

    def before_model_load(self, checkpoint: Mapping[str, Any]) -> None:
        # the pruning masks, re-created so that the model's state (which holds them) loads; then the schedule
        for name, (module, param, _, _) in self.pruner.targets.items():
            mask = checkpoint["model"].get(f"{name}_mask")
            if mask is not None and not hasattr(module, f"{param}_mask"):
                torch_prune.custom_from_mask(module, param, mask.to(getattr(module, param).device))
        self.pruner.load_state_dict(checkpoint["pruner"])
        self._kept = None

    def finalize(self) -> dict[str, int]:
        return self.pruner.finalize()


def method(model: nn.Module, handle: Optional[FR], pruner: Optional[MagnitudePruner]) -> Plain:
    """The run's method from what was attached to its model (FR's handle, a pruner, or neither)."""
    if handle is not None:
        return FrequencyRegularized(model, handle)
    if pruner is not None:
        return Pruning(model, pruner)
    return Plain(model)
