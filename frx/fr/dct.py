"""Orthonormal DCT-II / DCT-III over any subset of a tensor's dimensions.

Each dimension is transformed on its own, in one of two exact ways chosen per
dimension by cost: a product with a dense cosine matrix (best for short dims and
for narrow corners), or an FFT of length n (Makhoul's reordering), which costs
O(log n) per element instead of O(n). Both are differentiable and run on any
device. The truncated inverse expands only the low-frequency corner of the
coefficients: coefficients outside it are zero by construction of the mask, so
the result equals the full inverse.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch

# The FFT path is taken along a dim of size n expanded from (or truncated to) c
# coefficients when c > FFT_FACTOR * log2(n) and n >= FFT_MIN. The cosine matrix
# runs as one GEMM, so it stays faster far longer than flop counts suggest:
# measured (float32, one CPU thread, n = 512 ... 9,216) the two break even
# near c = 250-380, and the FFT is 4-10x faster at c = n = 4,096.
FFT_FACTOR = 28.0
FFT_MIN = 256
# Along a dim with more elements after it (a conv weight's channels, a map's channels) the FFT path
# pays two transposed copies and the matrix none: measured (one CPU thread) the matrix is faster up
# to about 1,024: 3x for (N, 256, 8, 8) maps, as fast for a (512, 512, 9) weight, 1.8x for (1,024, 1,024, 9).
STRIDED_FFT_FACTOR = 110.0


@lru_cache(maxsize=256)
def _cos_rows(n: int, rows: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # the first `rows` rows of the n x n orthonormal DCT-II matrix
    k = torch.arange(rows, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    c = torch.cos(math.pi / n * (i + 0.5) * k) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(device=device, dtype=dtype)


def dct_matrix(n: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The n x n orthonormal DCT-II matrix C (X = C @ x); its transpose is DCT-III.

    Cached per (size, device, dtype); callers must not modify the result in place.
    """
    return _cos_rows(int(n), int(n), torch.device(device or "cpu"), dtype)


@lru_cache(maxsize=256)
def _inverse_columns(n: int, c: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # first c basis functions of the inverse, as an (n, c) contiguous matrix
    return _cos_rows(n, c, device, dtype).T.contiguous()


def is_last_dim(shape: Sequence[int], dim: int) -> bool:
    """Whether nothing follows `dim` in memory (every later dim has size 1)."""
    return math.prod(shape[dim + 1:]) == 1


def fft_cost(n: int, last: bool) -> float:
    """The FFT's cost per element along a dim of size n, counted in the cosine matrix's multiply-adds."""
    return (FFT_FACTOR if last else STRIDED_FFT_FACTOR) * math.log2(n)


def use_fft(n: int, c: int, last: bool = True) -> bool:
    """Whether a dim of size n with c coefficients is cheaper by FFT than by the cosine matrix
    (last: `is_last_dim`)."""
    return n >= FFT_MIN and c > fft_cost(n, last)


@lru_cache(maxsize=256)
def _fft_tables(n: int, device: torch.device, dtype: torch.dtype):
    """Reordering and twiddles of the length-n FFT DCT (see `_dct_last`, `_idct_last`)."""
    order = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2).flip(0)])  # even samples, then odd reversed
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    scale = torch.full_like(k, math.sqrt(2.0 / n))
    scale[0] = math.sqrt(1.0 / n)
    angle = -math.pi * k / (2 * n)
    cplx = torch.complex128 if dtype == torch.float64 else torch.complex64
    fwd = torch.polar(scale, angle).to(device=device, dtype=cplx)  # X_k = Re(V_k * fwd_k)
    # V_k = inv_k (X_k/s_k - i X_{n-k}/s_{n-k})
    inv = torch.polar(torch.ones_like(k), -angle).to(device=device, dtype=cplx)
    return order.to(device), fwd, inv, (1 / scale).to(device=device, dtype=dtype)


def _dct_last(x: torch.Tensor, c: int) -> torch.Tensor:
    """The first c orthonormal DCT-II coefficients along the last dim, by one real FFT of length n."""
    n = x.shape[-1]
    order, fwd = _fft_tables(n, x.device, x.dtype)[:2]
    w = torch.fft.rfft(x.index_select(-1, order))
    if c <= n // 2 + 1:
        return (w[..., :c] * fwd[:c]).real
    w = w * fwd
    return torch.cat([w.real, -w.imag[..., n - c + 1:(n + 1) // 2].flip(-1)], -1)  # X_{n-k} = -Im(w_k)


def _idct_last(x: torch.Tensor, n: int) -> torch.Tensor:
    """Orthonormal DCT-III to length n along the last dim of x, whose c <= n entries are the first coefficients."""
    c = x.shape[-1]
    inv, inv_scale = _fft_tables(n, x.device, x.dtype)[2:]
    h = n // 2 + 1
    a = x[..., :h] * inv_scale[:min(c, h)]  # X_k / s_k
    if c < h:
        a = torch.nn.functional.pad(a, (0, h - c))
    if c > n - n // 2:  # coefficients past the middle: b_k = X_{n-k} / s for k = n-c+1 .. n//2, else 0
        b = torch.nn.functional.pad(x[..., n - n // 2:].flip(-1) * math.sqrt(n / 2.0), (n - c + 1, 0))
        v = torch.complex(a, -b) * inv  # V_k = inv_k * (a_k - i b_k)
    else:
        v = a * inv
    y = torch.fft.irfft(v, n=n)
    out = torch.empty_like(y)  # undo the reordering: even samples first, then odd ones reversed
    out[..., 0::2] = y[..., :(n + 1) // 2]
    out[..., 1::2] = y[..., (n + 1) // 2:].flip(-1)
    return out


def _along_last(fn, x: torch.Tensor, dim: int, *args) -> torch.Tensor:
    dtype = x.dtype
    if dtype not in (torch.float32, torch.float64):  # bfloat16/float16 activations (autocast): FFT in float32
        x = x.float()
    if dim == x.ndim - 1:
        return fn(x, *args).to(dtype)
    # one contiguous copy first: the FFT and the reordering run ~2x slower on strided data
    return fn(x.movedim(dim, -1).contiguous(), *args).movedim(-1, dim).to(dtype)


def _matmul_dim(x: torch.Tensor, dim: int, mat: torch.Tensor) -> torch.Tensor:
    """out[.., j, ..] = sum_i mat[j, i] x[.., i, ..] along `dim`."""
    if dim == x.ndim - 1:
        return x @ mat.T
    if dim == 0:
        return (mat @ x.reshape(x.shape[0], -1)).reshape(mat.shape[0], *x.shape[1:])
    return torch.movedim(torch.tensordot(x, mat, dims=([dim], [1])), -1, dim)


def expand(x: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Orthonormal DCT-III along `dim` to length n of the first x.shape[dim] coefficients (the rest zero)."""
    c = x.shape[dim]
    if use_fft(n, c, is_last_dim(x.shape, dim)):
        return _along_last(_idct_last, x, dim, n)
    return _matmul_dim(x, dim, _inverse_columns(n, c, x.device, x.dtype))


def contract(x: torch.Tensor, dim: int, c: int) -> torch.Tensor:
    """The first c orthonormal DCT-II coefficients along `dim`: the adjoint of `expand`."""
    n = x.shape[dim]
    if use_fft(n, c, is_last_dim(x.shape, dim)):
        return _along_last(_dct_last, x, dim, c)
    return _matmul_dim(x, dim, _cos_rows(n, c, x.device, x.dtype))


def transform_channels(x: torch.Tensor, size: int, inverse: bool) -> torch.Tensor:
    """`contract` over the channels (dim 1) of an (N, C, ...) map to `size` coefficients, or
    `expand` to `size` channels; the matrix form runs as a 1x1 convolution, which keeps the layout."""
    n, c = (size, x.shape[1]) if inverse else (x.shape[1], size)
    if use_fft(n, c, is_last_dim(x.shape, 1)):
        return (expand(x, 1, n) if inverse else contract(x, 1, c)).contiguous()
    mat = _inverse_columns(n, c, x.device, x.dtype) if inverse else _cos_rows(n, c, x.device, x.dtype)
    conv = {3: torch.nn.functional.conv1d, 4: torch.nn.functional.conv2d, 5: torch.nn.functional.conv3d}[x.ndim]
    return conv(x, mat[(..., *[None] * (x.ndim - 2))])


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
        x = contract(x, d, x.shape[d])
    return x


def idctn(x: torch.Tensor, dims: Sequence[int] | None = None) -> torch.Tensor:
    """Orthonormal N-D DCT-III over `dims`; the inverse of `dctn`."""
    for d in _norm_dims(dims, x.ndim):
        x = expand(x, d, x.shape[d])
    return x


# Transformed dims at the end of a tensor with at most this many elements together (a conv kernel's
# 3x3 or 5x5) go through one Kronecker matrix, a single product on contiguous memory: one at a time,
# each middle dim would cost a transposed copy of the whole tensor.
SMALL_TRAILING = 64


@lru_cache(maxsize=256)
def _kron_inverse(ns: tuple[int, ...], cs: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # (prod ns, prod cs): the inverse over the trailing dims, row-major like their flattening
    out = torch.ones(1, 1, dtype=torch.float64)
    for n, c in zip(ns, cs):
        out = torch.kron(out, _cos_rows(n, c, torch.device("cpu"), torch.float64).T)
    return out.to(device=device, dtype=dtype)


def _plan(corner: Sequence[int], shape: Sequence[int], dims: Sequence[int]) -> tuple[list[int], list[int]]:
    """(trailing group, other dims in expansion order): how a corner is expanded to `shape`."""
    group: list[int] = []
    size = 1
    for d in reversed(range(len(shape))):
        if d not in dims or size * shape[d] > SMALL_TRAILING:
            break
        group.insert(0, d)
        size *= shape[d]
    if len(group) < 2:
        group = []
    return group, [d for d in _expansion_order(corner, shape, dims) if d not in group]


def _trailing(x: torch.Tensor, group: list[int], shape: Sequence[int], corner: Sequence[int],
              inverse: bool) -> torch.Tensor:
    """expand (inverse) the group's trailing dims from their `corner` sizes to `shape`, or contract back."""
    ns, cs = [int(shape[d]) for d in group], [int(corner[d]) for d in group]
    k = _kron_inverse(tuple(ns), tuple(cs), x.device, x.dtype)
    lead = x.shape[:group[0]]
    y = x.reshape(*lead, -1) @ (k.T if inverse else k)
    return y.reshape(*lead, *(ns if inverse else cs))


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
            raise ValueError(f"dim {d} is not transformed, so the corner must span it "
                             f"({corner.shape[d]} != {shape[d]})")
    group, rest = _plan(corner.shape, shape, dims)
    x = corner
    if group:
        x = _trailing(x, group, shape, corner.shape, inverse=True)
    for d in rest:
        x = expand(x, d, int(shape[d]))
    return x.contiguous()  # a middle dim's product leaves a strided view: the layer would copy it at each use


def _expansion_order(corner, shape, dims) -> list[int]:
    return sorted(dims, key=lambda d: shape[d] / max(corner[d], 1))


class _MaskedCornerIDCT(torch.autograd.Function):
    """W = IDCT(T * M) computed on the corner, with a hand-written backward.

    The backward is the adjoint: the truncated forward DCT of the incoming
    gradient, masked, placed in the corner of a zero tensor. One autograd node
    instead of a dozen keeps the per-step overhead of FR small. No mask: nothing
    is dropped, the corner is the whole tensor.
    """

    @staticmethod
    def forward(ctx, t, mask, corner, dims):
        idx = tuple(slice(0, c) for c in corner)
        ctx.save_for_backward(mask)
        ctx.meta = (t.shape, corner, dims, idx, t.dtype)
        return idctn_corner(t if mask is None else t[idx] * mask, t.shape, dims)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        shape, corner, dims, idx, dtype = ctx.meta
        g = g.to(dtype)
        group, rest = _plan(corner, shape, dims)
        for d in reversed(rest):
            g = contract(g, d, corner[d])
        if group:
            g = _trailing(g, group, shape, corner, inverse=False)
        if mask is None:
            return g, None, None, None
        grad = g.new_zeros(shape)
        grad[idx] = g * mask
        return grad, None, None, None


def masked_idctn(t: torch.Tensor, mask: torch.Tensor | None, dims: Sequence[int] | None = None) -> torch.Tensor:
    """IDCT over `dims` of t with every coefficient outside the corner `mask.shape` (and where mask is 0) dropped;
    `idctn(t, dims)` when mask is None.

    `mask` spans the corner along transformed dims and has size 1 along the others.
    """
    dims = _norm_dims(dims, t.ndim)
    if mask is None:
        corner = tuple(t.shape)
    else:
        corner = tuple(mask.shape[d] if d in dims else t.shape[d] for d in range(t.ndim))
    return _MaskedCornerIDCT.apply(t, mask, corner, tuple(dims))
