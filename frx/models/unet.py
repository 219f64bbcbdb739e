"""Classic UNet (Ronneberger et al. 2015) with BatchNorm, conv biases and
transposed-conv upsampling; 3 -> 2 classes gives 31,043,586 parameters.

`unet_frereg` is the variant of the FR authors' released Carvana model: convs
without bias and BatchNorm without affine parameters or running statistics (it
always normalises with the batch's own statistics, in eval mode too), 31,024,960
weights.

Any input size works: skip connections are padded when a size is odd.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .registry import ModelSpec, register


class DoubleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None,
                 bias: bool = True, bn_stats: bool = True):
        super().__init__()
        mid = mid_channels or out_channels

        def bn(c):  # bn_stats=False: no affine parameters, always the batch's own statistics
            return nn.BatchNorm2d(c, affine=bn_stats, track_running_stats=bn_stats)

        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, padding=1, bias=bias), bn(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 3, padding=1, bias=bias), bn(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **conv):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, **conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **conv):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2, bias=conv.get("bias", True))
        self.conv = DoubleConv(in_channels, out_channels, **conv)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        if dy or dx:
            x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


@register(ModelSpec("unet", "segmentation", 3, None, 2, min_input_size=16, params=31_043_586,
                   description="classic UNet with BN and transposed-conv upsampling"))
class UNet(nn.Module):
    """bias: conv and transposed-conv biases; bn_stats: BatchNorm affine parameters and running
    statistics (False: batch statistics always, as the FR authors' released model)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base: int = 64,
                 bias: bool = True, bn_stats: bool = True):
        super().__init__()
        b, conv = base, {"bias": bias, "bn_stats": bn_stats}
        self.inc = DoubleConv(in_channels, b, **conv)
        self.down1, self.down2 = Down(b, 2 * b, **conv), Down(2 * b, 4 * b, **conv)
        self.down3, self.down4 = Down(4 * b, 8 * b, **conv), Down(8 * b, 16 * b, **conv)
        self.up1, self.up2 = Up(16 * b, 8 * b, **conv), Up(8 * b, 4 * b, **conv)
        self.up3, self.up4 = Up(4 * b, 2 * b, **conv), Up(2 * b, b, **conv)
        self.outc = nn.Conv2d(b, num_classes, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.down4(x4)
        x = self.up1(x, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


@register(ModelSpec("unet_frereg", "segmentation", 3, None, 2, min_input_size=16, params=31_024_960,
                    description="the FR authors' released UNet: no biases, batch-statistics BN"))
def unet_frereg(**kwargs) -> UNet:
    """The FR authors' released Carvana UNet: no biases, batch-statistics BatchNorm."""
    return UNet(**{"bias": False, "bn_stats": False, **kwargs})
