"""Inference form of a regularized model: each FR layer as small factors or dense, whichever costs less.

The factors are `frx.fr.factors.Factors.matrices`, recovered from the dense weight by the truncated
forward DCT (exact, since W lies in the span of the corner's basis), so the same code serves a live
regularized model and a model loaded from a packed file; here they are frozen into modules
(`FactoredLinear`, `FactoredConv`) and costed as modules, at inference. A layer whose view does not
factor (or a grouped conv) stays dense.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .codec import unpack, unpack_meta
from .factors import CONV_TS as _CONV_TS
from .factors import CONVS as _CONVS
from .factors import Factors
from .parametrize import fr_tensors

FORMS = ("auto", "factored", "dense")
MIN_SAVING = 100_000  # multiply-adds per sample a factored layer must save: below it, its extra calls cost more
_POINTWISE = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}


class FactoredLinear(nn.Module):
    """y = ((x P^T) K^T) E^T + bias; `project` P (c_in, in) and `expand` E (out, c_out) may be None."""

    def __init__(self, project, core, expand, bias):
        super().__init__()
        self.project = nn.Parameter(project) if project is not None else None
        self.core = nn.Parameter(core)
        self.expand = nn.Parameter(expand) if expand is not None else None
        self.bias = nn.Parameter(bias) if bias is not None else None

    def forward(self, x):
        if self.project is not None:
            x = F.linear(x, self.project)
        if self.expand is None:
            return F.linear(x, self.core, self.bias)
        return F.linear(F.linear(x, self.core), self.expand, self.bias)

    def macs(self, positions_in: int, positions_out: int) -> int:
        """Multiply-adds per sample (positions: leading dims besides the batch)."""
        return positions_in * sum(t.numel() for t in (self.project, self.core, self.expand) if t is not None)


class FactoredConv(nn.Module):
    """1x1 projection onto the input channels' corner, the small (transposed) conv, 1x1 expansion."""

    def __init__(self, project, conv: nn.Module, expand, bias):
        super().__init__()
        self.project = nn.Parameter(project) if project is not None else None
        self.conv = conv
        self.expand = nn.Parameter(expand) if expand is not None else None
        self.bias = nn.Parameter(bias) if bias is not None else None

    def forward(self, x):
        if self.project is not None:
            x = _POINTWISE[self.project.ndim](x, self.project)
        x = self.conv(x)
        if self.expand is not None:
            x = _POINTWISE[self.expand.ndim](x, self.expand, self.bias)
        return x

    def macs(self, positions_in: int, positions_out: int) -> int:
        m = _layer_macs(self.conv, positions_in, positions_out)
        if self.project is not None:
            m += self.project.shape[0] * self.project.shape[1] * positions_in
        if self.expand is not None:
            m += self.expand.shape[0] * self.expand.shape[1] * positions_out
        return m


def _layer_macs(module: nn.Module, positions_in: int, positions_out: int) -> int:
    """Multiply-adds per sample of a linear or conv layer, dense or factored."""
    if isinstance(module, (FactoredLinear, FactoredConv)):
        return module.macs(positions_in, positions_out)
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features * positions_in
    if isinstance(module, _CONVS):
        return module.weight.numel() * positions_out
    if isinstance(module, _CONV_TS):
        return module.weight.numel() * positions_in
    raise TypeError(f"no cost model for {type(module).__name__}")


def _positions(shape: Sequence[int], module: nn.Module) -> int:
    """Per-sample positions a layer is applied at: spatial size for a conv, leading dims for a linear."""
    inner = shape[1:-1] if isinstance(module, (nn.Linear, FactoredLinear)) else shape[2:]
    return math.prod(inner)


def _costed(model: nn.Module, sample_input) -> dict[str, tuple[nn.Module, int, int]]:
    """{name: (module, positions in, positions out)} of every linear/conv layer one forward pass calls."""
    kinds = (nn.Linear, *_CONVS, *_CONV_TS, FactoredLinear, FactoredConv)
    inside = {id(m) for f in model.modules() if isinstance(f, FactoredConv) for m in f.conv.modules()}
    seen, hooks = {}, []
    for name, module in model.named_modules():
        if isinstance(module, kinds) and id(module) not in inside:
            def hook(mod, args, out, name=name):
                seen[name] = (mod, _positions(args[0].shape, mod), _positions(out.shape, mod))
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(sample_input)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return seen


def count_macs(model: nn.Module, sample_input: torch.Tensor) -> dict[str, int]:
    """Multiply-adds per sample of each linear/conv layer (dense or factored) on `sample_input`."""
    return {name: _layer_macs(m, pin, pout) for name, (m, pin, pout) in _costed(model, sample_input).items()}


# ---------------------------------------------------------------------------------------- factors

def _caster(like: torch.Tensor):
    return lambda t: None if t is None else t.to(like.device, like.dtype).contiguous()


def _copy(t):
    return None if t is None else t.detach().clone()


def factor(module: nn.Module, view: Sequence[int], dims: Sequence[int], k: int) -> nn.Module | None:
    """The factored form of an FR layer (plain Linear/Conv holding the dense weight), or None
    when its view does not factor or its corner spans every output and input."""
    f = Factors.of(module, view, dims, k)
    mats = f.matrices(module.weight) if f is not None else None
    if mats is None:
        return None
    cast = _caster(module.weight)
    project, core, expand = mats
    if f.kind == "linear":
        return FactoredLinear(cast(project), cast(core), cast(expand), _copy(module.bias))
    d_in, d_out = (0, 1) if f.kind == "conv_t" else (1, 0)
    kw = dict(stride=module.stride, padding=module.padding, dilation=module.dilation,
              bias=expand is None and module.bias is not None, padding_mode=module.padding_mode)
    if f.kind == "conv_t":
        kw["output_padding"] = module.output_padding
    conv = type(module)(core.shape[d_in], core.shape[d_out], module.kernel_size, **kw)
    conv = conv.to(module.weight.device, module.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(cast(core))
        if conv.bias is not None:
            conv.bias.copy_(module.bias)
    return FactoredConv(cast(project), conv, cast(expand), _copy(module.bias) if expand is not None else None)


# ---------------------------------------------------------------------------------------- deploy

def _fr_layers(model: nn.Module, packed) -> dict[str, tuple]:
    """{module name: (view, dims, k)} from the live parametrizations or the packed file's header."""
    if packed is None:
        return {name.rpartition(".")[0]: (p.view, p.dims, int(p.k)) for name, _, p in fr_tensors(model)}
    return {e["name"].rpartition(".")[0]: (e["view"], e["dims"], e["k"])
            for e in unpack_meta(packed)["tensors"] if e["kind"] == "fr"}


def _replace(root: nn.Module, name: str, new: nn.Module) -> nn.Module:
    if not name:
        return new
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent), child, new)
    return root


def _plain_layer(module: nn.Module) -> nn.Module:
    """A fresh torch Linear/Conv with `module`'s hyperparameters and its current (dense) weight and bias."""
    cls = next(c for c in type(module).__mro__ if c in (nn.Linear, *_CONVS, *_CONV_TS))
    weight, bias = module.weight.detach(), _copy(module.bias)
    if cls is nn.Linear:
        plain = nn.Linear(module.in_features, module.out_features, bias=bias is not None)
    else:
        kw = dict(stride=module.stride, padding=module.padding, dilation=module.dilation, groups=module.groups,
                  bias=bias is not None, padding_mode=module.padding_mode)
        if cls in _CONV_TS:
            kw["output_padding"] = module.output_padding
        plain = cls(module.in_channels, module.out_channels, module.kernel_size, **kw)
    plain = plain.to(weight.device, weight.dtype)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if bias is not None:
            plain.bias.copy_(bias)
    return plain


def deploy(model: nn.Module, packed=None, sample_input: torch.Tensor | None = None, form: str = "auto",
           min_saving: int = MIN_SAVING) -> nn.Module:
    """A plain copy of `model` for inference, each FR layer factored or dense, whichever is cheaper.

    model: a regularized model (left as it is), or, with `packed` (a file from `frx.pack`), the
    plain architecture the file was packed from; the file's weights are loaded into the copy.
    sample_input: one batch, so the cost model sees each conv's feature-map size (without it a
    conv is costed at one output position). form: "auto" (the cost model: factored when that
    needs at most half the multiply-adds and saves at least `min_saving` per sample), or
    "factored" / "dense" everywhere. The result has the layers' math only: no parametrization.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if packed is not None and any(True for _ in fr_tensors(model)):
        raise ValueError("with packed=..., pass the plain architecture the file was packed from, "
                         "not a regularized model")
    layers = _fr_layers(model, packed)
    if not layers:
        raise ValueError("no regularized weight in the model: pass a regularized model, or packed=<file.frx> "
                         "with its plain architecture")
    # every FR layer of the copy is replaced by a fresh plain or factored one (removing the
    # parametrization in place would also strip it from `model`, which shares its class)
    out = copy.deepcopy(model)
    if packed is not None:
        out.load_state_dict(unpack(packed))
    out.eval()
    costs = _costed(out, sample_input) if sample_input is not None and form == "auto" else {}
    for name, (view, dims, k) in layers.items():
        dense = _plain_layer(out.get_submodule(name))
        factored = factor(dense, view, dims, k) if form != "dense" else None
        if factored is not None and form == "auto":
            pin, pout = costs[name][1:] if name in costs else _unit_positions(dense)
            before, after = _layer_macs(dense, pin, pout), _layer_macs(factored, pin, pout)
            if not (2 * after <= before and before - after >= min_saving):
                factored = None
        out = _replace(out, name, (factored or dense).eval())
    return out


def _unit_positions(module: nn.Module) -> tuple[int, int]:
    """(positions in, out) for one output position, when no sample input shows the real sizes."""
    stride = math.prod(getattr(module, "stride", (1,)))
    if isinstance(module, _CONVS):
        return stride, 1
    if isinstance(module, _CONV_TS):
        return 1, stride
    return 1, 1


def forms(model: nn.Module) -> dict[str, str]:
    """{layer name: "factored" | "dense"} for every linear/conv layer of a deployed model."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (FactoredLinear, FactoredConv)):
            out[name] = "factored"
        elif isinstance(m, (nn.Linear, *_CONVS, *_CONV_TS)) and not any(
                f == "" or name.startswith(f + ".") for f, v in out.items() if v == "factored"):
            out[name] = "dense"  # (the small conv inside a factored one is not a layer of its own)
    return out
