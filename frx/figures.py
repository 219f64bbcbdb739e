"""PNG figures (matplotlib, Agg canvas; never touches the global pyplot backend).

- `metric_vs_kept(points, path, ...)`: metric against kept weights (log x), one series per
  method; `frx-report` draws one per table from the run records.

For looking at models by hand (the tasks write their own `samples.png` with torchvision's
`save_image`; these are not used by training or the report):

- `save_image_grid(images, path)`: a grid of image samples, e.g. a GAN's or VAE's outputs.
- `save_sample_comparison({"reference": a, "FR": b}, path)`: sample grids side by side.
- `save_segmentation_overlay(images, pred, path, target=None)`: predicted (and true) masks over images.

Image functions take tensors (N, C, H, W) or (N, H, W), any value range (each grid is
min-max scaled unless `value_range` is given), on any device.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .files import atomic_write_bytes


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def metric_vs_kept(points: pd.DataFrame, path: str | Path, title: str = "", ylabel: str = "metric",
                   paper: Sequence[tuple] | None = None, lower_is_better: bool = False) -> Path:
    """points: one row per run with columns series, kept, metric and optionally row (the seeds of
    one row are drawn as mean ± std; without a row column, runs at the same kept count are).
    paper: optional published (kept, metric[, label]) points, drawn hollow."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    key = "row" if "row" in points else "kept"
    for series, grp in points.groupby("series", sort=True):
        agg = grp.groupby(key).agg(kept=("kept", "mean"), mean=("metric", "mean"), std=("metric", "std"))
        agg = agg.sort_values("kept")
        ax.errorbar(agg["kept"], agg["mean"], yerr=agg["std"].fillna(0.0), marker="o", capsize=3, label=series)
    if paper:
        xs, ys = [p[0] for p in paper], [p[1] for p in paper]
        ax.scatter(xs, ys, facecolors="none", edgecolors="black", marker="s", label="FR (paper, published)")
        for p in paper:
            if len(p) > 2:
                ax.annotate(str(p[2]), (p[0], p[1]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("kept weights (log scale)")
    ax.set_ylabel(ylabel + (" (lower is better)" if lower_is_better else ""))
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _save(fig, path)


def _to_numpy_images(images: torch.Tensor, value_range: tuple[float, float] | None) -> np.ndarray:
    x = images.detach().float().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W), got shape {tuple(images.shape)}")
    lo, hi = value_range if value_range is not None else (float(x.min()), float(x.max()))
    x = ((x - lo) / (hi - lo if hi > lo else 1.0)).clamp(0, 1)
    if x.shape[1] not in (1, 3):
        x = x[:, :1]
    return x.permute(0, 2, 3, 1).numpy()  # N, H, W, C


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2,
               value_range: tuple[float, float] | None = None) -> np.ndarray:
    """(H', W', C) array in [0, 1] tiling the images row by row, `nrow` per row."""
    x = _to_numpy_images(images, value_range)
    n, h, w, c = x.shape
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = np.ones((rows * (h + pad) + pad, ncol * (w + pad) + pad, c), dtype=np.float32)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    return grid


def _show(ax, grid: np.ndarray, title: str | None) -> None:
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray" if grid.shape[-1] == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, title: str | None = None,
                    value_range: tuple[float, float] | None = None) -> Path:
    """Save a grid of samples, e.g. `save_image_grid(generator(z), "results/figures/gan_fr.png")`."""
    grid = image_grid(images, nrow, value_range=value_range)
    fig = Figure(figsize=(max(2.0, grid.shape[1] / 40), max(2.0, grid.shape[0] / 40)))
    _show(fig.add_subplot(), grid, title)
    return _save(fig, path)


def save_sample_comparison(samples: Mapping[str, torch.Tensor], path: str | Path, nrow: int = 8,
                           value_range: tuple[float, float] | None = None) -> Path:
    """Grids side by side, one per entry, e.g. {"reference": ref_samples, "FR": fr_samples}."""
    grids = [(name, image_grid(x, nrow, value_range=value_range)) for name, x in samples.items()]
    if not grids:
        raise ValueError("no samples given")
    h, w = grids[0][1].shape[:2]
    fig = Figure(figsize=(len(grids) * max(2.0, w / 40), max(2.0, h / 40) + 0.4))
    for i, (name, grid) in enumerate(grids):
        _show(fig.add_subplot(1, len(grids), i + 1), grid, name)
    return _save(fig, path)


def save_segmentation_overlay(images: torch.Tensor, pred: torch.Tensor, path: str | Path,
                              target: torch.Tensor | None = None, alpha: float = 0.45, max_images: int = 4) -> Path:
    """Images with the predicted mask in red (and the true mask in a second row, green).
    pred / target: (N, H, W) class indices or probabilities, or (N, K, H, W) logits (argmax taken)."""
    def masks(m: torch.Tensor) -> np.ndarray:
        m = m.detach().float().cpu()
        if m.dim() == 4:
            m = m.argmax(1) if m.shape[1] > 1 else (m[:, 0] > 0.5)
        return (m > 0.5).numpy() if m.dtype != torch.bool else m.numpy()

    imgs = _to_numpy_images(images[:max_images], None)
    rows = [("prediction", masks(pred[:max_images]), (1.0, 0.0, 0.0))]
    if target is not None:
        rows.append(("ground truth", masks(target[:max_images]), (0.0, 0.8, 0.0)))
    n = imgs.shape[0]
    fig = Figure(figsize=(3.0 * n, 3.0 * len(rows)))
    for r, (name, m, color) in enumerate(rows):
        for i in range(n):
            base = np.repeat(imgs[i], 3, axis=-1) if imgs.shape[-1] == 1 else imgs[i]
            over = base.copy()
            over[m[i]] = (1 - alpha) * base[m[i]] + alpha * np.asarray(color)
            ax = fig.add_subplot(len(rows), n, r * n + i + 1)
            ax.imshow(over, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name, loc="left")
    return _save(fig, path)
