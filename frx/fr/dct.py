"""Orthonormal DCT-II / DCT-III over any subset of a tensor's dimensions.

Every transform here is a product of small dense cosine matrices applied one
dimension at a time, so it is differentiable and runs on any device. The
truncated inverse multiplies only the low-frequency corner of the coefficients
by the first columns of each inverse matrix: coefficients outside the corner are
zero by construction of the mask, so the result equals the full inverse.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch


@lru_cache(maxsize=256)
def _dct_matrix_cached(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    c = torch.cos(math.pi / n * (i + 0.5) * k) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(device=device, dtype=dtype)


def dct_matrix(n: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The n x n orthonormal DCT-II matrix C (X = C @ x); its transpose is DCT-III.

    Cached per (size, device, dtype); callers must not modify the result in place.
    """
    return _dct_matrix_cached(int(n), torch.device(device or "cpu"), dtype)


@lru_cache(maxsize=256)
def _inverse_columns(n: int, c: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # first c basis functions of the inverse, as an (n, c) contiguous matrix
    return _dct_matrix_cached(n, device, dtype)[:c].T.contiguous()


def _apply(x: torch.Tensor, dim: int, mat: torch.Tensor) -> torch.Tensor:
    """Contract dimension `dim` of x (size mat.shape[1]) with mat: out[.., j, ..] = sum_i mat[j, i] x[.., i, ..]."""
    if dim == x.ndim - 1:
        return x @ mat.T
    if dim == 0:
        return (mat @ x.reshape(x.shape[0], -1)).reshape(mat.shape[0], *x.shape[1:])
    return torch.movedim(torch.tensordot(x, mat, dims=([dim], [1])), -1, dim)


def _norm_dims(dims: Sequence[int] | None, ndim: int) -> list[int]:
    if dims is None:
        return list(range(ndim))
    out = sorted({d % ndim for d in dims})
    if len(out) != len(list(dims)):
        raise ValueError(f"repeated dims in {dims}")
    return out


def dctn(x: torch.Tensor, dims: Sequence[int] | None = None) -> torch.Tensor:
    """Orthonormal N-D DCT-II over `dims` (all dims when None); equals scipy.fft.dctn(norm="ortho")."""
    for d in _norm_dims(dims, x.ndim):
        x = _apply(x, d, dct_matrix(x.shape[d], x.device, x.dtype))
    return x


def idctn(x: torch.Tensor, dims: Sequence[int] | None = None) -> torch.Tensor:
    """Orthonormal N-D DCT-III over `dims`; the inverse of `dctn`."""
    for d in _norm_dims(dims, x.ndim):
        x = _apply(x, d, dct_matrix(x.shape[d], x.device, x.dtype).T)
    return x


def idctn_corner(corner: torch.Tensor, shape: Sequence[int], dims: Sequence[int] | None = None) -> torch.Tensor:
    """Inverse DCT of a tensor of `shape` whose only non-zero coefficients lie in `corner`.

    `corner` holds the first `corner.shape[d]` coefficients along each transformed
    dim d (and the full size along the others). Equals `idctn` of the zero-padded
    tensor, at the cost of the corner only. The dims that grow least are expanded
    first, which keeps the intermediate tensors small.
    """
    dims = _norm_dims(dims, corner.ndim)
    for d in range(corner.ndim):
        if d not in dims and corner.shape[d] != shape[d]:
            raise ValueError(f"dim {d} is not transformed, so the corner must span it ({corner.shape[d]} != {shape[d]})")
    x = corner
    for d in _expansion_order(corner.shape, shape, dims):
        x = _apply(x, d, _inverse_columns(int(shape[d]), corner.shape[d], x.device, x.dtype))
    return x


def _expansion_order(corner, shape, dims) -> list[int]:
    return sorted(dims, key=lambda d: shape[d] / max(corner[d], 1))


class _MaskedCornerIDCT(torch.autograd.Function):
    """W = IDCT(T * M) computed on the corner, with a hand-written backward.

    The backward is the adjoint: the truncated forward DCT of the incoming
    gradient, masked, placed in the corner of a zero tensor. One autograd node
    instead of a dozen keeps the per-step overhead of FR small.
    """

    @staticmethod
    def forward(ctx, t, mask, corner, dims):
        idx = tuple(slice(0, c) for c in corner)
        ctx.save_for_backward(mask)
        ctx.meta = (t.shape, corner, dims, idx)
        return idctn_corner(t[idx] * mask, t.shape, dims)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        shape, corner, dims, idx = ctx.meta
        g = g.to(mask.dtype)
        for d in reversed(_expansion_order(corner, shape, dims)):
            g = _apply(g, d, _inverse_columns(int(shape[d]), corner[d], g.device, g.dtype).T)
        grad = g.new_zeros(shape)
        grad[idx] = g * mask
        return grad, None, None, None


def masked_idctn(t: torch.Tensor, mask: torch.Tensor, dims: Sequence[int] | None = None) -> torch.Tensor:
    """IDCT over `dims` of t with every coefficient outside the corner `mask.shape` (and where mask is 0) dropped.

    `mask` spans the corner along transformed dims and has size 1 along the others.
    """
    dims = _norm_dims(dims, t.ndim)
    corner = tuple(mask.shape[d] if d in dims else t.shape[d] for d in range(t.ndim))
    return _MaskedCornerIDCT.apply(t, mask, corner, tuple(dims))
