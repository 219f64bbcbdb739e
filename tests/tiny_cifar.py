"""Small CIFAR-10-like files in the shared layouts, for tests that must not read 60,000 images."""

import io

import numpy as np
from PIL import Image


def jpeg_blob(images: np.ndarray, quality: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """HWC uint8 images -> (uint8 blob, int64 offsets) as in cifar10-jpeg.npz."""
    parts = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        parts.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return np.concatenate(parts), offsets


def write_jpeg_npz(path, x_train, y_train, x_test, y_test) -> None:
    tr, tro = jpeg_blob(x_train)
    te, teo = jpeg_blob(x_test)
    np.savez(path, train_jpeg=tr, train_offsets=tro, y_train=np.asarray(y_train, np.uint8),
             test_jpeg=te, test_offsets=teo, y_test=np.asarray(y_test, np.uint8))


def smooth_images(rng, n: int) -> np.ndarray:
    """Images JPEG keeps close to themselves (smooth colour gradients), HWC uint8."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    a = rng.uniform(0, 1, (n, 1, 1, 3))
    b = rng.uniform(-0.5, 0.5, (n, 1, 1, 3))
    img = a * 200 + b * 100 * (yy[None, :, :, None] + xx[None, :, :, None])
    return np.clip(img, 0, 255).astype(np.uint8)


def write_tiny_set(folder, ntrain: int = 40, ntest: int = 20, nlossless: int = 10, seed: int = 0):
    """cifar10-jpeg.npz and a lossless .npz (x_test/y_test: the first nlossless test images) in folder."""
    rng = np.random.default_rng(seed)
    x_train, x_test = smooth_images(rng, ntrain), smooth_images(rng, ntest)
    y_train, y_test = np.arange(ntrain) % 10, rng.integers(0, 10, ntest)
    folder.mkdir(parents=True, exist_ok=True)
    write_jpeg_npz(folder / "cifar10-jpeg.npz", x_train, y_train, x_test, y_test)
    np.savez(folder / "lossless.npz", x_test=x_test[:nlossless], y_test=y_test[:nlossless].astype(np.uint8))
    return x_train, y_train, x_test, y_test
