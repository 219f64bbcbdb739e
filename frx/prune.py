"""Magnitude pruning: the same-budget baseline for Frequency Regularization.

Iterative prune-and-retrain with `torch.nn.utils.prune.l1_unstructured`, one
budget per tensor. FR keeps `final_kept(numel, epsilon, min_kept)` coefficients
in every regularized tensor; the fair baseline gives each tensor the same
number of weights. (Global magnitude pruning at such budgets starves the small
layers: LeNet-5 at 768 kept weights leaves conv1 with 4 weights and 39 % top-1.)

Typical use in a training loop::

    from frx.prune import MagnitudePruner, budget_from_fr

    kept = budget_from_fr(model, epsilon=0.001, min_kept=MIN_KEPT)  # frx.fr.parametrize.MIN_KEPT
    pruner = MagnitudePruner(model, kept, steps=10)   # reach the budget after 10 pruning epochs
    for epoch in range(epochs):
        train_one_epoch(model)                         # pruned weights stay zero: weight = weight_orig * mask
        if epoch < pruner.steps:
            pruner.step()                              # raise sparsity one notch along the schedule
    pruner.finalize()                                  # prune.remove: plain `weight` parameters holding zeros
    pruner.kept()                                      # {"conv1.weight": 128, ...} nonzero weights per tensor

`step()` number t (1..steps) prunes each tensor to
`numel - round((numel - kept) * f(t / steps))` remaining weights, with
`f(x) = 1 - (1 - x)**3` ("cubic", Zhu & Gupta 2017) or kept ratio
`(kept / numel)**(t / steps)` ("geometric"). After the last step every tensor
holds exactly its budget. Train at least one epoch after the last step, then
`finalize()`. While pruning is active the module's state_dict holds
`weight_orig` and `weight_mask`; after `finalize()` it has the plain keys again.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from frx.fr import final_kept, kind_of, matches  # matches: the method's own include/exclude rule

SCHEDULES = ("cubic", "geometric")


def weight_tensors(model: nn.Module, include: Iterable[str] | None = None,
                   exclude: Iterable[str] | None = None) -> list[tuple[str, str, nn.Module]]:
    """(weight name, kind, module) of each conv / transposed conv / linear weight, the tensors FR
    can regularize, optionally filtered by `include` / `exclude` as in `frx.regularize`."""
    out = []
    for name, module in model.named_modules():
        kind = kind_of(module)
        if kind is None or getattr(module, "weight", None) is None:
            continue
        if (include is not None and not matches(name, module, include)) or (
                exclude is not None and matches(name, module, exclude)):
            continue
        out.append((f"{name}.weight" if name else "weight", kind, module))
    return out


def budget_from_fr(
    model: nn.Module,
    epsilon: float,
    min_kept: int | Mapping[str, int] = 1,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> dict[str, int]:
    """Per-tensor kept counts equal to FR's final mask: {"conv1.weight": k, ...}.

    Covers the `weight` of every conv / transposed conv / linear module (what FR
    regularizes), optionally filtered by `include` / `exclude` (module name globs
    or type names, as in `frx.regularize`). `min_kept` is an int or a dict by
    kind, e.g. the paper's `frx.fr.parametrize.MIN_KEPT`.
    """
    budget = {}
    for name, kind, module in weight_tensors(model, include, exclude):
        floor = min_kept.get(kind, 1) if isinstance(min_kept, Mapping) else int(min_kept)
        budget[name] = final_kept(module.weight.numel(), epsilon, floor)
    return budget


def _split(name: str) -> tuple[str, str]:
    module, _, param = name.rpartition(".")
    return module, param


class MagnitudePruner:
    """Iterative per-tensor L1 magnitude pruning to a fixed kept count per tensor.

    model: the plain (not FR-regularized) model, pruned in place.
    kept: {"<module>.<param>": number of weights to keep}, e.g. from `budget_from_fr`.
    steps: number of `step()` calls (pruning epochs) from dense to the budget.
    schedule: "cubic" (prune fast first, slowly at the end) or "geometric".
    """

    def __init__(self, model: nn.Module, kept: Mapping[str, int], steps: int, schedule: str = "cubic"):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if not kept:
            raise ValueError("kept is empty: nothing to prune")
        self.model, self.steps, self.schedule = model, int(steps), schedule
        self.targets: dict[str, tuple[nn.Module, str, int, int]] = {}
        for name, k in kept.items():
            mod_name, param = _split(name)
            module = model.get_submodule(mod_name)
            tensor = getattr(module, param, None)
            if not isinstance(tensor, torch.Tensor):
                raise KeyError(f"{name!r} is not a tensor of the model")
            numel = tensor.numel()
            if not 1 <= int(k) <= numel:
                raise ValueError(f"kept[{name!r}] = {k} must be in [1, {numel}]")
            self.targets[name] = (module, param, numel, int(k))
        self.t = 0
        self.finalized = False

    def remaining_at(self, name: str, t: int) -> int:
        """Weights of tensor `name` left unpruned after step t (0 = dense, steps = budget)."""
        _, _, numel, k = self.targets[name]
        x = min(max(t / self.steps, 0.0), 1.0)
        if x >= 1.0:
            return k
        if self.schedule == "cubic":
            return numel - round((numel - k) * (1.0 - (1.0 - x) ** 3))
        return max(k, min(numel, round(numel * (k / numel) ** x)))

    @property
    def done(self) -> bool:
        return self.t >= self.steps

    def step(self) -> dict[str, int]:
        """Prune one notch further along the schedule; returns the remaining counts."""
        if self.finalized:
            raise RuntimeError("finalize() was called: pruning is permanent")
        if self.done:
            return self.kept()
        self.t += 1
        for name, (module, param, numel, _) in self.targets.items():
            already = numel - self._remaining_now(module, param, numel)
            more = numel - self.remaining_at(name, self.t) - already
            if more > 0:
                # On a pruned tensor l1_unstructured ranks only the still-unpruned weights. Rank by the
                # current values: `module.<param>` itself is only refreshed by the next forward pass.
                # Contiguous, since torch ranks them through .view(-1), which a channels_last kernel refuses.
                scores = self._current(module, param).contiguous()
                prune.l1_unstructured(module, param, amount=int(more), importance_scores=scores)
        return self.kept()

    def _remaining_now(self, module: nn.Module, param: str, numel: int) -> int:
        mask = getattr(module, f"{param}_mask", None)
        return numel if mask is None else int(mask.sum().item())

    @staticmethod
    def _current(module: nn.Module, param: str) -> torch.Tensor:
        """The tensor as the next forward pass will see it."""
        if hasattr(module, f"{param}_mask"):
            return (getattr(module, f"{param}_orig") * getattr(module, f"{param}_mask")).detach()
        return getattr(module, param).detach()

    def kept(self) -> dict[str, int]:
        """Nonzero weights per pruned tensor (as the record's tensors[].kept)."""
        return {name: int(torch.count_nonzero(self._current(module, param)).item())
                for name, (module, param, _, _) in self.targets.items()}

    def finalize(self) -> dict[str, int]:
        """Make pruning permanent (prune.remove): plain parameters with zeros. Runs the remaining
        schedule first if fewer than `steps` steps were taken, so the budget always holds."""
        while not self.done:
            self.step()
        for module, param, _, _ in self.targets.values():
            if hasattr(module, f"{param}_mask"):
                prune.remove(module, param)
        self.finalized = True
        return self.kept()

    def state_dict(self) -> dict:
        """Schedule position and current masks, for checkpoints (save it beside model.state_dict())."""
        masks = {name: getattr(m, f"{p}_mask").detach().to(torch.bool).clone()
                 for name, (m, p, _, _) in self.targets.items() if hasattr(m, f"{p}_mask")}
        return {"t": self.t, "finalized": self.finalized, "masks": masks}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a checkpoint into a fresh pruner on a freshly built model: re-applies the saved
        masks, after which `model.load_state_dict(...)` of the pruned model's state works (its keys
        are `<param>_orig` / `<param>_mask` while pruning is active)."""
        for name, mask in state.get("masks", {}).items():
            module, param, _, _ = self.targets[name]
            current = getattr(module, f"{param}_mask", None)
            if current is not None:
                current.copy_(mask)
            else:
                prune.custom_from_mask(module, param, mask.to(getattr(module, param).device))
        self.t, self.finalized = int(state["t"]), bool(state["finalized"])

