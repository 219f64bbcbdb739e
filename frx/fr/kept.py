"""Set the kept count k of regularized tensors by name, outside the tail-dropout schedule.

For models that are not trained further: an imported checkpoint, a model being
evaluated or packed. The schedule of an `FR` handle owns k while training: its next
`step()` / `epoch_end()` in training mode, or `load_state_dict`, sets every k from
beta again and overrides what was set here.
"""

from __future__ import annotations

import operator
from typing import Mapping

from torch import nn

from .parametrize import fr_tensors


def get_k(model: nn.Module) -> dict[str, int]:
    """{weight name: k} for every regularized weight of `model`."""
    return {name: int(p.k) for name, _, p in fr_tensors(model)}


def set_k(model: nn.Module, ks: Mapping[str, int]) -> None:
    """Set k (kept coefficients per slice of the transformed dims) of the named regularized weights.

    Names are weight names as `fr_tensors` / `frx.summary` give them ("conv1.weight").
    Every entry is checked before any is set: an unknown name, a k that is not an
    integer or outside [1, numel of the transformed dims] raises ValueError and
    changes nothing.
    """
    params = {name: p for name, _, p in fr_tensors(model)}
    checked = {}
    for name, k in ks.items():
        if name not in params:
            raise ValueError(f"set_k: {name!r} is not a regularized weight of this model "
                             f"(it has {len(params)}, e.g. {next(iter(params), 'none')!r})")
        if isinstance(k, bool):
            raise ValueError(f"set_k: k for {name} must be an integer, got {k!r}")
        try:
            k = operator.index(k)
        except TypeError:
            raise ValueError(f"set_k: k for {name} must be an integer, got {k!r}") from None
        p = params[name]
        if not 1 <= k <= p.t_numel:
            raise ValueError(f"set_k: k for {name} must be in [1, {p.t_numel}] "
                             f"(transformed shape {p.t_shape}), got {k}")
        checked[name] = k
    for name, k in checked.items():
        params[name].set_k(k)
