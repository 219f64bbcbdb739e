"""The packed file format of a trained model.

Layout (little-endian):

    magic b"FRXPACK\\0" | version u16 | header length u32 | header (zlib JSON)
    | payload | CRC-32 of everything before it (u32)

The header lists every tensor of the model's `state_dict` in order. A
regularized weight stores its shape, view, transformed dims and `k`, and its
payload is the k kept coefficients per slice in mask order (L1 norm, then
lexicographic), so no index is stored: the order follows from shape and k. Every
other tensor (biases, norm layers, buffers) is stored whole.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .mask import corner_shape, kept_order
from .parametrize import FrequencyWeight, fr_tensors

MAGIC = b"FRXPACK\0"
VERSION = 1
_HEAD = struct.Struct("<8sHI")
_CRC = struct.Struct("<I")
_FR_KEY = "parametrizations.weight.original"  # where parametrize keeps T in a state_dict
_FR_INNER = "parametrizations.weight."
DTYPES = ("float16", "float32")


class CorruptFile(ValueError):
    """The file is not a readable frx pack (wrong magic, truncated, or failed checksum)."""


def _perm(p: FrequencyWeight) -> list[int]:
    """View dims reordered as (untransformed..., transformed...)."""
    return [d for d in range(len(p.view)) if d not in p.dims] + list(p.dims)


def kept_values(p: FrequencyWeight, t: torch.Tensor) -> torch.Tensor:
    """The kept coefficients of T, k per slice, in mask order (flattened)."""
    k = int(p.k)
    rows = t.reshape(p.view).permute(_perm(p)).reshape(p.slices, *p.t_shape)
    corner = corner_shape(p.t_shape, k)
    rows = rows[(slice(None),) + tuple(slice(0, c) for c in corner)].reshape(p.slices, -1)
    return rows[:, kept_order(p.t_shape, k, t.device)].reshape(-1)


def coefficients_from_values(p: FrequencyWeight, values: torch.Tensor) -> torch.Tensor:
    """The inverse of `kept_values`: T (weight-shaped) with zeros at every dropped position."""
    k = int(p.k)
    corner = corner_shape(p.t_shape, k)
    rows = torch.zeros(p.slices, math.prod(corner), dtype=values.dtype)
    rows[:, kept_order(p.t_shape, k)] = values.reshape(p.slices, k)
    full = torch.zeros(p.slices, *p.t_shape, dtype=values.dtype)
    full[(slice(None),) + tuple(slice(0, c) for c in corner)] = rows.reshape(p.slices, *corner)
    perm = _perm(p)
    full = full.reshape([p.view[d] for d in perm]).permute([perm.index(d) for d in range(len(perm))])
    return full.reshape(p.shape)


def _np_dtype(t: torch.Tensor, float_dtype: str) -> str:
    return float_dtype if t.is_floating_point() else str(t.numpy().dtype)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write through a synced temporary file and os.replace: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def pack(model: nn.Module, path, dtype: str = "float16", plain_dtype: str | None = None,
         meta: dict | None = None, overwrite: bool = False) -> int:
    """Write `model` to `path` in the packed format; returns the file size in bytes.

    dtype: storage of the kept coefficients; plain_dtype: of the other floating
    tensors (default: the same as dtype).
    """
    if dtype not in DTYPES or (plain_dtype or dtype) not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}")
    plain_dtype = plain_dtype or dtype
    fr = {name[:-len("weight")] + _FR_KEY: p for name, _, p in fr_tensors(model)}
    entries, chunks = [], []
    for key, t in model.state_dict().items():
        t = t.detach().cpu()
        if key in fr:
            p = fr[key]
            data = kept_values(p, t).to(getattr(torch, dtype)).numpy()
            entries.append({"name": key[:-len(_FR_KEY)] + "weight", "kind": "fr",
                            "layer": p.kind, "shape": list(p.shape), "view": list(p.view),
                            "dims": list(p.dims), "k": int(p.k), "dtype": dtype, "torch_dtype": str(t.dtype)})
        elif _FR_INNER in key:
            continue  # the parametrization's own buffers (k) are in the entry above
        else:
            np_dtype = _np_dtype(t, plain_dtype)
            data = t.to(getattr(torch, np_dtype)).numpy() if t.is_floating_point() else t.numpy()
            entries.append({"name": key, "kind": "plain", "shape": list(t.shape), "dtype": np_dtype,
                            "torch_dtype": str(t.dtype)})
        chunks.append(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes())
        entries[-1]["bytes"] = len(chunks[-1])
    header = zlib.compress(json.dumps({"tensors": entries, "meta": meta or {}}).encode(), 9)
    body = _HEAD.pack(MAGIC, VERSION, len(header)) + header + b"".join(chunks)
    data = body + _CRC.pack(zlib.crc32(body))
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    atomic_write_bytes(path, data)
    return len(data)


def _read(path) -> tuple[dict, memoryview]:
    data = Path(path).read_bytes()
    if len(data) < _HEAD.size + _CRC.size or data[:8] != MAGIC:
        raise CorruptFile(f"{path}: not an frx packed model (bad magic or too short)")
    _, version, hlen = _HEAD.unpack_from(data)
    if version != VERSION:
        raise CorruptFile(f"{path}: format version {version}, this frx reads version {VERSION}")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[:-_CRC.size]) != crc:
        raise CorruptFile(f"{path}: checksum mismatch (the file is truncated or corrupt)")
    try:
        header = json.loads(zlib.decompress(data[_HEAD.size:_HEAD.size + hlen]))
    except (zlib.error, ValueError) as e:
        raise CorruptFile(f"{path}: unreadable header ({e})") from None
    payload = memoryview(data)[_HEAD.size + hlen:len(data) - _CRC.size]
    if sum(e["bytes"] for e in header["tensors"]) != len(payload):
        raise CorruptFile(f"{path}: payload size does not match its header")
    return header, payload


def unpack_meta(path) -> dict:
    """The header of a packed file: tensor entries and the user's meta."""
    return _read(path)[0]


def unpack(path) -> "OrderedDict[str, torch.Tensor]":
    """A plain dense state_dict (float32 weights) for the original architecture."""
    header, payload = _read(path)
    state, offset = OrderedDict(), 0
    for e in header["tensors"]:
        raw = np.frombuffer(payload[offset:offset + e["bytes"]], dtype=np.dtype(e["dtype"]).newbyteorder("<"))
        offset += e["bytes"]
        values = torch.from_numpy(raw.astype(np.dtype(e["dtype"]))).to(getattr(torch, e["torch_dtype"][6:]))
        if e["kind"] == "fr":
            p = FrequencyWeight(e["shape"], e["layer"], view=e["view"], dims=e["dims"])
            p.set_k(e["k"])
            with torch.no_grad():
                state[e["name"]] = p(coefficients_from_values(p, values)).clone()
        else:
            state[e["name"]] = values.reshape(e["shape"]).clone()
    return state
