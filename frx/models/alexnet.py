"""AlexNet as in torchvision (57,044,810 parameters with 10 classes).

The feature extractor needs inputs of at least 63x63 pixels, so CIFAR-10 is
resized by the data set config (e.g. to 64 or 224).
"""
from typing import Literal, get_args

from torch import nn
from torchvision.models.alexnet import AlexNet as _TorchvisionAlexNet

from .registry import ModelSpec, register

Init = Literal["torchvision", "kaiming"]


@register(ModelSpec("alexnet", "classification", 3, None, 10, min_input_size=63, params=57_044_810,
                   description="torchvision AlexNet"))
class AlexNet(_TorchvisionAlexNet):
    """torchvision's AlexNet (random init, no pretrained weights).

    ``classifier.1`` reads the (N, 256, 6, 6) pooled map flattened in C, H, W order.
    """

    fr_views = {"classifier.1.weight": (4096, 256, 6, 6)}

    def __init__(self, num_classes: int = 10, dropout: float = 0.5, init: Init = "torchvision"):
        super().__init__(num_classes=num_classes, dropout=dropout)
        if init not in get_args(Init):
            raise ValueError(f"init must be one of {', '.join(get_args(Init))}, got {init!r}")
        if init == "kaiming":
            # torchvision's default init shrinks the signal's variance ~6x per layer (no normalization layers
            # here), which stalls the first epochs; He's init keeps it through the ReLUs
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
