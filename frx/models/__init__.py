"""Models: ``build(name, **kwargs)``, ``names()``, ``spec(name)``, ``build_from_config(model_cfg)``.

A new model is one file in this package, its builder registered with its metadata::

    @register(ModelSpec("mynet", "classification", in_channels=3, input_size=(32, 32), num_classes=10))
    class MyNet(nn.Module): ...

and one config, ``frx/conf/model/mynet.yaml``: ``name: mynet`` and the builder's ``kwargs``.
Every module of the package is imported here, so nothing else needs to list it.
"""
from __future__ import annotations

import importlib
import pkgutil

from .registry import ModelSpec, build, build_from_config, check_config, names, register, spec, spec_from_config

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from .alexnet import AlexNet  # noqa: E402  (re-exported)
from .gan import GAN  # noqa: E402
from .lenet import LeNet5, LeNet300  # noqa: E402
from .resnet import resnet18  # noqa: E402
from .smp_unet import smp_unet  # noqa: E402
from .unet import UNet  # noqa: E402
from .vae import VAE  # noqa: E402
from .vgg import VGG  # noqa: E402

__all__ = ["ModelSpec", "build", "build_from_config", "check_config", "names", "spec", "spec_from_config", "register",
           "AlexNet", "GAN", "LeNet300", "LeNet5", "UNet", "VAE", "VGG", "resnet18", "smp_unet"]
