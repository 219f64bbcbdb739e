"""CIFAR VGG networks in the common style: 3x3 conv + BatchNorm + ReLU blocks,
five max-pools, one Linear(512, num_classes). Inputs are 32x32.

The paper's "VGG16" (20,040,522 parameters, and its per-layer table) is the
19-layer configuration; the true 16-layer one is offered as well.
"""
import torch
from torch import nn

from .registry import ModelSpec, register

CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, config: str = "vgg19", in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if config not in CONFIGS:
            raise ValueError(f"unknown VGG config {config!r}; known: {sorted(CONFIGS)}")
        self.config = config
        layers: list[nn.Module] = []
        c = in_channels
        for v in CONFIGS[config]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register(ModelSpec("vgg16", "classification", 3, (32, 32), 10, arch="vgg19-config", params=20_040_522,
                    description="the paper's 'VGG16': CIFAR VGG with the 19-layer configuration"))
def vgg16(**kwargs) -> VGG:
    return VGG(**{"config": "vgg19", **kwargs})


@register(ModelSpec("vgg16_true", "classification", 3, (32, 32), 10, arch="vgg16-config", params=14_728_266,
                    description="CIFAR VGG with the true 16-layer configuration"))
def vgg16_true(**kwargs) -> VGG:
    return VGG(**{"config": "vgg16", **kwargs})
