"""FID for the MNIST generators, offline: the feature network, its cache and the Frechet distance.

The Inception network behind the usual FID cannot be downloaded here, so frx
computes the Frechet distance (torchmetrics' `FrechetInceptionDistance`) on the
penultimate features of a small MNIST classifier of its own, "frx-mnist-cnn". It
is trained once per data set on the real training images (with a fixed seed,
independent of the run's seed, so that every run of a table is scored by the same
network) and cached as a file; later runs load it. Values are therefore not
comparable with Inception FIDs (the paper's 244 / 81), only with each other.

`frx.fid_checks` (the `frx-fid` command) shows that these features make a sensible FID
on MNIST and rescores the generators of finished runs.
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

from ..files import atomic_write

NAME = "frx-mnist-cnn"
MEAN, STD = 0.1307, 0.3081


class MnistFeatures(nn.Module):
    """conv(w)-pool-conv(2w)-pool-fc(num_features)-fc10 on 28x28 images in [0, 1]; `forward` gives
    the features. The FID network is w=32, 128 features.

    Accepts (N, 784), (N, 1, H, W) or (N, 3, H, W) in [0, 1]; other sizes are resized to 28x28.
    """

    def __init__(self, width: int = 32, num_features: int = 128):
        super().__init__()
        self.num_features = num_features
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 7 * 7, num_features)
        self.fc2 = nn.Linear(num_features, 10)

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


def train_extractor(train_batches: Callable[[torch.Generator], Iterable], epochs: int, device: torch.device,
                    seed: int = 0, width: int = 32, num_features: int = 128) -> MnistFeatures:
    """A new MnistFeatures trained as a classifier (Adam 1e-3, `epochs` epochs) from `seed`, on one CPU
    thread whatever the machine has (the same network everywhere on the CPU).

    train_batches(generator) yields (images in [0, 1], labels) on `device`. The caller's
    random stream is left untouched."""
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    if device.type == "cpu":  # one thread: another thread count sums in another order and trains another network
        torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = MnistFeatures(width, num_features).to(device).train()
        gen = torch.Generator().manual_seed(seed)
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
        torch.set_num_threads(threads)
    return model.eval()


@torch.no_grad()
def top1(model: MnistFeatures, val_batches: Iterable) -> float:
    correct = total = 0
    for x, y in val_batches:
        correct += int((model.classify(x).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def get_extractor(cache_dir: str | os.PathLike, key: dict, train_batches: Callable[[torch.Generator], Iterable],
                  val_batches: Callable[[], Iterable], epochs: int, device: torch.device,
                  log: Callable[[str], None] = print, seed: int = 0, width: int = 32,
                  num_features: int = 128) -> tuple[MnistFeatures, dict]:
    """Load the cached extractor for `key`, or train it (`train_extractor`) and cache it.

    train_batches(generator) / val_batches() yield (images in [0, 1], labels) on `device`.
    Returns (model in eval mode, info) where info names the network, its file and its val top-1.
    """
    arch = {} if (seed, width, num_features) == (0, 32, 128) else \
        {"seed": seed, "width": width, "num_features": num_features}  # the FID network keeps its old file name
    path = cache_path(cache_dir, {**key, "epochs": epochs, "net": NAME, **arch})
    model = MnistFeatures(width, num_features)
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        acc = float(state["val_top1"])
    else:
        log(f"training the FID feature extractor {NAME} ({epochs} epochs), cached at {path}")
        model = train_extractor(train_batches, epochs, device, seed, width, num_features)
        acc = top1(model, val_batches())
        state = {"model": {k: v.cpu() for k, v in model.state_dict().items()}, "val_top1": acc,
                 "key": key, "epochs": epochs}
        atomic_write(path, lambda f: torch.save(state, f))
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, {"fid_feature_extractor": NAME, "fid_feature_dim": model.num_features,
                   "fid_extractor_file": str(path), "fid_extractor_val_top1": acc}


def native(dataset_cfg: dict) -> dict:
    """A run's data set at MNIST's own 28x28 in [0, 1]: what the extractor is trained on, whatever
    size and scaling the run uses (the DCGAN's 64x64 in [-1, 1], the VAE's 28x28 in [0, 1])."""
    return {**dataset_cfg, "name": None, "resize": [28, 28], "input_size": [28, 28], "normalize": "unit"}


def for_dataset(dataset_cfg: dict, cache_dir, epochs: int, device: torch.device,
                log: Callable[[str], None] = print, splits=None, **arch) -> tuple[MnistFeatures, dict]:
    """`get_extractor` for a run's data set (resolved config dict), trained on `native(dataset_cfg)`,
    which is also the cache key: every run on the same images is scored by the same network, GAN and
    VAE alike. splits: the native splits when already loaded. arch: seed, width, num_features."""
    from .. import data

    cfg = native(dataset_cfg)
    if splits is None:
        splits = data.load(cfg)
    # the images, not where they lie: the same images give the same network in any data root
    key = {"dataset": {k: v for k, v in cfg.items() if k != "root"}, "n_train": len(splits.train)}

    def train_batches(gen):
        for b in data.batches(splits.train, batch_size=128, shuffle=True, generator=gen, device=device):
            yield b[0], b[1]

    def val_batches():
        for b in data.batches(splits.val, batch_size=500, shuffle=False, generator=None, device=device):
            yield b[0], b[1]

    return get_extractor(cache_dir, key, train_batches, val_batches, epochs, device, log=log, **arch)


def for_run(cfg, device: torch.device, log: Callable[[str], None] = print, splits=None) -> tuple[MnistFeatures, dict]:
    """`for_dataset` for a run's (validated) config: its data set, run.cache_dir and
    scale.fid_extractor_epochs. splits: the run's splits, used when they are the native images."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg.dataset, resolve=True)
    epochs = int(cfg.scale.get("fid_extractor_epochs", 3))
    same = data.get("resize") == [28, 28] and data.get("normalize") == "unit"  # the run's data is the native one
    return for_dataset(data, cfg.run.cache_dir, epochs, device, log=log, splits=splits if same else None)


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
