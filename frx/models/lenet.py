"""LeNet-300-100 and the Caffe LeNet-5 used in the paper's Table 1."""
import torch
import torch.nn.functional as F
from torch import nn

from .registry import ModelSpec, register


@register(ModelSpec("lenet300", "classification", 1, (28, 28), 10, params=266_610,
                   description="MLP 784-300-100-10"))
class LeNet300(nn.Module):
    """MLP 784-300-100-10 (266,610 parameters). Accepts (N, 1, 28, 28) or (N, 784)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


@register(ModelSpec("lenet5", "classification", 1, (28, 28), 10, params=431_080,
                   description="Caffe LeNet-5 (conv 20, conv 50, fc 800-500-10)"))
class LeNet5(nn.Module):
    """Caffe LeNet-5: conv 20@5x5, max-pool, conv 50@5x5, max-pool, fc 800-500, 500-10
    (431,080 parameters for 1x28x28 inputs). ReLU follows each conv and fc1.

    ``fc1`` reads the (N, 50, 4, 4) map flattened in C, H, W order, so its weight
    can be viewed as (500, 50, 4, 4) (``fr_views``).
    """

    fr_views = {"fc1.weight": (500, 50, 4, 4)}

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)
