"""How a total kept count is spread over the regularized tensors.

"tensor" (the paper): every tensor keeps the same ratio beta of its coefficients, above its floor.
"global" (beyond the paper): the same total, spread by where the coefficients' energy is, as global
magnitude pruning spreads its budget by the weights' magnitudes. A tensor's kept coefficients are scored
in mask order by the mean energy of their shell (the coefficients of one L1 norm, summed over the
untransformed slices), relative to the tensor's mean over all its coefficients (so that layers of other
scales compare); a running maximum from the tail makes the scores fall along the mask order, so the
highest scores over all tensors are, in each tensor, a prefix of its order: its low-frequency corner, as
the method requires. That maximum lets one strong shell late in the order hold all that precede it. A
tensor keeps at least its floor and, while the total shrinks, never more than it kept before; where
positions cost different numbers of weights the total may be under-spent by less than one position's weights.

"radius" (beyond the paper): the same total, spread so that every tensor keeps the same frequencies: the
coefficients whose indices sum to less than one common radius (one L1 norm, in every tensor's mask order),
above the floors. Per tensor, a ratio gives a large tensor's corner more frequencies along each axis than a
small one's; one radius gives each axis of every tensor the same number.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .mask import kept_rows, l1_counts

BUDGETS = ("tensor", "global", "radius")


def shell_sizes(t_shape: Sequence[int], n: int) -> torch.Tensor:
    """How many of the first n coefficients in mask order lie on each L1 norm (the last shell may be cut)."""
    cum = np.minimum(np.cumsum(l1_counts(tuple(int(d) for d in t_shape))), n)
    sizes = np.diff(cum, prepend=0)
    return torch.from_numpy(sizes[: int(np.searchsorted(cum, n)) + 1].copy())


def falling_scores(energy: torch.Tensor, shells: torch.Tensor) -> torch.Tensor:
    """Each position's score: the mean energy of its shell (`shells`: the shells' sizes, in mask order),
    then the running maximum from the tail, so that scores fall along the mask order."""
    e = energy.double()
    owner = torch.repeat_interleave(torch.arange(len(shells)), shells)
    means = torch.zeros(len(shells), dtype=e.dtype).index_add_(0, owner, e) / shells.clamp_min(1)
    return torch.repeat_interleave(means.flip(0).cummax(0).values.flip(0), shells)


def spread(energies: Sequence[torch.Tensor], t_shapes: Sequence[Sequence[int]], floors: Sequence[int],
           costs: Sequence[int], total: int) -> list[int]:
    """Kept positions per tensor: at least `floors[i]`, at most len(energies[i]), with sum(k * cost) <= total.

    energies[i]: the (relative) energy of tensor i's first coefficients in mask order (its transformed shape
    `t_shapes[i]`); costs[i]: the weights one position keeps (the tensor's untransformed slices). The
    positions beyond the floors are taken by falling score until the next would exceed the total.
    """
    floors = [min(int(f), len(e)) for f, e in zip(floors, energies)]
    left = int(total) - sum(f * int(c) for f, c in zip(floors, costs))
    if left < 0:
        raise ValueError(f"the floors keep {total - left} weights, more than the total {total}")
    scores, owner, cost = [], [], []
    for i, (e, shape, f, c) in enumerate(zip(energies, t_shapes, floors, costs)):
        e = e.detach().flatten().cpu()
        s = falling_scores(e, shell_sizes(shape, len(e)))[f:]
        scores.append(s)
        owner.append(torch.full((len(s),), i, dtype=torch.long))
        cost.append(torch.full((len(s),), int(c), dtype=torch.long))
    scores, owner, cost = torch.cat(scores), torch.cat(owner), torch.cat(cost)
    order = torch.sort(scores, descending=True, stable=True).indices  # ties keep each tensor's own order
    taken = int(torch.searchsorted(torch.cumsum(cost[order], 0), left, right=True))
    extra = torch.bincount(owner[order[:taken]], minlength=len(floors))
    return [f + int(n) for f, n in zip(floors, extra)]


def radius_scores(t_shape: Sequence[int], n: int) -> torch.Tensor:
    """1 / (1 + each of the first n positions' L1 norm), in mask order: the same score for the same frequency
    in every tensor, falling along the order."""
    shells = shell_sizes(t_shape, n)
    return torch.repeat_interleave(1 / torch.arange(1, len(shells) + 1, dtype=torch.float64), shells)


def spread_over(weights: Sequence[tuple[torch.Tensor, Any]], floors: Sequence[int], total: int,
                everything: bool, budget: str = "global") -> list[int]:
    """`spread` over regularized tensors, given as (T, its FrequencyWeight). budget "global": each position
    scores by its energy relative to its tensor's mean over all its coefficients; "radius": by its L1 norm
    (`radius_scores`). Candidates: the kept positions, or every one (`everything`)."""
    energies = []
    with torch.no_grad():
        for t, p in weights:
            if budget == "radius":
                energies.append(radius_scores(p.t_shape, p.t_numel if everything else p._k))
                continue
            t = t.float()
            e = kept_rows(t, p.view, p.dims, p.t_numel if everything else p._k).pow(2).sum(0)
            energies.append(e * p.t_numel / t.pow(2).sum().clamp_min(torch.finfo(t.dtype).tiny))
    return spread(energies, [p.t_shape for _, p in weights], floors, [p.slices for _, p in weights], total)
