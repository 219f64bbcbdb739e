"""What the tests share: the overrides that keep a run in a temporary folder, small MNIST-like idx
files (random pixels and labels) for tests that must not read the real set, and the scripts/ modules."""

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np

from frx.data import mnist


def load_script(name: str):
    """scripts/<name>.py as a module (registered in sys.modules, where its dataclasses look it up)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "scripts" /
                                                      f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tmp_overrides(tmp: Path, *extra: str) -> list[str]:
    """Overrides that write everything of a run under `tmp`, on one thread, without a progress bar."""
    return [f"run.dir={tmp / 'run'}", f"run.records_dir={tmp / 'records'}", f"run.cache_dir={tmp / 'cache'}",
            "trainer.threads=1", "trainer.progress=false", *extra]


def idx_bytes(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def zero_idx(shape: tuple) -> bytes:
    """An idx file of zeros."""
    return idx_bytes(np.zeros(shape, np.uint8))


def tiny_mnist(rng, n):
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    return x, y


def write_mnist(folder: Path, gz: bool, ntrain=12, ntest=5, seed=0):
    """The four MNIST files in folder (.gz when gz); returns (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    xtr, ytr = tiny_mnist(rng, ntrain)
    xte, yte = tiny_mnist(rng, ntest)
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in zip(mnist.FILES, (xtr, ytr, xte, yte)):
        data = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return xtr, ytr, xte, yte
