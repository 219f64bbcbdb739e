"""The layers FR applies to: their kind, their picking by include/exclude, and the (out, C, H, W)
view of a linear layer that reads a flattened feature map."""

from __future__ import annotations

import fnmatch
import math
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from .factors import CONV_TS, CONVS

_CONV = (*CONVS, *CONV_TS)


def kind_of(module: nn.Module) -> str | None:
    """"conv" or "linear" for the layer types FR applies to, else None."""
    if isinstance(module, _CONV):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


def weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def matches(name: str, module: nn.Module, patterns: Iterable[str]) -> bool:
    """Whether a layer is picked by include/exclude patterns: module-name globs or layer type names."""
    return any(fnmatch.fnmatchcase(name, p) or type(module).__name__ == p for p in patterns)


class _WatchLinearInputs(TorchFunctionMode):
    """Sees every torch call of a forward pass; remembers the last multi-dimensional map
    and, at each linear call, whether its input is that map flattened."""

    def __init__(self, weight_names: dict[int, tuple[str, nn.Linear]]):
        super().__init__()
        self.weight_names = weight_names
        self.last_map: tuple[int, ...] | None = None
        self.views: dict[str, tuple[int, ...]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _LINEAR_FUNCS:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            name, layer = self.weight_names.get(id(weight), (None, None))
            if name and self.last_map and math.prod(self.last_map) == layer.in_features:
                self.views.setdefault(name, (layer.out_features, *self.last_map))
            self.last_map = None
        elif isinstance(out, torch.Tensor) and out.ndim >= 3:
            self.last_map = tuple(out.shape[1:])
        return out


_LINEAR_FUNCS = (nn.functional.linear, torch._C._nn.linear)


def find_linear_views(model: nn.Module, sample_input: torch.Tensor | None) -> dict[str, tuple[int, ...]]:
    """Views (out, C, H, W) for linear layers that read a flattened (C, H, W) feature map.

    Declared views (`model.fr_views = {"fc1.weight": (500, 50, 4, 4)}`) win; the rest
    are found by one forward pass on `sample_input`: a linear layer whose input size
    equals the per-sample size of the last multi-dimensional tensor computed since the
    previous linear layer (or of the input, before any) reads that map flattened.
    """
    views = {k: tuple(v) for k, v in getattr(model, "fr_views", {}).items()}
    if sample_input is None:
        return views
    names = {id(m.weight): (weight_name(n), m) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    watch = _WatchLinearInputs(names)
    if sample_input.ndim >= 3:  # the input is a map too: a first linear layer may read it flattened (an MLP)
        watch.last_map = tuple(sample_input.shape[1:])
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), watch:
            model(sample_input)
    finally:
        model.train(was_training)
    return {**watch.views, **views}


def some(names: Sequence[str], n: int = 8) -> str:
    """The first n names, joined, and how many more."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def chosen_modules(model: nn.Module, include: Sequence[str] | None,
                    exclude: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """The Conv/Linear modules that include/exclude pick; ValueError for a pattern that matches no layer,
    an empty choice, and weights that cannot be regularized (tied, already regularized, empty, on meta)."""
    layers = [(n, m) for n, m in model.named_modules()
              if kind_of(m) is not None and getattr(m, "weight", None) is not None]
    for what, patterns in (("include", include), ("exclude", exclude)):
        for pattern in patterns or ():
            if not any(matches(n, m, [pattern]) for n, m in layers):
                raise ValueError(f"{what} pattern {pattern!r} matches no weight of a Conv/Linear layer "
                                 f"(layers: {some([n for n, _ in layers]) or 'none'})")
    chosen = [(n, m) for n, m in layers
              if not (include and not matches(n, m, include)) and not (exclude and matches(n, m, exclude))]
    if not chosen:
        raise ValueError("no weight to regularize: include/exclude leave out every Conv/Linear layer")
    holders: dict[int, dict[int, str]] = {}  # tensor -> the modules holding it: several = tied weights
    for n, m in model.named_modules(remove_duplicate=False):
        for pn, param in m.named_parameters(recurse=False):
            holders.setdefault(id(param), {}).setdefault(id(m), f"{n}.{pn}" if n else pn)
    for n, m in chosen:
        name = weight_name(n)
        if parametrize.is_parametrized(m, "weight"):
            raise ValueError(f"{name} is already regularized: regularize each weight once "
                             f"(exclude it, or start from a fresh model)")
        w = m.weight
        tied = sorted(set(holders.get(id(w), {}).values()) - {name})
        if len(holders.get(id(w), {})) > 1:
            raise ValueError(f"{name} is one tensor with {', '.join(tied)} (tied weights): regularizing it would "
                             f"change the other too; leave all of them out (exclude=[...]) or untie them")
        if w.is_meta:
            raise ValueError(f"{name} is on the meta device (no values): materialize the model before regularize")
        if w.numel() == 0:
            raise ValueError(f"{name} has no elements (shape {tuple(w.shape)}): nothing to regularize; exclude it")
    return chosen
