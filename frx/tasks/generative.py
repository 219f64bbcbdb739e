"""Shared parts of the generative tasks (gan, vae): FID on fixed noise, sample grids."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from . import Task
from . import fid as _fid

log = logging.getLogger("frx.train")

NOISE_SEED = 1234  # the same latent vectors score every model, live or unpacked


class Generative(Task):
    metric = "fid"
    higher_is_better = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.symmetric = self.cfg.dataset.normalize == "symmetric"  # data in [-1, 1] instead of [0, 1]
        self.fid_samples = int(self.cfg.scale.fid_samples)
        self.extractor = None
        self.extra: dict = {}

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Data images -> [0, 1]."""
        return (x.float() + 1) / 2 if self.symmetric else x.float()

    def latent_dim(self, model: nn.Module) -> int:
        raise NotImplementedError

    def generate(self, model: nn.Module, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (N, C, H, W), from latent vectors z."""
        raise NotImplementedError

    def noise(self, model: nn.Module, n: int, offset: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(NOISE_SEED + offset)
        return torch.randn(n, self.latent_dim(model), generator=g).to(self.device)

    def _extractor(self):
        if self.extractor is None:
            self.extractor, self.extra = _fid.for_run(self.cfg, self.device, log=log.info, splits=self.splits)
            self.extra["fid_samples"] = self.fid_samples
        return self.extractor

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split) -> float:
        extractor = self._extractor()
        n = self.fid_samples
        bs = int(self.cfg.trainer.eval_batch_size)
        was_training = model.training
        model.eval()
        try:
            def real():
                seen = 0
                for b in self.batches(split, bs):
                    x = self.to_unit(b[0])[: n - seen]
                    seen += len(x)
                    yield x
                    if seen >= n:
                        break

            def fake():
                z = self.noise(model, n)
                for i in range(0, n, bs):
                    with self.autocast():
                        images = self.generate(model, z[i:i + bs]).float()
                    yield images  # outside autocast: the FID network and the statistics stay float32

            return _fid.frechet_distance(extractor, real(), fake())
        finally:
            model.train(was_training)

    def metric_extra(self) -> dict:
        return dict(self.extra)

    @torch.no_grad()
    def save_samples(self, model: nn.Module, path) -> list:
        from torchvision.utils import save_image

        was_training = model.training
        model.eval()
        try:
            images = self.generate(model, self.noise(model, 64, offset=1)).float().cpu()
        finally:
            model.train(was_training)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_image(images.clamp(0, 1), str(path), nrow=8, padding=2)
        return [Path(path)]
