"""DCGAN (Radford et al. 2016) for 1-channel 64x64 images, nz=100, 64 base
filters: 3,574,656 (generator) + 2,763,520 (discriminator) = 6,338,176 parameters.
"""
import torch
from torch import nn

from .registry import ModelSpec, register


def dcgan_init_(module: nn.Module) -> None:
    """The DCGAN initialisation: conv weights ~ N(0, 0.02), BN weights ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (N, nz) or (N, nz, 1, 1) -> images (N, nc, 64, 64) in [-1, 1] (tanh)."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 1):
        super().__init__()
        self.nz = nz
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], self.nz, 1, 1))


class Discriminator(nn.Module):
    """images (N, nc, 64, 64) -> real/fake logits (N,) (no sigmoid: use BCE with logits)."""

    def __init__(self, ndf: int = 64, nc: int = 1):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


@register(ModelSpec("gan", "gan", 1, (64, 64), None, normalize="symmetric", params=6_338_176,
                   description="DCGAN, nz=100, 64 base filters"))
class GAN(nn.Module):
    """Holds ``generator`` and ``discriminator``; ``forward(z)`` generates images."""

    def __init__(self, nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 1):
        super().__init__()
        self.nz = nz
        self.generator = Generator(nz, ngf, nc)
        self.discriminator = Discriminator(ndf, nc)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)
