"""Reading ``cifar10-jpeg.npz`` (the full CIFAR-10 as JPEG bytes) and the lossless first test images kept
beside it: structure checks before any work, and decoding on several processes. frx.data.cifar10 imports
them into torchvision's layout."""
from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

JPEG_KEYS = ("train_jpeg", "train_offsets", "y_train", "test_jpeg", "test_offsets", "y_test")
# where the lossless first test images are looked for beside the JPEG file
LOSSLESS_NAMES = ("cifar10-subset.npz", "cifar10-lossless-test1k.npz")


def read_jpeg_npz(src: Path) -> dict:
    """The arrays of a ``cifar10-jpeg.npz``, checked for structure (keys, offsets, labels)."""
    z = np.load(src, allow_pickle=False)
    missing = [k for k in JPEG_KEYS if k not in z.files]
    if missing:
        raise ValueError(f"{src}: not a CIFAR-10 JPEG file (missing {', '.join(missing)})")
    a = {k: z[k] for k in JPEG_KEYS}
    for part in ("train", "test"):
        off, y, blob = a[f"{part}_offsets"], a[f"y_{part}"], a[f"{part}_jpeg"]
        if off.ndim != 1 or len(off) != len(y) + 1 or off[0] != 0 or off[-1] != len(blob) \
                or np.any(np.diff(off) <= 0):
            raise ValueError(f"{src}: {part}_offsets do not cut {part}_jpeg into {len(y)} images")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise ValueError(f"{src}: y_{part} has labels outside 0-9")
    return a


def decode_jpegs(blob: np.ndarray, offsets: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Images start..stop of a JPEG blob as uint8 (n, 32, 32, 3) (Pillow, RGB)."""
    from PIL import Image

    stop = len(offsets) - 1 if stop is None else stop
    out = np.empty((stop - start, 32, 32, 3), dtype=np.uint8)
    for i in range(start, stop):
        img = np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
        if img.shape != (32, 32, 3):
            raise ValueError(f"JPEG {i} decodes to {img.shape}, not 32x32x3")
        out[i - start] = img
    return out


def _decode_chunk(args):
    blob, offsets = args
    return decode_jpegs(blob, offsets)


def decode_all(blob: np.ndarray, offsets: np.ndarray, desc: str, jobs: int | None = None,
               chunk: int = 2000, progress: bool = True) -> np.ndarray:
    """Decode every image, ``jobs`` processes at once, with a progress bar."""
    from tqdm.auto import tqdm

    n = len(offsets) - 1
    parts = [(blob[offsets[a]:offsets[min(a + chunk, n)]], offsets[a:min(a + chunk, n) + 1] - offsets[a])
             for a in range(0, n, chunk)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, 8, len(parts)))
    bar = tqdm(total=n, desc=desc, unit="img", disable=not progress)
    out = []
    try:
        if jobs == 1:
            for p in parts:
                out.append(_decode_chunk(p))
                bar.update(len(out[-1]))
        else:
            with ProcessPoolExecutor(jobs) as pool:
                for x in pool.map(_decode_chunk, parts):
                    out.append(x)
                    bar.update(len(x))
    finally:
        bar.close()
    return np.concatenate(out) if out else np.empty((0, 32, 32, 3), np.uint8)


def find_lossless(src: Path) -> Path | None:
    """The file with the lossless first test images beside ``src``, if there is one."""
    for name in LOSSLESS_NAMES:
        if (src.parent / name).exists():
            return src.parent / name
    return None


def read_lossless(path: Path, y_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x_test/y_test (HWC uint8) of an .npz holding the lossless first test images; their labels
    must be the first labels of the JPEG test set."""
    z = np.load(path, allow_pickle=False)
    if "x_test" not in z.files or "y_test" not in z.files:
        raise ValueError(f"{path}: expected x_test and y_test (the lossless first test images)")
    x, y = z["x_test"], z["y_test"]
    if x.shape[1:] != (32, 32, 3) or len(x) != len(y) or len(y) > len(y_test):
        raise ValueError(f"{path}: x_test {x.shape} / y_test {y.shape} are not the first test images of CIFAR-10")
    if not np.array_equal(y, y_test[:len(y)]):
        raise ValueError(f"{path}: its y_test are not the first labels of the JPEG test set")
    return x, y
