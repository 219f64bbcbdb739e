"""Carvana Image Masking Challenge in the Kaggle layout:
``<root>/<subdir>/train/<id>_<view>.jpg`` and ``<root>/<subdir>/train_masks/<id>_<view>_mask.gif``
(mask pixels 0/1, or 0/255). ``subdir`` is "carvana" for the real data set.
Images are read from disk per item, resized to ``resize`` (H, W) and scaled to [0, 1]."""
from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .common import DataMissing, Splits, Writer, limit, log, root_path, scale_images
from .registry import DataSpec, register

SYNTHETIC_MARKER = "SYNTHETIC.json"
KAGGLE = "https://www.kaggle.com/c/carvana-image-masking-challenge/data"


def data_dir(root, subdir: str = "carvana") -> Path:
    return root_path(root) / subdir


def missing_message(root, subdir: str = "carvana") -> str:
    d = data_dir(root, subdir)
    return (f"Carvana is not in {d} (expected {d}/train/<id>_<view>.jpg and "
            f"{d}/train_masks/<id>_<view>_mask.gif).\n"
            f"Download train.zip and train_masks.zip from {KAGGLE} (a Kaggle account is needed, e.g. "
            f"`kaggle competitions download -c carvana-image-masking-challenge`), then:\n"
            f"  frx-data import carvana /path/to/dir-with-train-and-train_masks --root {root}\n"
            f"For synthetic stand-in images use dataset=carvana_synthetic "
            f"(or `frx-data make-synthetic-carvana {root}`).")


def car_id(path: Path) -> str:
    return path.stem.rsplit("_", 1)[0]


def list_items(d: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs sorted by name; every image must have its mask."""
    imgs = sorted((d / "train").glob("*.jpg"))
    items, orphans = [], []
    for p in imgs:
        m = d / "train_masks" / f"{p.stem}_mask.gif"
        (items if m.exists() else orphans).append((p, m))
    if orphans:
        raise FileNotFoundError(f"{len(orphans)} Carvana images have no mask, e.g. {orphans[0][1]}")
    return items


def present(root, subdir: str = "carvana") -> bool:
    d = data_dir(root, subdir)
    return (d / "train").is_dir() and any((d / "train").glob("*.jpg"))


def read_mask(path: Path, size=None) -> torch.Tensor:
    img = Image.open(path).convert("L")
    if size is not None:
        img = img.resize((size[1], size[0]), Image.NEAREST)
    v = np.asarray(img)
    return torch.from_numpy(v > v.max() / 2).long()


class CarvanaDataset(torch.utils.data.Dataset):
    """Items (image float (3, H, W), mask int64 (H, W) in {0, 1})."""

    def __init__(self, items, size=None, normalize: str = "unit", mean=None, std=None, num_workers: int = 0):
        self.items = list(items)
        self.size = tuple(int(s) for s in size) if size is not None else None
        self.normalize, self.mean, self.std = normalize, mean, std
        self.num_workers = int(num_workers)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        img_path, mask_path = self.items[i]
        img = Image.open(img_path).convert("RGB")
        if self.size is not None:
            img = img.resize((self.size[1], self.size[0]), Image.BICUBIC)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).unsqueeze(0)
        x = scale_images(x, self.normalize, self.mean, self.std)[0]
        return x, read_mask(mask_path, self.size)


def split_by_car(items, val_fraction: float, seed: int):
    ids = sorted({car_id(p) for p, _ in items})
    random.Random(int(seed)).shuffle(ids)
    n_val = max(1, int(round(val_fraction * len(ids)))) if len(ids) > 1 else 0
    val_ids = set(ids[:n_val])
    order = {c: i for i, c in enumerate(ids)}
    key = lambda it: (order[car_id(it[0])], it[0].name)  # noqa: E731
    train = sorted((it for it in items if car_id(it[0]) not in val_ids), key=key)
    val = sorted((it for it in items if car_id(it[0]) in val_ids), key=key)
    return train, val


def load(cfg) -> Splits:
    subdir = cfg.get("subdir", "carvana")
    d = data_dir(cfg.root, subdir)
    synth = cfg.get("synthetic")
    if synth and not present(cfg.root, subdir):
        from .synthetic_carvana import make_synthetic_carvana

        log.info("writing synthetic Carvana-like images into %s", d)
        make_synthetic_carvana(d, n=int(synth.cars), views=int(synth.views),
                               size=(int(synth.height), int(synth.width)), seed=int(synth.get("seed", 0)))
    if not present(cfg.root, subdir):
        if cfg.get("download"):
            raise DataMissing("Carvana cannot be downloaded automatically (Kaggle needs an account).\n"
                              + missing_message(cfg.root, subdir))
        raise DataMissing(missing_message(cfg.root, subdir))
    items = list_items(d)
    train, val = split_by_car(items, float(cfg.get("val_fraction", 0.1)), int(cfg.get("split_seed", 0)))
    train, val = train[:limit(len(train), cfg.get("limit_train"))], val[:limit(len(val), cfg.get("limit_val"))]
    mean, std = cfg.get("mean"), cfg.get("std")
    kw = dict(size=cfg.get("resize"), normalize=cfg.get("normalize", "unit"),
              mean=list(mean) if mean is not None else None, std=list(std) if std is not None else None,
              num_workers=cfg.get("num_workers", 0))
    synthetic = (d / SYNTHETIC_MARKER).exists()
    info = {"source": "carvana", "train_size": len(train), "val_size": len(val), "synthetic": synthetic,
            "val_is": f"{float(cfg.get('val_fraction', 0.1)):.0%} of the cars (seed {cfg.get('split_seed', 0)})",
            "subset": len(train) + len(val) < len(items)}
    if synthetic:
        log.warning("Carvana data in %s is SYNTHETIC (%s)", d, json.loads((d / SYNTHETIC_MARKER).read_text()))
    log.info("Carvana: %d train / %d val images", len(train), len(val))
    return Splits(CarvanaDataset(train, **kw), CarvanaDataset(val, **kw), info)


def import_files(src, root, force: bool = False, link: bool = False) -> dict:
    """Copy (or symlink, ``link``) a Kaggle-layout folder (``train/``, ``train_masks/``)
    into ``<root>/carvana``; ``train.zip`` / ``train_masks.zip`` in ``src`` are extracted."""
    src = Path(src).expanduser()
    dst = data_dir(root)
    writer = Writer(force=force, link=link)
    for sub in ("train", "train_masks"):
        folder, archive = src / sub, src / f"{sub}.zip"
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.is_file() and p.suffix.lower() in (".jpg", ".gif"):
                    writer.add(dst / sub / p.name, p)
        elif archive.exists():
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    if name.lower().endswith((".jpg", ".gif")) and not name.endswith("/"):
                        writer.add(dst / sub / Path(name).name, z.read(name))
        else:
            raise FileNotFoundError(f"{src} has neither {sub}/ nor {sub}.zip")
    if (src / SYNTHETIC_MARKER).exists():
        writer.add(dst / SYNTHETIC_MARKER, src / SYNTHETIC_MARKER)
    result = writer.commit()
    list_items(dst)
    return result


def describe(root) -> dict[str, str]:
    """Every folder of the root in the Carvana layout (the real set, synthetic ones)."""
    out = {}
    base = root_path(root)
    if base.is_dir():
        for d in sorted(base.iterdir()):
            if d.is_dir() and present(base, d.name):
                n = sum(1 for _ in (d / "train").glob("*.jpg"))
                synth = " (SYNTHETIC)" if (d / SYNTHETIC_MARKER).exists() else ""
                out[f"carvana:{d.name}"] = f"Carvana layout in {d}: {n} images{synth}"
    return out


register(DataSpec("carvana", load, describe, import_files, where=data_dir))
