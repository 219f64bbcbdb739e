"""The zigzag mask: which frequency coefficients of a tensor are kept.

Index vectors x of a tensor are ordered by their L1 norm |x|_1, ties broken
lexicographically (smaller first index first). A mask keeps the first k indices
in that order, so (shape, k) describes it completely.

Nothing here sorts the tensor: the number of indices of each L1 norm is the
coefficient list of a product of polynomials (1 + z + ... + z^(D_i - 1)), which
locates the boundary norm s; every kept index then lies in the corner
`min(D_i, s + 1)`, and only that corner is ever materialised.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

KINDS = ("conv", "linear")


@lru_cache(maxsize=1024)
def l1_counts(shape: tuple[int, ...]) -> np.ndarray:
    """counts[s] = number of indices of `shape` whose L1 norm is s."""
    counts = np.ones(1, dtype=np.int64)
    for d in shape:
        counts = np.convolve(counts, np.ones(int(d), dtype=np.int64))
    counts.flags.writeable = False
    return counts


def check_k(shape: Sequence[int], k: int) -> int:
    numel = math.prod(shape)
    if not 1 <= k <= numel:
        raise ValueError(f"k must be in [1, {numel}] for shape {tuple(shape)}, got {k}")
    return int(k)


def boundary(shape: Sequence[int], k: int) -> tuple[int, int]:
    """(s, m): the mask keeps every index with norm < s and the first m (lexicographic) with norm == s."""
    shape = tuple(int(d) for d in shape)
    k = check_k(shape, k)
    cum = np.cumsum(l1_counts(shape))
    s = int(np.searchsorted(cum, k, side="right"))  # first norm whose cumulative count exceeds k
    below = int(cum[s - 1]) if s > 0 else 0
    return s, k - below


def corner_bound(shape: Sequence[int], k: int) -> int:
    """r such that every kept index has |x|_1 < r."""
    s, m = boundary(shape, k)
    return s + 1 if m > 0 else s


def corner_shape(shape: Sequence[int], k: int) -> tuple[int, ...]:
    """The low-frequency corner that holds every kept index."""
    r = corner_bound(shape, k)
    return tuple(min(int(d), r) for d in shape)


def _norm_grid(corner: Sequence[int], device) -> torch.Tensor:
    dtype = torch.int16 if sum(corner) < 2**15 else torch.int32
    grid = torch.zeros((), dtype=dtype, device=device)
    for i, c in enumerate(corner):
        view = [1] * len(corner)
        view[i] = c
        grid = grid + torch.arange(c, dtype=dtype, device=device).view(view)
    return grid


def corner_mask(shape: Sequence[int], k: int, device=None) -> torch.Tensor:
    """Boolean mask over `corner_shape(shape, k)`; True where a coefficient is kept.

    Built row by row of the last dim: a row whose other indices have norm r keeps its
    first s - r entries, and the first m rows (lexicographically) with 0 <= s - r < its length
    also keep entry s - r. One comparison per element of the corner, no grid of norms.
    """
    s, m = boundary(shape, k)
    corner = corner_shape(shape, k)
    rest = _norm_grid(corner[:-1], device).flatten().long()  # norms of the leading indices, one per row
    room = s - rest  # entries of each row with norm < s
    last = torch.arange(corner[-1], device=device)
    mask = last < room.unsqueeze(1)
    if m:
        ties = torch.nonzero((room >= 0) & (room < corner[-1]))[:m, 0]  # rows in lexicographic order
        mask[ties, room[ties]] = True
    return mask.reshape(corner)


def full_mask(shape: Sequence[int], k: int, device=None) -> torch.Tensor:
    """The mask over the whole tensor (for tests and small tensors)."""
    corner = corner_mask(shape, k, device)
    out = torch.zeros(tuple(shape), dtype=torch.bool, device=device)
    out[tuple(slice(0, c) for c in corner.shape)] = corner
    return out


def kept_order(shape: Sequence[int], k: int, device=None) -> torch.Tensor:
    """Flat indices into the corner of the kept coefficients, in mask order (L1 norm, then lexicographic).

    Mask order has the prefix property: the first k' entries are the mask for k' < k.
    """
    if len(shape) == 2:
        return _kept_order_2d(tuple(int(d) for d in shape), k, device)
    mask = corner_mask(shape, k, device)
    flat = torch.nonzero(mask.flatten())[:, 0]
    norms = _norm_grid(mask.shape, device).flatten()[flat]
    return flat[torch.sort(norms, stable=True).indices]


def _kept_order_2d(shape: tuple[int, int], k: int, device) -> torch.Tensor:
    # Listed directly, without a sort: norm s holds the rows x0 = lo(s) .. hi(s), in order, with x1 = s - x0.
    s_end = corner_bound(shape, k)
    c0, c1 = corner_shape(shape, k)
    s = torch.arange(s_end, device=device)
    lo = (s - (c1 - 1)).clamp(min=0)
    counts = torch.minimum(s, torch.tensor(c0 - 1, device=device)) - lo + 1
    starts = torch.cumsum(counts, 0) - counts
    norm = torch.repeat_interleave(s, counts)[:k]
    x0 = lo[norm] + torch.arange(k, device=device) - starts[norm]
    return x0 * c1 + (norm - x0)


def slice_perm(view: Sequence[int], dims: Sequence[int]) -> list[int]:
    """The dims of `view` reordered as (untransformed..., transformed...)."""
    return [d for d in range(len(view)) if d not in dims] + list(dims)


def kept_rows(t: torch.Tensor, view: Sequence[int], dims: Sequence[int], k: int) -> torch.Tensor:
    """The kept coefficients of `t` seen as `view` and masked over `dims`: (slices, k), each row in mask order."""
    t_shape = tuple(int(view[d]) for d in dims)
    rows = t.reshape(tuple(view)).permute(slice_perm(view, dims)).reshape(-1, *t_shape)
    corner = corner_shape(t_shape, k)
    rows = rows[(slice(None),) + tuple(slice(0, c) for c in corner)].reshape(rows.shape[0], -1)
    return rows[:, kept_order(t_shape, k, t.device)]


def ratio_to_k(numel: int, ratio: float, min_kept: int = 1) -> int:
    """Kept count for a kept ratio, never below the floor `min_kept` nor above `numel`."""
    return int(min(numel, max(round(ratio * numel), min_kept, 1)))


def final_kept(numel: int, epsilon: float, min_kept: int = 1) -> int:
    """Kept count once tail-dropout has reached its floor epsilon."""
    return ratio_to_k(numel, epsilon, min_kept)
