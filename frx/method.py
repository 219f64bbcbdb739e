"""The method a run trains with, behind one interface for the loop: the plain network, FR, or magnitude
pruning. The loop calls `step()` after each optimizer step and `epoch_end()` after each epoch, reads
`kept()` and `beta`, keeps `state_dict()` in the checkpoint under `key`, restores it around the model's
state, and calls `finalize()` before the model is packed; it never asks which method it has."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import nn
from torch.nn.utils import prune as torch_prune

from .fr import FR
from .prune import MagnitudePruner, weight_tensors

CHECKPOINT_KEYS = ("fr", "pruner")  # where a checkpoint keeps the method's state (None for the others)


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
