"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the model, optimizers, LR schedulers, the FR schedule (or the
pruning schedule), the epoch log, and every random state that training consumes
(Python, NumPy, torch CPU/CUDA and the data-order generator). It is written
atomically after each epoch, so a run killed at any moment resumes from the last
complete epoch and ends with the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import atomic_write

FILENAME = "checkpoint.pt"


# a checkpoint holds only what torch.load(weights_only=True) reads: a run folder from elsewhere cannot run code on
# trainer.resume=true. Checkpoints written before kept NumPy's RNG state as an array: they load with NumPy's array
# type allowed as well (nothing that calls code), so that runs stopped mid-way resume
_np_core = np._core if hasattr(np, "_core") else np.core  # NumPy 2 | 1
_OLD_NUMPY_STATE = [_np_core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def rng_state(generator: torch.Generator | None = None) -> dict:
    kind, keys, *position = np.random.get_state()
    state = {
        "python": random.getstate(),  # a tuple of ints
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), *position],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    kind, keys, *position = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *position))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])


def save(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """torch.save `state` to `path` atomically, streamed to the file (no copy of it in memory)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load(path: str | os.PathLike) -> dict[str, Any]:
    allowed = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        with allowed(_OLD_NUMPY_STATE) if allowed else contextlib.nullcontext():
            return torch.load(Path(path), map_location="cpu", weights_only=True)
    except EOFError:
        raise EOFError("the file ends early (empty or cut short)") from None
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise
        raise pickle.UnpicklingError("it holds objects other than tensors and plain values, which a checkpoint "
                                     "never does (read with weights_only=True)") from None
