"""Each regularized layer keeps its gain while the mask shrinks (beyond the paper; `regularize(keep_gain=True)`).

Dropping coefficients shrinks a weight, and without normalization layers every layer's output shrinks with
it: at AlexNet's floors the signal fades ~1e-11 over its eight layers and nothing learns. `keep_norm` scales
each weight back to its norm, which overshoots, since a few low frequencies pass more of a weight's norm to
the output than a random weight does. Here the data set the scale: each training forward measures every
regularized layer's gain, std(output) / std(input) over the batch, and while the schedule drops coefficients
each layer's T is rescaled so that its gain stays the one it had at the first step (its initialization's).
Once the kept counts stop changing the layers are left alone."""

from __future__ import annotations

import math

import torch
from torch import nn

MAX_FACTOR = 4.0  # one correction scales a layer by at most this (or its inverse): one odd batch moves it little


class GainKeeper:
    def __init__(self, modules: dict[str, nn.Module]):
        self.modules = modules
        self.target: dict[str, float] = {}  # each layer's gain at the first step
        self._measured: dict[str, torch.Tensor] = {}
        self._hooks = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name: str):
        def measure(module: nn.Module, inputs, output) -> None:
            if module.training and torch.is_grad_enabled() and self._hooks:
                with torch.no_grad():  # no .item() here: the step's one sync is in `correct`
                    self._measured[name] = output.detach().float().std() / inputs[0].detach().float().std()
        return measure

    def correct(self) -> None:
        """Rescale the T of each layer measured since the last call towards its first gain."""
        with torch.no_grad():
            for name, gain in self._measured.items():
                g = float(gain)
                if not (math.isfinite(g) and g > 0):
                    continue
                target = self.target.setdefault(name, g)
                factor = min(max(target / g, 1 / MAX_FACTOR), MAX_FACTOR)
                self.modules[name].parametrizations.weight.original.mul_(factor)
        self._measured.clear()

    def stop(self) -> None:
        """No more measuring (the kept counts are final)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._measured.clear()

    @property
    def active(self) -> bool:
        return bool(self._hooks)

    def state_dict(self) -> dict:
        return {"target": dict(self.target), "active": self.active}

    def load_state_dict(self, state: dict) -> None:
        self.target = {k: float(v) for k, v in state["target"].items()}
        if not state["active"]:
            self.stop()
