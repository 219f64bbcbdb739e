"""Apply frequency regularization to the weights of any `nn.Module`.

A regularized weight keeps its frequency coefficients T as the learnable tensor
(`<module>.parametrizations.weight.original`, same shape as the weight) and is
computed on access as W = IDCT(T * M), through `torch.nn.utils.parametrize`.
The module keeps its class; `export` turns it back into plain weights with the
original `state_dict` keys.

Training need not build W at all. The IDCT over a linear weight's (out, in...)
dims, or a conv weight's channel dims, factors through the layer:
linear(x, IDCT(T)) = IDCT_out(linear(DCT_in(x), T)), and only the kept corner
of T takes part. While gradients are on, a Linear or Conv2d takes that route
when a cost count says it is cheaper than rebuilding W (`FrequencyWeight.factored_cost`).
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from typing import Iterable, Iterator, Mapping, Sequence

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from .dct import contract, dctn, expand, fft_cost, idctn_corner, is_last_dim, masked_idctn, transform_channels, use_fft
from .mask import KINDS, corner_mask, corner_shape, ratio_to_k
from .schedule import TailDropout

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
INITS = ("dct", "normal")
LINEAR_VIEWS = ("flat", "auto")
MIN_KEPT = {"conv": 128, "linear": 256}  # the paper's per-tensor floors, the default of `regularize`


def kind_of(module: nn.Module) -> str | None:
    """"conv" or "linear" for the layer types FR applies to, else None."""
    if isinstance(module, _CONV):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


class FrequencyWeight(nn.Module):
    """The parametrization T -> W = IDCT(T * M) for one weight tensor.

    `view` is the shape the transform and the mask see (the weight keeps its own
    shape); `dims` are the transformed dims of the view, the others are kept
    whole. `k` counts kept coefficients per slice of the transformed dims.
    """

    def __init__(self, shape: Sequence[int], kind: str, view: Sequence[int] | None = None,
                 dims: Sequence[int] | None = None):
        super().__init__()
        self.shape = tuple(int(d) for d in shape)
        self.view = tuple(int(d) for d in (view or self.shape))
        if math.prod(self.view) != math.prod(self.shape):
            raise ValueError(f"view {self.view} does not match weight shape {self.shape}")
        nd = len(self.view)
        if dims is not None and any(not -nd <= d < nd for d in dims):
            raise ValueError(f"dims {list(dims)} out of range for a {nd}-dim weight (dims run from {-nd} to {nd - 1})")
        self.dims = tuple(sorted({d % nd for d in dims})) if dims is not None else tuple(range(nd))
        if not self.dims:
            raise ValueError("dims must name at least one dimension")
        self.kind = kind
        self.t_shape = tuple(self.view[d] for d in self.dims)
        self.t_numel = math.prod(self.t_shape)
        self.slices = math.prod(self.view) // self.t_numel  # untransformed positions
        self.register_buffer("k", torch.tensor(self.t_numel, dtype=torch.long))
        # The forward reads k from this host copy: reading the buffer on a GPU would wait for
        # the device once per layer per step. The buffer is what checkpoints and files keep.
        self._k = self.t_numel
        self._mask = None  # ((k, device, dtype), corner shape, corner mask)
        self._cached = None  # (key, W) for inference

    @property
    def kept(self) -> int:
        return self._k * self.slices

    def set_k(self, k: int) -> None:
        self._k = int(k)
        self.k.fill_(self._k)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._k = int(self.k)

    def corner(self) -> tuple[int, ...]:
        """Shape of the view's corner that holds every kept coefficient."""
        ct = iter(corner_shape(self.t_shape, self._k))
        return tuple(next(ct) if d in self.dims else n for d, n in enumerate(self.view))

    def _geometry(self, device, dtype) -> tuple[tuple[int, ...], torch.Tensor]:
        """(corner shape, corner mask broadcastable over the view), cached per k, device and dtype."""
        key = (self._k, device, dtype)
        if self._mask is None or self._mask[0] != key:
            corner = self.corner()
            m = corner_mask(self.t_shape, key[0], device)
            mask = m.reshape([corner[d] if d in self.dims else 1 for d in range(len(self.view))]).to(dtype)
            self._mask = (key, corner, mask)
        return self._mask[1:]

    @torch.compiler.disable  # k changes every step: keep this bookkeeping eager, let the network compile
    def forward(self, t: torch.Tensor) -> torch.Tensor:
        key = (t.data_ptr(), t._version, self._k, t.device, t.dtype)
        if not torch.is_grad_enabled() and self._cached is not None and self._cached[0] == key:
            return self._cached[1]  # inference: reconstruct W once, not every batch
        tv = t.reshape(self.view)
        # W is reconstructed at T's precision; under mixed precision the layer casts it itself
        with torch.autocast(t.device.type, enabled=False):
            mask = None if self._k == self.t_numel else self._geometry(t.device, t.dtype)[1]
            w = masked_idctn(tv, mask, self.dims)
        w = w.reshape(self.shape)
        self._cached = (key, w) if not torch.is_grad_enabled() else None
        return w

    def _masked_corner(self, t: torch.Tensor) -> torch.Tensor:
        """T restricted to the kept corner, dropped coefficients zeroed (the view's shape, corner-sized)."""
        tv = t.reshape(self.view)
        if self._k == self.t_numel:
            return tv
        corner, mask = self._geometry(t.device, t.dtype)
        return tv[tuple(slice(0, c) for c in corner)] * mask

    def factored_cost(self, in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[float, float]:
        """(factored, rebuilt): multiply-adds per training step of one call on an input of `in_shape`
        giving `out_shape`, with the factors applied to the activations, and with W rebuilt.

        A transform costs (elements on its long side) x `_per_element`; the layer's products
        run three times (forward and two backward), the rebuild twice (forward and adjoint).
        """
        corner = self.corner()
        rebuild, size = 0.0, list(corner)
        for d in sorted(self.dims, key=lambda d: self.view[d] / corner[d]):
            size[d] = self.view[d]
            rebuild += math.prod(size) * _per_element(self.view[d], corner[d], is_last_dim(self.view, d))
        if self.kind == "linear":  # rows of x: (rows, in...) -> (rows, a) -> (rows, out)
            rows_in = rows_out = math.prod(in_shape[:-1])
            inner, taps, per_row = 0.0, 1, math.prod(self.view[1:])
            for d in self.dims:
                if d >= 1:
                    inner += per_row * _per_element(self.view[d], corner[d], is_last_dim(self.view, d))
                    per_row = per_row // self.view[d] * corner[d]
            inner *= rows_in
            b = math.prod(corner[1:])
            out_last = True
        else:  # a 1x1 projection per input pixel, the small convolution, a 1x1 expansion per output pixel
            rows_in = in_shape[0] * math.prod(in_shape[2:])
            rows_out = out_shape[0] * math.prod(out_shape[2:])
            taps, b = math.prod(self.view[2:]), corner[1]
            inner = (rows_in * self.view[1] * _per_element(self.view[1], b, is_last_dim(in_shape, 1))
                     if 1 in self.dims else 0.0)
            out_last = is_last_dim(out_shape, 1)
        factored = inner + rows_out * corner[0] * b * taps
        if 0 in self.dims:
            factored += rows_out * self.view[0] * _per_element(self.view[0], corner[0], out_last)
        return 3 * factored, 2 * rebuild + 3 * rows_out * math.prod(self.view)

    def linear(self, x: torch.Tensor, t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """linear(x, W, bias) with W = IDCT(T * M), without building W."""
        tc = self._masked_corner(t)
        u = x.reshape(-1, *self.view[1:])
        for d in self.dims:
            if d >= 1:
                u = contract(u, d, tc.shape[d])
        z = u.reshape(u.shape[0], -1) @ tc.reshape(tc.shape[0], -1).T
        if 0 in self.dims:
            z = expand(z, 1, self.view[0])
        y = z.reshape(*x.shape[:-1], self.view[0])
        return y if bias is None else y + bias.to(y.dtype)  # under autocast y is low-precision, as nn.Linear's

    def conv2d(self, x: torch.Tensor, t: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        """conv.forward(x) with W = IDCT(T * M), without building W: a channel DCT of x (a 1x1
        projection), a convolution with the corner, an inverse channel DCT (a 1x1 expansion)."""
        tc = self._masked_corner(t)
        spatial = [d for d in self.dims if d >= 2]
        if spatial:
            tc = idctn_corner(tc, (*tc.shape[:2], *self.view[2:]), spatial)
        u = transform_channels(x, tc.shape[1], inverse=False) if 1 in self.dims else x
        y = nn.functional.conv2d(u, tc, None, conv.stride, conv.padding, conv.dilation)
        if 0 in self.dims:
            y = transform_channels(y, self.view[0], inverse=True)
        return y if conv.bias is None else y + conv.bias.view(1, -1, 1, 1).to(y.dtype)

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return dctn(w.reshape(self.view), self.dims).reshape(self.shape)

    def extra_repr(self) -> str:
        view = f", view={self.view}" if self.view != self.shape else ""
        return f"shape={self.shape}{view}, dims={self.dims}, kept={self.kept}"


def _per_element(n: int, c: int, last: bool) -> float:
    """Multiply-adds per output element of a one-dim transform between n samples and c coefficients
    (last: `dct.is_last_dim`), by whichever path `dct.use_fft` takes."""
    return fft_cost(n, last) if use_fft(n, c, last) else c


class FactoredForward:
    """`forward` of a regularized Linear or Conv2d (set on the instance; the class is unchanged):
    with gradients on, the layer applies the DCT factors to its activations when that costs less
    than rebuilding W; otherwise (and in inference, where W is built once) the class's own forward."""

    def __init__(self, module: nn.Module):
        self.module = module
        self._choice = None  # (input shape, k) -> factored or not

    @staticmethod
    def fits(module: nn.Module, p: "FrequencyWeight") -> bool:
        # parametrize swaps the class for a subclass of it: test the class's forward, not its type
        if isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward:
            return p.view[0] == module.out_features
        return (isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward
                and module.groups == 1 and module.padding_mode == "zeros" and p.view == p.shape)

    @torch.compiler.disable
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        if torch.is_grad_enabled():
            p = m.parametrizations.weight[0]
            key = (tuple(x.shape), p._k)
            if self._choice is None or self._choice[0] != key:
                self._choice = (key, self._cheaper(p, x))
            if self._choice[1]:
                t = m.parametrizations.weight.original
                return p.linear(x, t, m.bias) if isinstance(m, nn.Linear) else p.conv2d(x, t, m)
        return type(m).forward(m, x)

    def _cheaper(self, p: "FrequencyWeight", x: torch.Tensor) -> bool:
        m = self.module
        if isinstance(m, nn.Linear):
            out = (*x.shape[:-1], m.out_features)
        else:
            with torch.device("meta"):
                out = nn.functional.conv2d(torch.empty(x.shape), torch.empty(p.shape), None,
                                           m.stride, m.padding, m.dilation).shape
        factored, rebuild = p.factored_cost(tuple(x.shape), tuple(out))
        return factored < rebuild


def _weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def fr_tensors(model: nn.Module) -> Iterator[tuple[str, nn.Module, FrequencyWeight]]:
    """(weight name, owning module, parametrization) for every regularized weight."""
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                if isinstance(p, FrequencyWeight):
                    yield _weight_name(name), module, p


def _matches(name: str, module: nn.Module, patterns: Iterable[str]) -> bool:
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
    names = {id(m.weight): (_weight_name(n), m) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
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


class FR:
    """Handle on a regularized model: the tail-dropout schedule and its tensors."""

    def __init__(self, model: nn.Module, schedule: TailDropout, min_kept: Mapping[str, int], keep_norm: bool = False):
        self.model = model
        self.schedule = schedule
        self.min_kept = dict(min_kept)
        self.keep_norm = bool(keep_norm)
        self.tensors = list(fr_tensors(model))
        if not self.tensors:
            raise ValueError("no weight was regularized: check include/exclude")
        self._apply_beta()

    @property
    def beta(self) -> float:
        return self.schedule.beta

    def _check_attached(self) -> None:
        for name, module, p in self.tensors:
            if not (parametrize.is_parametrized(module, "weight") and p in module.parametrizations.weight):
                raise RuntimeError(f"{name} is no longer regularized (the model was exported): "
                                   f"this FR handle has nothing left to schedule")

    def _apply_beta(self, keep_norm: bool = False) -> None:
        """Set each tensor's k from beta. keep_norm: scale the coefficients a tensor keeps so that its
        weight's norm is what it was before this drop (the IDCT is orthonormal: ||W|| = ||T * M||)."""
        for _, module, p in self.tensors:
            floor = math.ceil(self.min_kept.get(p.kind, 1) / p.slices)
            k = ratio_to_k(p.t_numel, self.schedule.beta, floor)
            if not (keep_norm and k < p._k):
                p.set_k(k)
                continue
            with torch.no_grad():
                t = module.parametrizations.weight.original
                before = p._masked_corner(t).norm()
                p.set_k(k)
                after = p._masked_corner(t).norm()
                if after > 0:
                    t.mul_(before / after)

    def set_beta(self, beta: float) -> None:
        """Jump the schedule to the kept ratio `beta` (benchmarks, experiments at a fixed budget)."""
        self._check_attached()
        self.schedule.beta = float(beta)
        self._apply_beta()

    def _advance(self, unit: str) -> None:
        self._check_attached()
        if self.schedule.unit == unit and self.model.training:
            self.schedule.advance()
            self._apply_beta(self.keep_norm)

    def step(self) -> None:
        """Call after each optimizer step; advances the schedule when unit="step" (training mode only)."""
        self._advance("step")

    def epoch_end(self) -> None:
        """Call after each training epoch; advances the schedule when unit="epoch" (training mode only)."""
        self._advance("epoch")

    def kept(self) -> int:
        self._check_attached()
        return sum(p.kept for _, _, p in self.tensors)

    def dense(self) -> int:
        return sum(math.prod(p.shape) for _, _, p in self.tensors)

    def state_dict(self) -> dict:
        return {"schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._check_attached()
        self.schedule.load_state_dict(state["schedule"])
        self._apply_beta()


def _some(names: Sequence[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _chosen_modules(model: nn.Module, include: Sequence[str] | None,
                    exclude: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """The Conv/Linear modules that include/exclude pick; ValueError for a pattern that matches no layer,
    an empty choice, and weights that cannot be regularized (tied, already regularized, empty, on meta)."""
    layers = [(n, m) for n, m in model.named_modules()
              if kind_of(m) is not None and getattr(m, "weight", None) is not None]
    for what, patterns in (("include", include), ("exclude", exclude)):
        for pattern in patterns or ():
            if not any(_matches(n, m, [pattern]) for n, m in layers):
                raise ValueError(f"{what} pattern {pattern!r} matches no weight of a Conv/Linear layer "
                                 f"(layers: {_some([n for n, _ in layers]) or 'none'})")
    chosen = [(n, m) for n, m in layers
              if not (include and not _matches(n, m, include)) and not (exclude and _matches(n, m, exclude))]
    if not chosen:
        raise ValueError("no weight to regularize: include/exclude leave out every Conv/Linear layer")
    holders: dict[int, dict[int, str]] = {}  # tensor -> the modules holding it: several = tied weights
    for n, m in model.named_modules(remove_duplicate=False):
        for pn, param in m.named_parameters(recurse=False):
            holders.setdefault(id(param), {}).setdefault(id(m), f"{n}.{pn}" if n else pn)
    for n, m in chosen:
        name = _weight_name(n)
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


def regularize(model: nn.Module, epsilon: float = 0.001, gamma: float = 0.01, unit: str = "step",
               min_kept: Mapping[str, int] | None = None, init: str = "dct",
               include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
               dims: Sequence[int] | None = None, linear_view: str = "flat",
               views: Mapping[str, Sequence[int]] | None = None,
               sample_input: torch.Tensor | None = None, generator: torch.Generator | None = None,
               factored: bool = True, keep_norm: bool = False) -> FR:
    """Turn the chosen weights of `model` into frequency-domain parameters, in place.

    include/exclude: module-name globs ("features.*") or layer type names ("Linear");
    by default every Conv/ConvTranspose/Linear weight is regularized.
    init: "dct" starts from the DCT of the layer's own weights (nothing dropped == the
    original network); "normal" draws T ~ Normal(0, 0.1) as the paper's authors did.
    linear_view: "flat" transforms a linear weight over (out, in) as the paper does;
    "auto" over (out, C, H, W) when the layer reads a flattened map (needs
    `sample_input` or a model that declares `fr_views`). `views` sets views by weight name.
    factored: let Linear and Conv2d layers train without building W where that is cheaper
    (same results to float32 rounding; see `FactoredForward`).
    keep_norm: when the schedule drops coefficients, scale the ones a tensor keeps so that its weight
    keeps its norm (beyond the paper, which only zeroes them, so that at 0.1 % kept a random weight keeps
    ~0.1 % of its energy). Behind a normalization layer the scale does not change the function, only
    the effective step size, which tiny weights multiply. Without one it overshoots: a weight made of
    a few low frequencies passes far more of its norm to its output than a random one (AlexNet at its
    floors: activations grow 3-75x per layer, 10^5-10^8x over its eight, where after the paper's drop the
    first layer's gradient is ~1e-11).
    Every argument and chosen weight is checked before the model changes: a ValueError leaves it as it was.
    """
    schedule = TailDropout(epsilon, gamma, unit)
    min_kept = dict(MIN_KEPT if min_kept is None else min_kept)
    unknown = set(min_kept) - set(KINDS)
    if unknown:
        raise ValueError(f"min_kept keys must be among {KINDS}, got {sorted(unknown)}")
    for kind, floor in min_kept.items():
        if isinstance(floor, bool) or not isinstance(floor, numbers.Integral) or floor < 1:
            raise ValueError(f"min_kept[{kind!r}] must be an integer >= 1, got {floor!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if linear_view not in LINEAR_VIEWS:
        raise ValueError(f"linear_view must be one of {LINEAR_VIEWS}, got {linear_view!r}")
    chosen = dict(views or {})
    if linear_view == "auto":
        found = find_linear_views(model, sample_input)
        if not found and sample_input is None and not chosen:
            raise ValueError('linear_view="auto" needs sample_input (or a model that declares fr_views)')
        chosen = {**found, **chosen}
    modules = _chosen_modules(model, include, exclude)
    weights = []
    for name, module in modules:
        try:
            weights.append((module, FrequencyWeight(module.weight.shape, kind_of(module),
                                                    view=chosen.get(_weight_name(name)), dims=dims)))
        except ValueError as e:
            raise ValueError(f"{_weight_name(name)}: {e}") from None
    names = {_weight_name(n) for n, _ in modules}
    stray = sorted(set(views or {}) - names)
    if stray:
        raise ValueError(f"views name weights that are not regularized: {', '.join(stray)} "
                         f"(regularized: {_some(sorted(names))})")
    # every weight checked: only now is the model changed
    for module, p in weights:
        # unsafe: skip parametrize's consistency check, one more full inverse DCT of every weight
        parametrize.register_parametrization(module, "weight", p, unsafe=True)
        if factored and FactoredForward.fits(module, p):
            module.forward = FactoredForward(module)
        if init == "normal":
            with torch.no_grad():
                original = module.parametrizations.weight.original
                original.copy_(torch.randn(original.shape, generator=generator) * 0.1)
    return FR(model, schedule, min_kept, keep_norm)


def export(model: nn.Module) -> nn.Module:
    """Replace every regularized weight by its spatial tensor; the model becomes plain again."""
    for name, module, _ in list(fr_tensors(model)):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        if isinstance(module.__dict__.get("forward"), FactoredForward):
            del module.forward
    return model


def summary(model: nn.Module) -> pd.DataFrame:
    """One row per learnable tensor: name, kind, shape, view, dims, dense, kept, ratio."""
    rows = []
    fr = {name: p for name, _, p in fr_tensors(model)}
    for key, param in model.named_parameters():
        name = key.replace(".parametrizations.weight.original", ".weight")
        if name.startswith("parametrizations.weight.original"):
            name = "weight"
        p = fr.get(name)
        if p is not None:
            rows.append({"name": name, "kind": p.kind, "shape": p.shape,
                         "view": p.view if p.view != p.shape else None, "dims": p.dims,
                         "dense": math.prod(p.shape), "kept": p.kept})
        else:
            rows.append({"name": name, "kind": "plain", "shape": tuple(param.shape), "view": None,
                         "dims": None, "dense": param.numel(), "kept": param.numel()})
    df = pd.DataFrame(rows, columns=["name", "kind", "shape", "view", "dims", "dense", "kept"])
    df["ratio"] = df["kept"] / df["dense"]
    return df
