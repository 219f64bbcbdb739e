"""DCGAN training (Radford et al.): alternating discriminator and generator steps with
binary cross-entropy, one Adam per network; scored by FID (see `fid`).

The model holds `.generator` (z -> images in [-1, 1]) and `.discriminator` (images -> logits).
FR, when on, regularizes both (the paper counts G + D)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..optim import make_optimizer
from . import register
from .generative import Generative


def generate_images(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The generator's images mapped from [-1, 1] to [0, 1]."""
    return (model.generator(z).float() + 1) / 2


@register
class GANTask(Generative):
    name = "gan"

    def latent_dim(self, model: nn.Module) -> int:
        return int(model.nz)

    def generate(self, model: nn.Module, z: torch.Tensor) -> torch.Tensor:
        return generate_images(model, z)

    def optimizers(self, model: nn.Module) -> list[torch.optim.Optimizer]:
        o = self.cfg.trainer.optimizer
        return [make_optimizer(model.discriminator.parameters(), o),
                make_optimizer(model.generator.parameters(), o, lr=o.generator_lr)]

    def train_step(self, model: nn.Module, batch, optimizers) -> dict:
        opt_d, opt_g = optimizers
        real = batch[0]
        if real.dim() == 3:
            real = real.unsqueeze(1)
        n = real.shape[0]
        z = torch.randn(n, model.nz, device=self.device)
        ones = torch.ones(n, device=self.device)
        zeros = torch.zeros(n, device=self.device)
        with self.autocast():
            fake = model.generator(z)
            d_real = model.discriminator(real).float()
            d_fake = model.discriminator(fake.detach()).float()
            loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + \
                F.binary_cross_entropy_with_logits(d_fake, zeros)
        self.backward_step(loss_d, opt_d)
        with self.autocast():
            loss_g = F.binary_cross_entropy_with_logits(model.discriminator(fake).float(), ones)
        self.backward_step(loss_g, opt_g)
        ld, lg = loss_d.detach(), loss_g.detach()  # read back only when a log line needs them (trainer.log_every)
        return {"loss": ld + lg, "loss_d": ld, "loss_g": lg}
