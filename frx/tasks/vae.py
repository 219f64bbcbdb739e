"""Variational autoencoder (Kingma & Welling; the PyTorch example): loss = binary
cross-entropy of the reconstruction (summed over pixels) + KL divergence, per image;
scored by FID of decoded N(0, I) samples (see `fid`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .generative import Generative


def generate_images(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Decoded images in [0, 1], (N, 1, 28, 28), from latent vectors z."""
    side = int(round(model.in_features ** 0.5))
    return torch.sigmoid(model.decode(z).float()).reshape(z.shape[0], 1, side, side)


@register
class VAETask(Generative):
    name = "vae"

    def latent_dim(self, model: nn.Module) -> int:
        return int(model.latent_dim)

    def generate(self, model: nn.Module, z: torch.Tensor) -> torch.Tensor:
        return generate_images(model, z)

    def loss(self, model: nn.Module, batch):
        x = self.to_unit(batch[0]).flatten(1)
        logits, mu, logvar = model(batch[0])
        bce = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="sum") / x.shape[0]
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / x.shape[0]
        return bce + kld, {"bce": float(bce.detach()), "kld": float(kld.detach())}
