"""The factored form of an FR layer, from its (view, dims, k): one home for training and deploy.

A weight viewed as (n_1, ..., n_D) whose kept coefficients lie in the corner (c_1, ..., c_D) is a
Tucker product W = K x_1 B_1 ... x_D B_D, with B_d = C_{n_d}[:c_d]^T the first c_d inverse-DCT
basis vectors (the identity along untransformed dims) and K the kept coefficients in the corner
(zero where the mask drops them). Grouping the dims that index outputs and inputs gives

    linear: W = U K V^T, U = kron(B_d of the output dims), V = kron(B_d of the input dims)
            y = ((x V) K^T) U^T + bias                       (in*c_in + c_in*c_out + c_out*out)
    conv:   a 1x1 projection of the input channels onto c_in, a conv c_in -> c_out with the
            kernel K x_spatial B_spatial (dense over the kernel), a 1x1 expansion to the outputs.

`Factors.of` says whether a layer factors (a view that splits its dims across outputs and inputs in
any other way, or a grouped conv, does not). Training applies the factors to the activations as
DCTs with a core made from T (`linear`, `conv`; `FactoredForward` takes that route when
`Factors.cost` says it is cheaper than rebuilding W); deploy builds them as matrices (`matrices`)
and freezes them into modules (`frx.fr.deploy`), which it costs as modules (`deploy._layer_macs`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .dct import contract, dct_matrix, expand, fft_cost, idctn_corner, is_last_dim, transform_channels, use_fft
from .mask import corner_mask, corner_shape

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_TS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONV_FN = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}


def corner_of(view: Sequence[int], dims: Sequence[int], k: int) -> tuple[int, ...]:
    """Shape of the view's corner that holds every kept coefficient (whole along untransformed dims)."""
    ct = iter(corner_shape([view[d] for d in dims], k))
    return tuple(next(ct) if d in dims else n for d, n in enumerate(view))


def _per_element(n: int, c: int, last: bool) -> float:
    """Multiply-adds per output element of a one-dim transform between n samples and c coefficients
    (last: `dct.is_last_dim`), by whichever path `dct.use_fft` takes."""
    return fft_cost(n, last) if use_fft(n, c, last) else c


def _basis(n: int, c: int, transformed: bool) -> torch.Tensor:
    """(n, c) float64: the first c inverse-DCT basis vectors, or the identity for an untransformed dim."""
    if not transformed:
        return torch.eye(n, dtype=torch.float64)
    return dct_matrix(n, dtype=torch.float64)[:c].T


def _kron(mats: list[torch.Tensor]) -> torch.Tensor:
    out = mats[0]
    for m in mats[1:]:
        out = torch.kron(out, m)
    return out


@dataclass(frozen=True)
class Factors:
    """(project, core, expand) of one layer. kind: "linear" (the first `split` view dims index the
    outputs, the rest the inputs), "conv" (view = weight: out, in, kernel...) or "conv_t" (in, out, kernel...)."""
    view: tuple[int, ...]
    dims: tuple[int, ...]
    k: int
    kind: str
    split: int = 1

    @staticmethod
    def of(module: nn.Module, view: Sequence[int], dims: Sequence[int], k: int) -> Factors | None:
        """The factors of a Linear/Conv/ConvTranspose weight under (view, dims, k), or None when they do not exist."""
        view, dims = tuple(int(d) for d in view), tuple(sorted(int(d) % len(view) for d in dims))
        if isinstance(module, nn.Linear):
            split = next((s for s in range(1, len(view)) if math.prod(view[:s]) == module.out_features
                          and math.prod(view[s:]) == module.in_features), None)
            # None: the view mixes output and input indices, no (out) x (in) factorization
            return None if split is None else Factors(view, dims, int(k), "linear", split)
        if isinstance(module, (*CONVS, *CONV_TS)):
            if view != tuple(module.weight.shape) or module.groups != 1:
                return None  # a reshaped view or groups: the channel dims are not the view's first two
            return Factors(view, dims, int(k), "conv_t" if isinstance(module, CONV_TS) else "conv")
        return None

    @property
    def corner(self) -> tuple[int, ...]:
        return corner_of(self.view, self.dims, self.k)

    # ------------------------------------------------------------------------ training and evaluation

    def cost(self, in_shape: Sequence[int], out_shape: Sequence[int], training: bool = True) -> tuple[float, float]:
        """(factored, rebuilt): multiply-adds of one call on an input of `in_shape` giving `out_shape`,
        with the factors applied to the activations, and with W rebuilt.

        A transform costs (elements on its long side) x `_per_element`. In training the layer's products
        run three times (forward and two backward), the rebuild twice (forward and adjoint); in inference
        (`training=False`) the products run once and the rebuild is not counted: W is built once and
        kept for the following batches (`FrequencyWeight.forward`).
        """
        view, corner, s = self.view, self.corner, self.split
        rebuild, size = 0.0, list(corner)
        for d in sorted(self.dims, key=lambda d: view[d] / corner[d]):
            size[d] = view[d]
            rebuild += math.prod(size) * _per_element(view[d], corner[d], is_last_dim(view, d))
        if self.kind == "linear":  # rows of x: (rows, in...) -> (rows, a) -> (rows, out...)
            rows_in = rows_out = math.prod(in_shape[:-1])
            inner, taps, per_row = 0.0, 1, math.prod(view[s:])
            for d in self.dims:
                if d >= s:
                    inner += per_row * _per_element(view[d], corner[d], is_last_dim(view, d))
                    per_row = per_row // view[d] * corner[d]
            inner *= rows_in
            b = math.prod(corner[s:])
            factored = inner + rows_out * math.prod(corner[:s]) * b * taps
            per_row = math.prod(corner[:s])
            for d in self.dims:  # the output dims, expanded in this order
                if d < s:
                    per_row = per_row // corner[d] * view[d]
                    factored += rows_out * per_row * _per_element(view[d], corner[d], is_last_dim(corner[:s], d))
        else:  # a 1x1 projection per input pixel, the small convolution, a 1x1 expansion per output pixel
            rows_in = in_shape[0] * math.prod(in_shape[2:])
            rows_out = out_shape[0] * math.prod(out_shape[2:])
            taps, b = math.prod(view[2:]), corner[1]
            inner = (rows_in * view[1] * _per_element(view[1], b, is_last_dim(in_shape, 1))
                     if 1 in self.dims else 0.0)
            factored = inner + rows_out * corner[0] * b * taps
            if 0 in self.dims:
                factored += rows_out * view[0] * _per_element(view[0], corner[0], is_last_dim(out_shape, 1))
        passes, rebuilds = (3, 2) if training else (1, 0)
        return passes * factored, rebuilds * rebuild + passes * rows_out * math.prod(view)

    def linear(self, x: torch.Tensor, tc: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """linear(x, W, bias) with W = IDCT(T * M), without building W; `tc` is T's masked corner."""
        s = self.split
        u = x.reshape(-1, *self.view[s:])
        for d in self.dims:
            if d >= s:
                u = contract(u, d - s + 1, tc.shape[d])
        z = u.reshape(u.shape[0], -1) @ tc.reshape(math.prod(tc.shape[:s]), -1).T
        z = z.reshape(z.shape[0], *tc.shape[:s])
        for d in self.dims:
            if d < s:
                z = expand(z, d + 1, self.view[d])
        y = z.reshape(*x.shape[:-1], math.prod(self.view[:s]))
        return y if bias is None else y + bias.to(y.dtype)  # under autocast y is low-precision, as nn.Linear's

    def conv(self, x: torch.Tensor, tc: torch.Tensor, conv: nn.Module) -> torch.Tensor:
        """conv.forward(x) with W = IDCT(T * M), without building W: a channel DCT of x (a 1x1
        projection), a convolution with the corner, an inverse channel DCT (a 1x1 expansion)."""
        spatial = [d for d in self.dims if d >= 2]
        if spatial:
            tc = idctn_corner(tc, (*tc.shape[:2], *self.view[2:]), spatial)
        u = transform_channels(x, tc.shape[1], inverse=False) if 1 in self.dims else x
        y = _CONV_FN[x.ndim](u, tc, None, conv.stride, conv.padding, conv.dilation)
        if 0 in self.dims:
            y = transform_channels(y, self.view[0], inverse=True)
        return y if conv.bias is None else y + conv.bias.view(1, -1, *[1] * (y.ndim - 2)).to(y.dtype)

    # ------------------------------------------------------------------------------------ deploy

    def _core(self, w: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(K, bases): the masked corner coefficients of w (float64) and one basis per view dim."""
        view, dims, corner = self.view, self.dims, self.corner
        bases = [_basis(n, c, d in dims) for d, (n, c) in enumerate(zip(view, corner))]
        core = w.detach().to("cpu", torch.float64).reshape(view)  # deploy moves the factors to w's device
        for d in dims:  # truncated forward DCT along d: contract n_d with B_d
            core = torch.movedim(torch.tensordot(core, bases[d], dims=([d], [0])), -1, d)
        mask = corner_mask([view[d] for d in dims], self.k).reshape(
            [corner[d] if d in dims else 1 for d in range(len(view))])
        return core * mask, bases

    def matrices(self, w: torch.Tensor):
        """(project, core, expand) in float64 from the dense weight w (exact: w lies in the span of the
        corner's basis); project or expand is None where the corner spans every input or output (its
        square basis folded into the core). linear: P (c_in, in), K (c_out, c_in), E (out, c_out);
        conv: P and E as 1x1 kernels, K the small conv's kernel. None when both fold."""
        core, bases = self._core(w)
        if self.kind == "linear":
            u, v = _kron(bases[:self.split]), _kron(bases[self.split:])
            core = core.reshape(u.shape[1], v.shape[1])
            project, expand = v.T, u
            if u.shape[1] == u.shape[0]:  # the corner spans every output: fold the square basis into the core
                core, expand = u @ core, None
            if v.shape[1] == v.shape[0]:
                core, project = core @ v.T, None
        else:
            for d in range(2, core.ndim):  # the kernel stays dense inside the small conv
                core = torch.movedim(torch.tensordot(core, bases[d], dims=([d], [1])), -1, d)
            d_in, d_out = (0, 1) if self.kind == "conv_t" else (1, 0)
            b_in, b_out = bases[d_in], bases[d_out]
            ones = [1] * (core.ndim - 2)
            project = b_in.T.reshape(b_in.shape[1], b_in.shape[0], *ones)
            expand = b_out.reshape(b_out.shape[0], b_out.shape[1], *ones)
            if b_out.shape[1] == b_out.shape[0]:
                core, expand = torch.movedim(torch.tensordot(core, b_out, dims=([d_out], [1])), -1, d_out), None
            if b_in.shape[1] == b_in.shape[0]:
                core, project = torch.movedim(torch.tensordot(core, b_in, dims=([d_in], [1])), -1, d_in), None
        if project is None and expand is None:
            return None
        return project, core, expand


# Transposed convolutions train by rebuilding W: taking the factored route would change the float
# rounding of the runs that regularize them (the DCGAN and U-Net rows), whose records must stay as
# they are. Deploy factors them.
TRAINED_FACTORED = ("linear", "conv")


class FactoredForward:
    """`forward` of a regularized Linear or Conv1-3d (set on the instance; the class is unchanged):
    with gradients on, the layer applies the DCT factors to its activations when that costs less
    than rebuilding W; otherwise the class's own forward. Without gradients it takes the class's own
    forward too (the packed model's output, bit for bit), unless `factored_inference` is on, which
    weighs the factored products against the dense layer's, W being built once."""

    factored_inference = False  # set per layer by `factored_inference(model)`

    def __init__(self, module: nn.Module):
        self.module = module
        p = module.parametrizations.weight[0]
        self.layout = Factors.of(module, p.view, p.dims, p.t_numel)  # k is read at each call
        self._choice = None  # (input shape, k, training) -> factored or not

    @staticmethod
    def fits(module: nn.Module, p) -> bool:
        """Whether the layer holding the parametrization `p` can take the factored route."""
        f = Factors.of(module, p.view, p.dims, p._k)
        if f is None or f.kind not in TRAINED_FACTORED:
            return False
        # parametrize swaps the class for a subclass of it: test the class's forward, not its type
        base = nn.Linear if f.kind == "linear" else next(c for c in CONVS if isinstance(module, c))
        return type(module).forward is base.forward and getattr(module, "padding_mode", "zeros") == "zeros"

    @torch.compiler.disable
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        training = torch.is_grad_enabled()
        if not (training or self.factored_inference):
            return type(m).forward(m, x)
        p = m.parametrizations.weight[0]
        key = (tuple(x.shape), p._k, training)
        if self._choice is None or self._choice[0] != key:
            self._choice = (key, self._cheaper(p, x, training))
        if self._choice[1]:
            f, tc = replace(self.layout, k=p._k), p.masked_corner(m.parametrizations.weight.original)
            return f.linear(x, tc, m.bias) if isinstance(m, nn.Linear) else f.conv(x, tc, m)
        return type(m).forward(m, x)

    def _cheaper(self, p, x: torch.Tensor, training: bool) -> bool:
        m = self.module
        if isinstance(m, nn.Linear):
            out = (*x.shape[:-1], m.out_features)
        else:
            with torch.device("meta"):
                out = _CONV_FN[x.ndim](torch.empty(x.shape), torch.empty(p.shape), None,
                                       m.stride, m.padding, m.dilation).shape
        factored, rebuild = replace(self.layout, k=p._k).cost(tuple(x.shape), tuple(out), training)
        return factored < rebuild


def factored_forwards(model: nn.Module) -> list[FactoredForward]:
    """The `FactoredForward` of each of `model`'s layers that has one."""
    return [m.forward for m in model.modules() if isinstance(m.__dict__.get("forward"), FactoredForward)]


@contextlib.contextmanager
def factored_inference(model: nn.Module):
    """Inside: `model`'s factored layers evaluate (without gradients) by whichever route costs fewer
    multiply-adds, the factored products or the dense layer with W built once; at a small budget that is
    the factored one, whose outputs differ from the packed model's by float rounding. For evaluations
    during training, where speed counts."""
    layers = factored_forwards(model)
    saved = [f.factored_inference for f in layers]
    for f in layers:
        f.factored_inference = True
    try:
        yield
    finally:
        for f, before in zip(layers, saved):
            f.factored_inference = before
