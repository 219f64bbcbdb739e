"""MNIST in torchvision's layout: ``<root>/MNIST/raw/`` holds the four
uncompressed idx files (``.gz`` copies are read too)."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from .common import ChecksumError, DataMissing, Splits, Writer, log, md5, root_path, tensor_split
from .registry import DataSpec, register

# MD5 of the uncompressed files, as published (torchvision lists the same for the raw files).
FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def raw_dir(root) -> Path:
    return root_path(root) / "MNIST" / "raw"


def parse_idx(data: bytes) -> np.ndarray:
    """Decode an idx file (unsigned-byte data, as MNIST uses)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError("not an unsigned-byte idx file")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"idx file of {len(data)} bytes ends inside its header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    arr = np.frombuffer(data, dtype=np.uint8, offset=offset)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"idx file has {arr.size} values, its header says {shape}")
    return arr.reshape(shape)


def read_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed when it is a .gz; ValueError naming the file when that fails."""
    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:  # truncated, not gzip, or damaged
            raise ValueError(f"{path} is truncated or not a valid .gz file ({e})") from None
    return data


def read_idx(path: Path) -> np.ndarray:
    try:
        return parse_idx(read_bytes(path))
    except ValueError as e:
        msg = str(e) if str(e).startswith(str(path)) else f"{path}: {e}"
        raise ValueError(f"{msg}; import MNIST again (frx-data import mnist ... --force)") from None


def _find(raw: Path, name: str) -> Path | None:
    for p in (raw / name, raw / (name + ".gz")):
        if p.exists():
            return p
    return None


def missing_message(root) -> str:
    raw = raw_dir(root)
    return (f"MNIST is not in {raw} (expected {', '.join(FILES)}).\n"
            f"Import local copies of the four .gz files with:\n"
            f"  frx-data import mnist /path/to/dir-with-the-4-gz-files --root {root}\n"
            f"or, with internet access, set dataset.download=true (torchvision downloads into {raw}).")


def present(root) -> bool:
    raw = raw_dir(root)
    return all(_find(raw, n) is not None for n in FILES)


def load_arrays(root, download: bool = False):
    """(x_train uint8 (N,1,28,28), y_train, x_test, y_test) as tensors."""
    raw = raw_dir(root)
    if not present(root):
        if not download:
            raise DataMissing(missing_message(root))
        import torchvision

        torchvision.datasets.MNIST(str(root_path(root)), train=True, download=True)
        torchvision.datasets.MNIST(str(root_path(root)), train=False, download=True)
    arrays = [torch.from_numpy(read_idx(_find(raw, n)).copy()) for n in FILES]
    xtr, ytr, xte, yte = arrays
    return xtr.unsqueeze(1), ytr.long(), xte.unsqueeze(1), yte.long()


def load(cfg) -> Splits:
    xtr, ytr, xte, yte = load_arrays(cfg.root, bool(cfg.get("download", False)))
    train = tensor_split(xtr, ytr, cfg, cfg.get("limit_train"))
    val = tensor_split(xte, yte, cfg, cfg.get("limit_val"))
    info = {"source": "mnist", "train_size": len(train), "val_size": len(val), "val_is": "test set",
            "subset": len(train) < 60000 or len(val) < 10000}
    log.info("MNIST: %d train / %d test images", len(train), len(val))
    return Splits(train, val, info)


def import_files(src, root, force: bool = False, verify: bool = True) -> dict:
    """Decompress the four MNIST files from ``src`` (a folder with the .gz files or
    the uncompressed ones) into ``<root>/MNIST/raw/``, checking the published MD5s."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder holding the four MNIST files")
    writer = Writer(force=force)
    for name, expected in FILES.items():
        path = _find(src, name)
        if path is None:
            raise FileNotFoundError(f"{src} has neither {name}.gz nor {name}")
        data = read_bytes(path)
        got = md5(data)
        if verify and got != expected:
            raise ChecksumError(f"{path}: MD5 of the uncompressed bytes is {got}, "
                                f"the published MNIST file has {expected}")
        try:
            parse_idx(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        writer.add(raw_dir(root) / name, data)
    return writer.commit()


def describe(root) -> dict[str, str]:
    return {"mnist": f"MNIST in {raw_dir(root)}"} if present(root) else {}


register(DataSpec("mnist", load, describe, import_files, where=raw_dir))
