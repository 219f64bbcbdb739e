"""Model registry: ``build(name, **kwargs)``, ``names()``, ``spec(name)``,
``build_from_config(model_cfg)``.

A model config (conf/model/<name>.yaml) holds ``name``, the metadata below and
``kwargs`` passed to the builder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .alexnet import AlexNet
from .gan import GAN
from .lenet import LeNet300, LeNet5
from .resnet import resnet18
from .smp_unet import smp_unet
from .unet import UNet
from .vae import VAE
from .vgg import VGG


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects. ``input_size`` is (H, W), or None when any size
    works (then ``min_input_size`` and ``size_multiple`` may bound it). ``normalize`` is the input
    scaling the model needs ("unit" [0, 1], "symmetric" [-1, 1]) or None for any.
    ``num_classes`` is None for generative models."""

    name: str
    task: str  # "classification" | "segmentation" | "gan" | "vae"
    in_channels: int
    input_size: tuple[int, int] | None
    num_classes: int | None
    min_input_size: int | None = None
    normalize: str | None = None
    size_multiple: int | None = None  # height and width must be multiples of this
    description: str = ""


_REGISTRY: dict[str, tuple[Callable[..., nn.Module], ModelSpec]] = {}


def register(spec: ModelSpec, builder: Callable[..., nn.Module]) -> None:
    _REGISTRY[spec.name] = (builder, spec)


register(ModelSpec("lenet300", "classification", 1, (28, 28), 10,
                   description="MLP 784-300-100-10"), LeNet300)
register(ModelSpec("lenet5", "classification", 1, (28, 28), 10,
                   description="Caffe LeNet-5 (conv 20, conv 50, fc 800-500-10)"), LeNet5)
register(ModelSpec("alexnet", "classification", 3, None, 10, min_input_size=63,
                   description="torchvision AlexNet"), AlexNet)
register(ModelSpec("vgg16", "classification", 3, (32, 32), 10,
                   description="the paper's 'VGG16': CIFAR VGG with the 19-layer configuration"),
         lambda **kw: VGG(**{"config": "vgg19", **kw}))
register(ModelSpec("vgg16_true", "classification", 3, (32, 32), 10,
                   description="CIFAR VGG with the true 16-layer configuration"),
         lambda **kw: VGG(**{"config": "vgg16", **kw}))
register(ModelSpec("resnet18", "classification", 3, (32, 32), 10,
                   description="CIFAR ResNet-18"), resnet18)
register(ModelSpec("unet", "segmentation", 3, None, 2, min_input_size=16,
                   description="classic UNet with BN and transposed-conv upsampling"), UNet)
register(ModelSpec("unet_frereg", "segmentation", 3, None, 2, min_input_size=16, description="the FR authors' released UNet: no biases, batch-statistics BN"), UNet.frereg)
register(ModelSpec("smp_unet", "segmentation", 3, None, 2, min_input_size=32, size_multiple=32,
                   description="segmentation-models-pytorch Unet (random init); "
                               "height and width must be multiples of 32"), smp_unet)
register(ModelSpec("gan", "gan", 1, (64, 64), None, normalize="symmetric",
                   description="DCGAN, nz=100, 64 base filters"), GAN)
register(ModelSpec("vae", "vae", 1, (28, 28), None, normalize="unit",
                   description="fully connected VAE 784-400-400-20"), VAE)


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


def build_from_config(model_cfg: Any) -> nn.Module:
    """Build from a model config node (DictConfig or dict) with ``name`` and optional ``kwargs``."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(model_cfg) if isinstance(model_cfg, dict) else model_cfg
    kwargs = cfg.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        kwargs = OmegaConf.to_container(kwargs, resolve=True)
    return build(cfg.name, **kwargs)


__all__ = ["ModelSpec", "build", "build_from_config", "names", "spec", "register",
           "AlexNet", "GAN", "LeNet300", "LeNet5", "UNet", "VAE", "VGG", "resnet18", "smp_unet"]
