"""Apply frequency regularization to the weights of any `nn.Module`.

A regularized weight keeps its frequency coefficients T as the learnable tensor
(`<module>.parametrizations.weight.original`, same shape as the weight) and is
computed on access as W = IDCT(T * M), through `torch.nn.utils.parametrize`.
The module keeps its class; `export` turns it back into plain weights with the
original `state_dict` keys.

Training need not build W at all. The IDCT over a linear weight's (out, in...)
dims, or a conv weight's channel dims, factors through the layer:
linear(x, IDCT(T)) = IDCT_out(linear(DCT_in(x), T)), and only the kept corner
of T takes part. While gradients are on (or inside `factored_inference`), a Linear or
Conv1-3d takes that route when a cost count says it is cheaper (`frx.fr.factors`).
"""

from __future__ import annotations

import math
import numbers
from typing import Iterator, Mapping, Sequence

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import parametrize

from .budget import BUDGETS, spread_over
from .dct import dctn, masked_idctn
from .factors import FactoredForward, corner_of
from .gain import GainKeeper
from .layers import chosen_modules, find_linear_views, kind_of, some, weight_name
from .mask import KINDS, corner_mask, ratio_to_k
from .schedule import TailDropout

INITS = ("dct", "normal")
LINEAR_VIEWS = ("flat", "auto")
MIN_KEPT = {"conv": 128, "linear": 256}  # the paper's per-tensor floors, the default of `regularize`


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
        return corner_of(self.view, self.dims, self._k)

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

    def masked_corner(self, t: torch.Tensor) -> torch.Tensor:
        """T restricted to the kept corner, dropped coefficients zeroed (the view's shape, corner-sized)."""
        tv = t.reshape(self.view)
        if self._k == self.t_numel:
            return tv
        corner, mask = self._geometry(t.device, t.dtype)
        return tv[tuple(slice(0, c) for c in corner)] * mask

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return dctn(w.reshape(self.view), self.dims).reshape(self.shape)

    def extra_repr(self) -> str:
        view = f", view={self.view}" if self.view != self.shape else ""
        return f"shape={self.shape}{view}, dims={self.dims}, kept={self.kept}"


def fr_tensors(model: nn.Module) -> Iterator[tuple[str, nn.Module, FrequencyWeight]]:
    """(weight name, owning module, parametrization) for every regularized weight."""
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                if isinstance(p, FrequencyWeight):
                    yield weight_name(name), module, p


class FR:
    """Handle on a regularized model: the tail-dropout schedule and its tensors."""

    def __init__(self, model: nn.Module, schedule: TailDropout, min_kept: Mapping[str, int], keep_norm: bool = False,
                 keep_gain: bool = False, budget: str = "tensor"):
        self.model = model
        self.schedule = schedule
        self.min_kept = dict(min_kept)
        self.keep_norm = bool(keep_norm)
        self.budget = budget
        self.tensors = list(fr_tensors(model))
        if not self.tensors:
            raise ValueError("no weight was regularized: check include/exclude")
        self.gain = GainKeeper({name: module for name, module, _ in self.tensors}) if keep_gain else None
        self._total = self.dense()  # the total that budget "global" or "radius" last spread: nothing dropped yet
        self._apply_beta()

    @property
    def beta(self) -> float:
        return self.schedule.beta

    def _check_attached(self) -> None:
        for name, module, p in self.tensors:
            if not (parametrize.is_parametrized(module, "weight") and p in module.parametrizations.weight):
                raise RuntimeError(f"{name} is no longer regularized (the model was exported): "
                                   f"this FR handle has nothing left to schedule")

    def _floor(self, p: FrequencyWeight) -> int:
        return min(p.t_numel, math.ceil(self.min_kept.get(p.kind, 1) / p.slices))

    def _rule(self) -> tuple[list[int], int]:
        """Each tensor's k by the paper's rule (the ratio beta, above its floor), and the weights they keep."""
        ks = [ratio_to_k(p.t_numel, self.schedule.beta, self._floor(p)) for _, _, p in self.tensors]
        return ks, sum(k * p.slices for k, (_, _, p) in zip(ks, self.tensors))

    def _targets(self) -> list[int]:
        """Each tensor's k at the schedule's beta: the paper's rule, or with budget "global" or "radius" the rule's
        total spread by `budget.spread`, anew only when that total moves."""
        ks, total = self._rule()
        if self.budget == "tensor":
            return ks
        if total == self._total:
            return [p._k for _, _, p in self.tensors]
        grow, self._total = total > self._total, total  # set_beta upwards: every coefficient is a candidate again
        return spread_over([(m.parametrizations.weight.original, p) for _, m, p in self.tensors],
                           [self._floor(p) for _, _, p in self.tensors], total, grow, self.budget)

    def _apply_beta(self, keep_norm: bool = False) -> None:
        """Set each tensor's k from beta. keep_norm: scale the coefficients a tensor keeps so that its
        weight's norm is what it was before this drop (the IDCT is orthonormal: ||W|| = ||T * M||)."""
        for k, (_, module, p) in zip(self._targets(), self.tensors):
            if not (keep_norm and k < p._k):
                p.set_k(k)
                continue
            with torch.no_grad():
                t = module.parametrizations.weight.original
                before = p.masked_corner(t).norm()
                p.set_k(k)
                after = p.masked_corner(t).norm()
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
            before = [p.kept for _, _, p in self.tensors]
            self.schedule.advance()
            self._apply_beta(self.keep_norm)
            if self.gain is not None and self.gain.active:
                self.gain.correct()  # for the previous drop, which this step's forward measured
                if before == [p.kept for _, _, p in self.tensors]:
                    self.gain.stop()

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
        return {"schedule": self.schedule.state_dict(), **({"gain": self.gain.state_dict()} if self.gain else {})}

    def load_state_dict(self, state: dict) -> None:
        self._check_attached()
        self.schedule.load_state_dict(state["schedule"])
        self._total = self._rule()[1]  # the kept counts were spread before the save: they load as they are
        self._apply_beta()
        if self.gain is not None and "gain" in state:
            self.gain.load_state_dict(state["gain"])


def regularize(model: nn.Module, epsilon: float = 0.001, gamma: float = 0.01, unit: str = "step",
               min_kept: Mapping[str, int] | None = None, init: str = "dct",
               include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
               dims: Sequence[int] | None = None, linear_view: str = "flat",
               views: Mapping[str, Sequence[int]] | None = None,
               sample_input: torch.Tensor | None = None, generator: torch.Generator | None = None,
               factored: bool = True, keep_norm: bool = False, keep_gain: bool = False, budget: str = "tensor") -> FR:
    """Turn the chosen weights of `model` into frequency-domain parameters, in place.

    include/exclude: module-name globs ("features.*") or layer type names ("Linear");
    by default every Conv/ConvTranspose/Linear weight is regularized.
    init: "dct" starts from the DCT of the layer's own weights (nothing dropped == the
    original network); "normal" draws T ~ Normal(0, 0.1) as the paper's authors did.
    linear_view: "flat" transforms a linear weight over (out, in) as the paper does;
    "auto" over (out, C, H, W) when the layer reads a flattened map (needs
    `sample_input` or a model that declares `fr_views`). `views` sets views by weight name.
    factored: let Linear and Conv1-3d layers train without building W where that is cheaper
    (same results to float32 rounding; see `FactoredForward`).
    keep_norm: when the schedule drops coefficients, scale the ones a tensor keeps so that its weight
    keeps its norm (beyond the paper, which only zeroes them, so that at 0.1 % kept a random weight keeps
    ~0.1 % of its energy). Behind a normalization layer the scale does not change the function, only
    the effective step size, which tiny weights multiply. Without one it overshoots: a weight made of
    a few low frequencies passes far more of its norm to its output than a random one (AlexNet at its
    floors: activations grow 3-75x per layer, 10^5-10^8x over its eight, where after the paper's drop the
    first layer's gradient is ~1e-11).
    keep_gain: while coefficients are dropped, rescale each layer so that its gain on the training batches
    stays its initialization's (beyond the paper; `frx.fr.gain`). One of keep_norm and keep_gain.
    budget: "tensor" keeps the ratio beta of every tensor (the paper); "global" spreads the same total over
    the tensors by the energy of their coefficients, "radius" so that every tensor keeps the same frequencies
    (both beyond the paper; `frx.fr.budget`).
    Every argument and chosen weight is checked before the model changes: a ValueError leaves it as it was.
    """
    schedule = TailDropout(epsilon, gamma, unit)
    if keep_norm and keep_gain:
        raise ValueError("keep_norm and keep_gain each rescale the kept coefficients: choose one")
    min_kept = dict(MIN_KEPT if min_kept is None else min_kept)
    unknown = set(min_kept) - set(KINDS)
    if unknown:
        raise ValueError(f"min_kept keys must be among {KINDS}, got {sorted(unknown)}")
    for kind, floor in min_kept.items():
        if isinstance(floor, bool) or not isinstance(floor, numbers.Integral) or floor < 1:
            raise ValueError(f"min_kept[{kind!r}] must be an integer >= 1, got {floor!r}")
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
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
    modules = chosen_modules(model, include, exclude)
    weights = []
    for name, module in modules:
        try:
            weights.append((module, FrequencyWeight(module.weight.shape, kind_of(module),
                                                    view=chosen.get(weight_name(name)), dims=dims)))
        except ValueError as e:
            raise ValueError(f"{weight_name(name)}: {e}") from None
    names = {weight_name(n) for n, _ in modules}
    stray = sorted(set(views or {}) - names)
    if stray:
        raise ValueError(f"views name weights that are not regularized: {', '.join(stray)} "
                         f"(regularized: {some(sorted(names))})")
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
    return FR(model, schedule, min_kept, keep_norm, keep_gain, budget)


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
