"""Semantic segmentation as in the paper's UNet (the Pytorch-UNet recipe): loss =
cross-entropy + soft Dice loss over all classes; score = Dice of the foreground
classes per image, averaged over images (torchmetrics DiceScore)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import Task, register


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - soft Dice of softmax(logits) against the one-hot target, mean over images and classes."""
    probs = logits.float().softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (2, 3)
    inter = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * inter + eps) / (total + eps)).mean()


@register
class Segmentation(Task):
    name = "segmentation"
    data_task = "segmentation"
    metric = "dice"
    higher_is_better = True

    def loss(self, model: nn.Module, batch):
        x, y = batch[0], batch[1].long()
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        dl = dice_loss(logits, y)
        return ce + dl, {"ce": float(ce.detach()), "dice_loss": float(dl.detach())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split) -> float:
        was_training = model.training
        model.eval()
        score = None
        try:
            for batch in self.batches(split, int(self.cfg.trainer.eval_batch_size)):
                x, y = batch[0], batch[1].long()
                with self.autocast():
                    logits = model(x)
                if score is None:
                    from torchmetrics.segmentation import DiceScore  # imported here: it costs seconds at start-up
                    score = DiceScore(num_classes=logits.shape[1], include_background=False, average="macro",
                                      aggregation_level="samplewise", input_format="index").to(self.device)
                score.update(logits.argmax(1), y)
        finally:
            model.train(was_training)
        if score is None:
            raise ValueError("evaluation split is empty")
        return float(score.compute())

    @torch.no_grad()
    def save_samples(self, model: nn.Module, path) -> list:
        """Images, true masks and predicted masks of the first validation images, one row each."""
        from torchvision.utils import save_image

        was_training = model.training
        model.eval()
        try:
            x, y = next(iter(self.batches(self.splits.val, 4)))[:2]
            logits = model(x)
        finally:
            model.train(was_training)
        top = max(1, logits.shape[1] - 1)  # class index -> gray level

        def gray(t):
            return (t.float() / top).unsqueeze(1).repeat(1, 3, 1, 1)

        lo, hi = x.float().amin((1, 2, 3), keepdim=True), x.float().amax((1, 2, 3), keepdim=True)
        img = (x.float() - lo) / (hi - lo + 1e-8)
        img = img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img[:, :3]
        grid = torch.cat([img, gray(y.long()), gray(logits.argmax(1))], 0)  # rows: image, truth, prediction
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_image(grid.cpu(), str(path), nrow=x.shape[0])
        return [Path(path)]
