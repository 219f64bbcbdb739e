"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the model, optimizers, LR schedulers, the FR schedule (or the
pruning schedule), the epoch log, and every random state that training consumes
(Python, NumPy, torch CPU/CUDA and the data-order generator). It is written
atomically after each epoch, so a run killed at any moment resumes from the last
complete epoch and ends with the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import atomic_write

FILENAME = "checkpoint.pt"


def rng_state(generator: torch.Generator | None = None) -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])


def save(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """torch.save `state` to `path` atomically, streamed to the file (no copy of it in memory)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load(path: str | os.PathLike) -> dict[str, Any]:
    # our own file; it holds numpy RNG state and Python tuples, so not weights_only
    return torch.load(Path(path), map_location="cpu", weights_only=False)
