"""The fully connected VAE of the PyTorch examples (Kingma & Welling 2014):
encoder 784-400-400 with two 400->20 heads (mu, logvar), decoder 20-400-400-784.

Its weights (tensors named ``*.weight``) count 971,200, the number the paper
reports; with the 2,424 biases it has 973,624 parameters.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .registry import ModelSpec, register


@register(ModelSpec("vae", "vae", 1, (28, 28), None, normalize="unit", params=971_200, params_weights_only=True,
                   description="fully connected VAE 784-400-400-20"))
class VAE(nn.Module):
    """``forward(x)`` takes (N, 1, 28, 28) or (N, 784) images in [0, 1] and returns
    ``(recon_logits (N, 784), mu (N, 20), logvar (N, 20))``; use
    ``binary_cross_entropy_with_logits`` for the reconstruction term.
    ``decode(z)`` returns logits too; ``torch.sigmoid`` of them are the images.
    In eval mode the latent code is ``mu`` (no sampling)."""

    def __init__(self, in_features: int = 784, hidden: int = 400, latent_dim: int = 20):
        super().__init__()
        self.in_features, self.latent_dim = in_features, latent_dim
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden)
        self.fc4 = nn.Linear(hidden, hidden)
        self.fc5 = nn.Linear(hidden, in_features)
        side = round(in_features ** 0.5)
        if side * side == in_features:  # the decoder's last layer writes the image: its rows are a square map
            self.fr_views = {"fc5.weight": (side, side, hidden)}  # read with fr.linear_view=auto only

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc2(F.relu(self.fc1(torch.flatten(x, 1)))))
        return self.fc_mu(h), self.fc_logvar(h)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc5(F.relu(self.fc4(F.relu(self.fc3(z)))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar
