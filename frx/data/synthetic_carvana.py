"""Synthetic Carvana-like images: a car-shaped blob on a studio background,
written in the Kaggle layout (``train/<id>_<view>.jpg``, ``train_masks/<id>_<view>_mask.gif``,
mask pixels 0/1) plus ``SYNTHETIC.json``, so the real Carvana loader reads them."""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .common import Writer

MASK_PALETTE = [0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254


def _car(draw_img, draw_mask, rng: random.Random, w: int, h: int, color, flip: bool, scale: float):
    cx, cy = w * rng.uniform(0.45, 0.55), h * rng.uniform(0.5, 0.6)
    bw, bh = w * 0.32 * scale, h * 0.16 * scale
    body = [cx - bw, cy - bh, cx + bw, cy + bh]
    off = bw * (0.25 if flip else -0.25)
    cabin = [cx - bw * 0.5 + off, cy - bh * 2.1, cx + bw * 0.45 + off, cy - bh * 0.2]
    r = bh * 0.75
    wheels = [[x - r, cy + bh * 0.4 - r, x + r, cy + bh * 0.4 + r] for x in (cx - bw * 0.6, cx + bw * 0.6)]
    glass = tuple(max(0, c // 3) for c in color)
    draw_img.ellipse([cx - bw * 1.15, cy + bh * 0.7, cx + bw * 1.15, cy + bh * 1.5], fill=(70, 70, 70))  # shadow
    for d, fill_body, fill_glass, fill_wheel in ((draw_img, color, glass, (20, 20, 20)),
                                                 (draw_mask, 1, 1, 1)):
        d.rounded_rectangle(cabin, radius=bh * 0.6, fill=fill_body)
        d.rounded_rectangle(body, radius=bh * 0.7, fill=fill_body)
        for wb in wheels:
            d.ellipse(wb, fill=fill_wheel)
    shrink = [cabin[0] + bh * 0.3, cabin[1] + bh * 0.3, cabin[2] - bh * 0.3, cabin[3]]
    draw_img.rounded_rectangle(shrink, radius=bh * 0.4, fill=glass)


def make_image(rng: random.Random, car: dict, w: int, h: int, view: int):
    """(RGB image, mask image) for one view of one car."""
    top = np.array(car["bg_top"], dtype=np.float32)
    bottom = np.array(car["bg_bottom"], dtype=np.float32)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    bg = top * (1 - t) + bottom * t + np.random.default_rng(rng.randrange(2**32)).normal(0, 6, (h, w, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    mask = Image.new("P", (w, h), 0)
    mask.putpalette(MASK_PALETTE)
    _car(ImageDraw.Draw(img), ImageDraw.Draw(mask), rng, w, h, car["color"],
         flip=view % 2 == 1, scale=rng.uniform(0.85, 1.15))
    return img.filter(ImageFilter.GaussianBlur(0.8)), mask


def make_synthetic_carvana(out_dir, n: int = 16, views: int = 4, size=(320, 480), seed: int = 0,
                           force: bool = False) -> dict:
    """Write ``n`` cars x ``views`` images of size (H, W) into ``out_dir``."""
    out = Path(out_dir).expanduser()
    h, w = int(size[0]), int(size[1])
    rng = random.Random(seed)
    writer = Writer(force=force)
    for _ in range(n):
        cid = "%012x" % rng.getrandbits(48)
        car = {"color": tuple(rng.randrange(30, 230) for _ in range(3)),
               "bg_top": [rng.randrange(150, 250)] * 3, "bg_bottom": [rng.randrange(60, 160)] * 3}
        for v in range(1, views + 1):
            img, mask = make_image(rng, car, w, h, v)
            jb, mb = io.BytesIO(), io.BytesIO()
            img.save(jb, format="JPEG", quality=90)
            mask.save(mb, format="GIF")
            writer.add(out / "train" / f"{cid}_{v:02d}.jpg", jb.getvalue())
            writer.add(out / "train_masks" / f"{cid}_{v:02d}_mask.gif", mb.getvalue())
    writer.add(out / "SYNTHETIC.json", json.dumps(
        {"generator": "frx.data.synthetic_carvana", "cars": n, "views": views, "height": h, "width": w,
         "seed": seed}, indent=1).encode())
    return writer.commit()
