"""The model registry: each model's file registers its builder with `@register(ModelSpec(...))`,
the metadata beside the builder. Config files (frx/conf/model/<name>.yaml) hold only the name and
the builder's arguments; compatibility checks and tests read the spec."""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from omegaconf import DictConfig, OmegaConf
from torch import nn

from .. import registry


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects. ``input_size`` is (H, W), or None when any size works (then
    ``min_input_size`` and ``size_multiple`` may bound it). ``normalize`` is the input scaling the
    model needs ("unit" [0, 1], "symmetric" [-1, 1]) or None for any. ``num_classes`` is None for
    generative models. ``params`` is the parameter count of the default build (the paper's count
    where it has one), of the ``.weight`` tensors only when ``params_weights_only``."""

    name: str
    task: str  # "classification" | "segmentation" | "gan" | "vae"
    in_channels: int
    input_size: tuple[int, int] | None
    num_classes: int | None
    min_input_size: int | None = None
    normalize: str | None = None
    size_multiple: int | None = None  # height and width must be multiples of this
    arch: str | None = None  # the architecture, when the name does not say it (shown in the tables)
    params: int | None = None
    params_weights_only: bool = False
    description: str = ""

    def with_args(self, kwargs: Mapping[str, Any]) -> "ModelSpec":
        """The spec of a build with these builder arguments (in_channels, num_classes override)."""
        return dataclasses.replace(self, **{k: kwargs[k] for k in ("in_channels", "num_classes") if k in kwargs})


_REGISTRY: dict[str, tuple[Callable[..., nn.Module], ModelSpec]] = {}


def register(spec: ModelSpec) -> Callable:
    """Class or function decorator: ``@register(ModelSpec("lenet5", ...))`` above the builder."""
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        registry.add(_REGISTRY, spec.name, (builder, spec), "model")
        return builder

    return add


def names() -> list[str]:
    return sorted(_REGISTRY)


def _entry(name: str):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}")
    return _REGISTRY[name]


def spec(name: str) -> ModelSpec:
    return _entry(name)[1]


def build(name: str, **kwargs: Any) -> nn.Module:
    return _entry(name)[0](**kwargs)


def _kwargs(model_cfg: Any) -> dict:
    kwargs = model_cfg.get("kwargs") or {}
    return OmegaConf.to_container(kwargs, resolve=True) if isinstance(kwargs, DictConfig) else dict(kwargs)


def check_config(model_cfg: Any) -> None:
    """ValueError unless a model config names a registered model and its builder takes the kwargs."""
    unknown = sorted(set(model_cfg) - {"name", "kwargs"})
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join('model.' + k for k in unknown)} "
                         f"(a model config has name and kwargs)")
    builder = _entry(model_cfg.get("name"))[0]
    kwargs = _kwargs(model_cfg)
    try:
        inspect.signature(builder).bind(**kwargs)
    except TypeError as e:
        raise ValueError(f"model.kwargs do not fit model {model_cfg.get('name')}: {e}") from None
    hints = typing.get_type_hints(builder.__init__ if inspect.isclass(builder) else builder)
    for key, value in kwargs.items():  # a builder's Literal arguments name their choices
        if typing.get_origin(hints.get(key)) is typing.Literal and value not in typing.get_args(hints[key]):
            raise ValueError(f"model.kwargs.{key} must be one of {', '.join(map(str, typing.get_args(hints[key])))}; "
                             f"got {value!r}")


def build_from_config(model_cfg: Any) -> nn.Module:
    """Build from a model config node (DictConfig or dict) with ``name`` and optional ``kwargs``."""
    return build(model_cfg["name"], **_kwargs(model_cfg))


def spec_from_config(model_cfg: Any) -> ModelSpec:
    """The spec of the model a config builds (its arguments applied)."""
    return spec(model_cfg["name"]).with_args(_kwargs(model_cfg))
