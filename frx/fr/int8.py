"""Symmetric int8 quantization in groups: one float32 scale per `group` consecutive values (the packed
format's int8 payload, frx.fr.codec)."""

from __future__ import annotations

import numpy as np
import torch

INT8_GROUP = 64  # values per float32 scale: (64 + 4) / 64 = 1.06 bytes per kept coefficient


def quantize_int8(values: torch.Tensor, group: int = INT8_GROUP) -> tuple[np.ndarray, np.ndarray]:
    """(scales float32, codes int8) for a flat tensor: symmetric, one scale per `group` values."""
    v = values.detach().double().reshape(-1)
    n_groups = -(-v.numel() // group)
    padded = torch.zeros(n_groups * group, dtype=torch.float64)
    padded[:v.numel()] = v
    scales = padded.reshape(n_groups, group).abs().amax(1).div(127).to(torch.float32)
    safe = torch.where(scales > 0, scales.double(), torch.ones_like(scales, dtype=torch.float64))
    codes = torch.round(padded.reshape(n_groups, group) / safe[:, None]).clamp(-127, 127)
    return scales.numpy(), codes.reshape(-1)[:v.numel()].to(torch.int8).numpy()


def dequantize_int8(scales: np.ndarray, codes: np.ndarray, group: int) -> torch.Tensor:
    s = torch.from_numpy(scales.astype(np.float32)).repeat_interleave(group)[:len(codes)]
    return torch.from_numpy(codes.astype(np.float32)) * s


def int8_bytes(n: int, group: int) -> int:
    """The payload of n values: a float32 scale per group, one byte per value."""
    return 4 * -(-n // group) + n
