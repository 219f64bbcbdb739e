"""FID for the MNIST generators, offline.

The Inception network behind the usual FID cannot be downloaded here, so frx
computes the Frechet distance (torchmetrics' `FrechetInceptionDistance`) on the
128-d penultimate features of a small MNIST classifier of its own,
"frx-mnist-cnn". It is trained once per data set on the real training images
(with a fixed seed, independent of the run's seed, so that every run of a table
is scored by the same network) and cached as a file; later runs load it.
Values are therefore not comparable with Inception FIDs (the paper's 244 / 81),
only with each other.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import save as _atomic_save

NAME = "frx-mnist-cnn"
MEAN, STD = 0.1307, 0.3081


class MnistFeatures(nn.Module):
    """conv32-pool-conv64-pool-fc128-fc10 on 28x28 images in [0, 1]; `forward` gives the 128-d features.

    Accepts (N, 784), (N, 1, H, W) or (N, 3, H, W) in [0, 1]; other sizes are resized to 28x28.
    """

    num_features = 128

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, self.num_features)
        self.fc2 = nn.Linear(self.num_features, 10)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.dim() == 2:
            side = int(round(x.shape[1] ** 0.5))
            x = x.reshape(x.shape[0], 1, side, side)
        if x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        if x.shape[-2:] != (28, 28):
            x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
        return (x - MEAN) / STD

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(self.prepare(x))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(torch.flatten(x, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def cache_path(cache_dir: str | os.PathLike, key: dict) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser() / f"{NAME}-{digest}.pt"


def get_extractor(cache_dir: str | os.PathLike, key: dict, train_batches: Callable[[torch.Generator], Iterable],
                  val_batches: Callable[[], Iterable], epochs: int, device: torch.device,
                  log: Callable[[str], None] = print) -> tuple[MnistFeatures, dict]:
    """Load the cached extractor for `key`, or train it (Adam 1e-3, `epochs` epochs, seed 0) and cache it.

    train_batches(generator) / val_batches() yield (images in [0, 1], labels) on `device`.
    Returns (model in eval mode, info) where info names the network, its file and its val top-1.
    """
    path = cache_path(cache_dir, {**key, "epochs": epochs, "net": NAME})
    model = MnistFeatures()
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        top1 = float(state["val_top1"])
    else:
        log(f"training the FID feature extractor {NAME} ({epochs} epochs), cached at {path}")
        rng = torch.get_rng_state()  # leave the run's random stream untouched
        try:
            torch.manual_seed(0)
            gen = torch.Generator().manual_seed(0)
            model.to(device).train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            with torch.enable_grad():  # callers evaluate under no_grad
                for _ in range(epochs):
                    for x, y in train_batches(gen):
                        loss = F.cross_entropy(model.classify(x), y)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
        finally:
            torch.set_rng_state(rng)
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in val_batches():
                correct += int((model.classify(x).argmax(1) == y).sum())
                total += len(y)
        top1 = correct / max(total, 1)
        _atomic_save(path, {"model": {k: v.cpu() for k, v in model.state_dict().items()}, "val_top1": top1,
                            "key": key, "epochs": epochs})
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, {"fid_feature_extractor": NAME, "fid_feature_dim": MnistFeatures.num_features,
                   "fid_extractor_file": str(path), "fid_extractor_val_top1": top1}


@torch.no_grad()
def frechet_distance(extractor: nn.Module, real: Iterable[torch.Tensor], fake: Iterable[torch.Tensor]) -> float:
    """FID between two streams of image batches in [0, 1] on the extractor's features."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=extractor, reset_real_features=True, normalize=True)
    device = next(extractor.parameters()).device
    metric = metric.to(device)
    for x in real:
        metric.update(x.to(device), real=True)
    for x in fake:
        metric.update(x.to(device), real=False)
    return float(metric.compute())
