"""CIFAR-10 in torchvision's layout: ``<root>/cifar-10-batches-py/`` with the
pickled ``data_batch_1..5`` and ``test_batch``. A subset imported from the
shared ``.npz`` is written in the same layout plus ``frx_subset.json``."""
from __future__ import annotations

import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from .common import DataMissing, Splits, Writer, log, root_path, tensor_split

FOLDER = "cifar-10-batches-py"
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST = "test_batch"
SUBSET_MARKER = "frx_subset.json"
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def batch_dir(root) -> Path:
    return root_path(root) / FOLDER


def missing_message(root, what: str = "is not") -> str:
    return (f"CIFAR-10 {what} in {batch_dir(root)}.\n"
            f"Import a local copy with one of:\n"
            f"  frx-data import cifar10 /path/to/cifar-10-batches-py --root {root}\n"
            f"  frx-data import cifar10 /path/to/cifar-10-python.tar.gz --root {root}\n"
            f"  frx-data import cifar10 /path/to/cifar10-subset.npz --root {root}   (a real 10,000/1,000 subset)\n"
            f"or, with internet access, set dataset.download=true (torchvision downloads it).")


def _get(d: dict, key: str):
    return d[key] if key in d else d[key.encode()]


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    x = np.asarray(_get(d, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(_get(d, "labels"), dtype=np.int64)
    return x, y


def encode_batch(x_chw: np.ndarray, y: np.ndarray, label: str) -> bytes:
    d = {"batch_label": label, "labels": [int(v) for v in y],
         "data": np.ascontiguousarray(x_chw, dtype=np.uint8).reshape(len(y), 3072)}
    return pickle.dumps(d, protocol=2)


def subset_info(root) -> dict | None:
    p = batch_dir(root) / SUBSET_MARKER
    return json.loads(p.read_text()) if p.exists() else None


def present(root) -> bool:
    d = batch_dir(root)
    return (d / TEST).exists() and (d / TRAIN[0]).exists()


def load_arrays(root, download: bool = False):
    d = batch_dir(root)
    if not present(root):
        if not download:
            raise DataMissing(missing_message(root))
        import torchvision

        torchvision.datasets.CIFAR10(str(root_path(root)), train=True, download=True)
    sub = subset_info(root)
    names = sub["train_batches"] if sub is not None else [n for n in TRAIN if (d / n).exists()]
    if sub is None and len(names) < len(TRAIN):
        raise DataMissing(missing_message(root, "is incomplete (missing " +
                                          ", ".join(n for n in TRAIN if n not in names) + ")"))
    parts = [read_batch(d / n) for n in names]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = read_batch(d / TEST)
    return torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte), sub


def load(cfg) -> Splits:
    xtr, ytr, xte, yte, sub = load_arrays(cfg.root, bool(cfg.get("download", False)))
    train = tensor_split(xtr, ytr, cfg, cfg.get("limit_train"))
    val = tensor_split(xte, yte, cfg, cfg.get("limit_val"))
    info = {"source": "cifar10", "train_size": len(train), "val_size": len(val), "val_is": "test set",
            "subset": sub is not None or len(train) < 50000 or len(val) < 10000}
    if sub is not None:
        info["subset_note"] = sub.get("note", "")
        log.warning("CIFAR-10 in %s is a SUBSET (%s): %d train / %d test images",
                    batch_dir(cfg.root), sub.get("note", ""), len(train), len(val))
    else:
        log.info("CIFAR-10: %d train / %d test images", len(train), len(val))
    return Splits(train, val, info)


def import_files(src, root, force: bool = False) -> dict:
    """Import CIFAR-10 from the official ``cifar-10-batches-py`` folder, the official
    ``.tar.gz``, or an ``.npz`` with x_train/y_train/x_test/y_test (uint8, HWC)."""
    src = Path(src).expanduser()
    dst = batch_dir(root)
    writer = Writer(force=force)
    if src.is_dir():
        for n in TRAIN + [TEST, "batches.meta"]:
            if not (src / n).exists():
                raise FileNotFoundError(f"{src} is not a cifar-10-batches-py folder: {n} is missing")
            writer.add(dst / n, src / n)
        full = True
    elif src.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(src) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers()
                       if m.isfile() and Path(m.name).parent.name == FOLDER}
            for n in TRAIN + [TEST, "batches.meta"]:
                if n not in members:
                    raise FileNotFoundError(f"{src} has no {FOLDER}/{n}")
                writer.add(dst / n, tar.extractfile(members[n]).read())
        full = True
    elif src.suffix == ".npz":
        z = np.load(src)
        xtr, ytr, xte, yte = (z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        if xtr.shape[1:] != (32, 32, 3) or xte.shape[1:] != (32, 32, 3):
            raise ValueError(f"{src}: expected HWC 32x32x3 uint8 images, got {xtr.shape}, {xte.shape}")
        xtr, xte = xtr.transpose(0, 3, 1, 2), xte.transpose(0, 3, 1, 2)
        batches = []
        for i in range(0, len(ytr), 10000):
            batches.append(TRAIN[i // 10000])
            writer.add(dst / TRAIN[i // 10000],
                       encode_batch(xtr[i:i + 10000], ytr[i:i + 10000], f"training batch {i // 10000 + 1} of 5"))
        writer.add(dst / TEST, encode_batch(xte, yte, "testing batch 1 of 1"))
        writer.add(dst / "batches.meta", pickle.dumps(
            {"num_cases_per_batch": 10000, "label_names": LABEL_NAMES, "num_vis": 3072}, protocol=2))
        note = (f"{len(ytr)} training and {len(yte)} test images from {src.name} "
                f"(the first ones in the official order)")
        writer.add(dst / SUBSET_MARKER, json.dumps(
            {"source": str(src), "train": int(len(ytr)), "test": int(len(yte)),
             "train_batches": batches, "note": note}, indent=1).encode())
        full = False
    else:
        raise ValueError(f"{src}: expected a cifar-10-batches-py folder, a .tar.gz or an .npz")
    if full and (dst / SUBSET_MARKER).exists():
        if not force:
            raise FileExistsError(f"{dst} holds a CIFAR-10 subset; use --force to replace it by the full set")
    result = writer.commit()
    if full and (dst / SUBSET_MARKER).exists():
        (dst / SUBSET_MARKER).unlink()
    return result
