"""Apply frequency regularization to the weights of any `nn.Module`.

A regularized weight keeps its frequency coefficients T as the learnable tensor
(`<module>.parametrizations.weight.original`, same shape as the weight) and is
computed on access as W = IDCT(T * M), through `torch.nn.utils.parametrize`.
The module keeps its class; `export` turns it back into plain weights with the
original `state_dict` keys.
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

from .dct import dctn, idctn, masked_idctn
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
        self._mask = None  # ((k, device, dtype), corner shape, corner mask)
        self._cached = None  # (key, W) for inference

    @property
    def kept(self) -> int:
        return int(self.k) * self.slices

    def set_k(self, k: int) -> None:
        self.k.fill_(int(k))

    def corner(self) -> tuple[int, ...]:
        """Shape of the view's corner that holds every kept coefficient."""
        ct = iter(corner_shape(self.t_shape, int(self.k)))
        return tuple(next(ct) if d in self.dims else n for d, n in enumerate(self.view))

    def _geometry(self, device, dtype) -> tuple[tuple[int, ...], torch.Tensor]:
        """(corner shape, corner mask broadcastable over the view), cached per k, device and dtype."""
        key = (int(self.k), device, dtype)
        if self._mask is None or self._mask[0] != key:
            corner = self.corner()
            m = corner_mask(self.t_shape, key[0], device)
            mask = m.reshape([corner[d] if d in self.dims else 1 for d in range(len(self.view))]).to(dtype)
            self._mask = (key, corner, mask)
        return self._mask[1:]

    @torch.compiler.disable  # k changes every step: keep this bookkeeping eager, let the network compile
    def forward(self, t: torch.Tensor) -> torch.Tensor:
        key = (t.data_ptr(), t._version, int(self.k), t.device, t.dtype)
        if not torch.is_grad_enabled() and self._cached is not None and self._cached[0] == key:
            return self._cached[1]  # inference: reconstruct W once, not every batch
        tv = t.reshape(self.view)
        # W is reconstructed at T's precision; under mixed precision the layer casts it itself
        with torch.autocast(t.device.type, enabled=False):
            if int(self.k) == self.t_numel:
                w = idctn(tv, self.dims)
            else:
                w = masked_idctn(tv, self._geometry(t.device, t.dtype)[1], self.dims)
        w = w.reshape(self.shape)
        self._cached = (key, w) if not torch.is_grad_enabled() else None
        return w

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return dctn(w.reshape(self.view), self.dims).reshape(self.shape)

    def extra_repr(self) -> str:
        view = f", view={self.view}" if self.view != self.shape else ""
        return f"shape={self.shape}{view}, dims={self.dims}, kept={self.kept}"


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
    previous linear layer reads that map flattened.
    """
    views = {k: tuple(v) for k, v in getattr(model, "fr_views", {}).items()}
    if sample_input is None:
        return views
    names = {id(m.weight): (_weight_name(n), m) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    watch = _WatchLinearInputs(names)
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

    def __init__(self, model: nn.Module, schedule: TailDropout, min_kept: Mapping[str, int]):
        self.model = model
        self.schedule = schedule
        self.min_kept = dict(min_kept)
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

    def _apply_beta(self) -> None:
        self._check_attached()
        for _, _, p in self.tensors:
            floor = math.ceil(self.min_kept.get(p.kind, 1) / p.slices)
            p.set_k(ratio_to_k(p.t_numel, self.schedule.beta, floor))

    def _advance(self, unit: str) -> None:
        self._check_attached()
        if self.schedule.unit == unit and self.model.training:
            self.schedule.advance()
            self._apply_beta()

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
               sample_input: torch.Tensor | None = None, generator: torch.Generator | None = None) -> FR:
    """Turn the chosen weights of `model` into frequency-domain parameters, in place.

    include/exclude: module-name globs ("features.*") or layer type names ("Linear");
    by default every Conv/ConvTranspose/Linear weight is regularized.
    init: "dct" starts from the DCT of the layer's own weights (nothing dropped == the
    original network); "normal" draws T ~ Normal(0, 0.1) as the paper's authors did.
    linear_view: "flat" transforms a linear weight over (out, in) as the paper does;
    "auto" over (out, C, H, W) when the layer reads a flattened map (needs
    `sample_input` or a model that declares `fr_views`). `views` sets views by weight name.
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
        parametrize.register_parametrization(module, "weight", p)
        if init == "normal":
            with torch.no_grad():
                original = module.parametrizations.weight.original
                original.copy_(torch.randn(original.shape, generator=generator) * 0.1)
    return FR(model, schedule, min_kept)


def export(model: nn.Module) -> nn.Module:
    """Replace every regularized weight by its spatial tensor; the model becomes plain again."""
    for name, module, _ in list(fr_tensors(model)):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
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
