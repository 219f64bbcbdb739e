"""AlexNet as in torchvision (57,044,810 parameters with 10 classes).

The feature extractor needs inputs of at least 63x63 pixels, so CIFAR-10 is
resized by the data set config (e.g. to 64 or 224).
"""
from torchvision.models.alexnet import AlexNet as _TorchvisionAlexNet

from .registry import ModelSpec, register


@register(ModelSpec("alexnet", "classification", 3, None, 10, min_input_size=63, params=57_044_810,
                   description="torchvision AlexNet"))
class AlexNet(_TorchvisionAlexNet):
    """torchvision's AlexNet (random init, no pretrained weights).

    ``classifier.1`` reads the (N, 256, 6, 6) pooled map flattened in C, H, W order.
    """

    fr_views = {"classifier.1.weight": (4096, 256, 6, 6)}

    def __init__(self, num_classes: int = 10, dropout: float = 0.5):
        super().__init__(num_classes=num_classes, dropout=dropout)
