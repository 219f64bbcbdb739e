"""Image classification: cross-entropy, top-1 accuracy (torchmetrics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from . import Task, register


@register
class Classification(Task):
    name = "classification"
    metric = "top1"
    higher_is_better = True

    def loss(self, model: nn.Module, batch):
        x, y = batch[0], batch[1]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.detach().argmax(1) == y).float().mean()
        return loss, {"acc": float(acc)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split) -> float:
        was_training = model.training
        model.eval()
        acc = None
        try:
            for batch in self.batches(split, int(self.cfg.trainer.eval_batch_size)):
                x, y = batch[0], batch[1]
                with self.autocast():
                    logits = model(x)
                if acc is None:
                    acc = MulticlassAccuracy(num_classes=logits.shape[1], average="micro").to(self.device)
                acc.update(logits.float(), y)
        finally:
            model.train(was_training)
        if acc is None:
            raise ValueError("evaluation split is empty")
        return float(acc.compute())
