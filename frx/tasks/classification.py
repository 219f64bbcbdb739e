"""Image classification: cross-entropy (optionally label-smoothed), top-1 accuracy.

Speed options (all off by default): ``dataset.augment`` (random crop + flip on whole
batches, on the data's device), ``trainer.channels_last`` (NHWC inputs for the GPU's
convolution kernels) and ``trainer.label_smoothing``. Nothing here reads a number back
from the device during training; evaluation reads one count per split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import Task, register


@register
class Classification(Task):
    name = "classification"
    metric = "top1"
    higher_is_better = True

    def __init__(self, cfg, splits, device, batches):
        super().__init__(cfg, splits, device, batches)
        self.label_smoothing = float(cfg.trainer.label_smoothing)
        self.channels_last = bool(cfg.trainer.channels_last)
        self.augment = None
        aug = cfg.dataset.get("augment")
        if aug:
            from ..data.common import CropFlip

            where = getattr(splits.train, "device", self.device)
            gen = torch.Generator(device=where).manual_seed(int(cfg.seed) + 1)
            self.augment = CropFlip(gen, padding=int(aug.get("crop_padding", 0)), flip=bool(aug.get("flip", False)))

    def batches(self, split, batch_size, shuffle=False, generator=None, shard=None):
        # the training split's shuffled batches are augmented; evaluation never is
        if self.augment is not None and shuffle and split is self.splits.train:
            return self._batches(split, batch_size=batch_size, shuffle=shuffle, generator=generator,
                                 device=self.device, augment=self.augment, shard=shard)
        return super().batches(split, batch_size, shuffle, generator, shard)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def loss(self, model: nn.Module, batch):
        x, y = batch[0], batch[1]
        logits = model(self._input(x))
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(1) == y).float().mean()
        return loss, {"acc": acc}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split) -> float:
        was_training = model.training
        model.eval()
        correct, n = None, 0
        try:
            for batch in self.batches(split, int(self.cfg.trainer.eval_batch_size)):
                x, y = batch[0], batch[1]
                with self.autocast():
                    logits = model(self._input(x))
                hits = (logits.argmax(1) == y).sum()
                correct = hits if correct is None else correct + hits
                n += len(y)
        finally:
            model.train(was_training)
        if correct is None:
            raise ValueError("evaluation split is empty")
        return int(correct) / n

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.augment is not None:
            state["augment_rng"] = self.augment.generator.get_state()
        return state

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        if self.augment is not None and state.get("augment_rng") is not None:
            self.augment.generator.set_state(state["augment_rng"])
