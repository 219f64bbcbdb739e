"""The packed file format of a trained model.

Layout (little-endian):

    magic b"FRXPACK\\0" | version u16 | header length u32 | header (zlib JSON)
    | payload | CRC-32 of everything before it (u32)

The header lists every tensor of the model's `state_dict` in order. A
regularized weight stores its shape, view, transformed dims and `k`, and its
payload is the k kept coefficients per slice in mask order (L1 norm, then
lexicographic), so no index is stored: the order follows from shape and k. Every
other tensor (biases, norm layers, buffers) is stored whole.

Kept coefficients are float32, float16 or int8. An int8 payload is a float32
scale per group of `group` consecutive coefficients (in payload order, so a group
spans one band of neighbouring frequencies) followed by the int8 values:
value = int8 * scale. Version 1 files (no int8) read as before.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..files import atomic_write
from .dct import idctn_corner
from .int8 import INT8_GROUP, dequantize_int8, int8_bytes, quantize_int8
from .mask import corner_shape, kept_order, kept_rows, slice_perm
from .parametrize import FrequencyWeight, fr_tensors

# a header is input: the values it claims are bounded by the file's size before anything is allocated. One
# kept coefficient of a 4096 x 9216 linear layer packs into 165 bytes, a 2.3e5-fold expansion
MAX_VALUES_PER_BYTE = 2**20
MAGIC = b"FRXPACK\0"
VERSION = 2  # 2: int8 coefficients; version 1 files read unchanged
_HEAD = struct.Struct("<8sHI")
_CRC = struct.Struct("<I")
_FR_KEY = "parametrizations.weight.original"  # where parametrize keeps T in a state_dict
_FR_INNER = "parametrizations.weight."
DTYPES = ("float16", "float32", "int8")
PLAIN_DTYPES = ("float16", "float32")
_FLOAT16_MAX = float(torch.finfo(torch.float16).max)


class CorruptFile(ValueError):
    """The file is not a readable frx pack (wrong magic, truncated, failed checksum, bad header)."""


def kept_values(p: FrequencyWeight, t: torch.Tensor) -> torch.Tensor:
    """The kept coefficients of T, k per slice, in mask order (flattened)."""
    return kept_rows(t, p.view, p.dims, int(p.k)).reshape(-1)


def _corner_from_values(p: FrequencyWeight, values: torch.Tensor) -> torch.Tensor:
    """The kept corner of T in the view's layout (full size along untransformed dims), zeros where dropped."""
    k = int(p.k)
    corner = corner_shape(p.t_shape, k)
    rows = torch.zeros(p.slices, math.prod(corner), dtype=values.dtype)
    rows[:, kept_order(p.t_shape, k)] = values.reshape(p.slices, k)
    perm = slice_perm(p.view, p.dims)
    sizes = iter(corner)
    rows = rows.reshape([p.view[d] if d not in p.dims else next(sizes) for d in perm])
    return rows.permute([perm.index(d) for d in range(len(perm))])


def coefficients_from_values(p: FrequencyWeight, values: torch.Tensor) -> torch.Tensor:
    """The inverse of `kept_values`: T (weight-shaped) with zeros at every dropped position."""
    c = _corner_from_values(p, values)
    full = torch.zeros(p.view, dtype=values.dtype)
    full[tuple(slice(0, n) for n in c.shape)] = c
    return full.reshape(p.shape)


def _np_dtype(t: torch.Tensor, float_dtype: str) -> str:
    return float_dtype if t.is_floating_point() else str(t.numpy().dtype)


def _check_range(name: str, t: torch.Tensor, dtype: str) -> None:
    """Refuse non-finite values (a model that would only give nan) and what the storage dtype would turn
    into inf (float16)."""
    if not t.is_floating_point() or t.numel() == 0:
        return
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} has non-finite values (nan or inf): a packed model holds finite weights")
    big = t.abs().max().item()
    if dtype == "float16" and big > _FLOAT16_MAX:
        raise ValueError(f"{name} has values up to {big:.4g}, beyond float16's range ({_FLOAT16_MAX:.0f}); "
                         f"pack with dtype='float32' (and plain_dtype='float32')")


def pack(model: nn.Module, path, dtype: str = "float16", plain_dtype: str | None = None,
         meta: dict | None = None, overwrite: bool = False) -> int:
    """Write `model` to `path` in the packed format; returns the file size in bytes.

    dtype: storage of the kept coefficients ("float16", "float32" or "int8");
    plain_dtype: of the other floating tensors ("float16" or "float32"; default
    dtype, or float16 when dtype is int8).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    plain_dtype = plain_dtype or (dtype if dtype in PLAIN_DTYPES else "float16")
    if plain_dtype not in PLAIN_DTYPES:
        raise ValueError(f"plain_dtype must be one of {PLAIN_DTYPES}, got {plain_dtype!r}")
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    fr = {name[:-len("weight")] + _FR_KEY: p for name, _, p in fr_tensors(model)}
    entries, chunks = [], []
    for key, t in model.state_dict().items():
        t = t.detach().cpu()
        if key in fr:
            p = fr[key]
            name = key[:-len(_FR_KEY)] + "weight"
            values = kept_values(p, t)
            _check_range(name, values, dtype)
            entry = {"name": name, "kind": "fr", "layer": p.kind, "shape": list(p.shape), "view": list(p.view),
                     "dims": list(p.dims), "k": int(p.k), "torch_dtype": str(t.dtype)}
            data = _encode_fr(entry, values, dtype)
        elif _FR_INNER in key:
            continue  # the parametrization's own buffers (k) are in the entry above
        else:
            np_dtype = _np_dtype(t, plain_dtype)
            _check_range(key, t, np_dtype)
            data = _le_bytes(t.to(getattr(torch, np_dtype)).numpy() if t.is_floating_point() else t.numpy())
            entry = {"name": key, "kind": "plain", "shape": list(t.shape), "dtype": np_dtype,
                     "torch_dtype": str(t.dtype)}
        entries.append(entry)
        chunks.append(data)
    return _write(path, entries, chunks, meta or {})


def _encode_fr(entry: dict, values: torch.Tensor, dtype: str) -> bytes:
    """Kept coefficients in `dtype`; sets the entry's dtype (and int8 group)."""
    entry["dtype"] = dtype
    if dtype == "int8":
        scales, codes = quantize_int8(values)
        entry["group"] = INT8_GROUP
        return _le_bytes(scales) + _le_bytes(codes)
    entry.pop("group", None)
    return _le_bytes(values.to(getattr(torch, dtype)).numpy())


def _write(path, entries: list, chunks: list, meta: dict) -> int:
    """Write the file chunk by chunk (the CRC runs along), without joining the payload in memory."""
    for entry, chunk in zip(entries, chunks):
        entry["bytes"] = len(chunk)
    header = zlib.compress(json.dumps({"tensors": entries, "meta": meta}).encode(), 9)
    parts = [_HEAD.pack(MAGIC, VERSION, len(header)), header, *chunks]

    def write(f):
        crc = 0
        for part in parts:
            f.write(part)
            crc = zlib.crc32(part, crc)
        f.write(_CRC.pack(crc))

    atomic_write(path, write)
    return sum(len(part) for part in parts) + _CRC.size


def repack(src, dst, dtype: str, overwrite: bool = False) -> int:
    """Store the kept coefficients of packed file `src` in `dtype` at `dst` (other tensors are copied as
    they are); returns dst's size. Converting down (float16 -> int8) quantizes what src holds."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if Path(dst).exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True to replace it")
    header, payload = _read(src)
    entries, chunks, offset = [], [], 0
    for e in header["tensors"]:
        raw = payload[offset:offset + e["bytes"]]
        offset += e["bytes"]
        e = dict(e)
        if e["kind"] == "fr":
            values = _decode(e, raw).float()
            _check_range(e["name"], values, dtype)
            chunks.append(_encode_fr(e, values, dtype))
        else:
            chunks.append(bytes(raw))
        entries.append(e)
    return _write(dst, entries, chunks, header.get("meta", {}))


def _le_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()


def _fail(path, msg: str):
    raise CorruptFile(f"{path}: {msg}")


def _int_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in v)


def _stored_count(e: dict) -> int:
    """Kept coefficients of an fr entry: k per slice of the untransformed dims."""
    t_numel = math.prod(e["view"][d] for d in e["dims"])
    return e["k"] * (math.prod(e["view"]) // t_numel)


def _check_entry(path, e) -> None:
    """Raise CorruptFile unless `e` is a well-formed tensor entry whose byte count fits its shape."""
    if not isinstance(e, dict) or not isinstance(e.get("name"), str):
        _fail(path, f"bad tensor entry in header: {str(e)[:80]}")
    name, kind, shape = e["name"], e.get("kind"), e.get("shape")
    torch_dtype = e.get("torch_dtype")
    if not _int_list(shape) or not isinstance(e.get("bytes"), int):
        _fail(path, f"entry {name!r}: bad shape or byte count")
    if not (isinstance(torch_dtype, str) and torch_dtype.startswith("torch.")
            and isinstance(getattr(torch, torch_dtype[6:], None), torch.dtype)):
        _fail(path, f"entry {name!r}: unknown torch dtype {torch_dtype!r}")
    if kind == "plain":
        try:
            np_dtype = np.dtype(e.get("dtype"))
        except TypeError:
            np_dtype = None
        if np_dtype is None or np_dtype.kind not in "biuf":
            _fail(path, f"entry {name!r}: unknown dtype {e.get('dtype')!r}")
        expected = math.prod(shape) * np_dtype.itemsize
    elif kind == "fr":
        view, dims, k, dtype = e.get("view"), e.get("dims"), e.get("k"), e.get("dtype")
        if (e.get("layer") not in ("conv", "linear") or not _int_list(view) or math.prod(view) != math.prod(shape)
                or not _int_list(dims) or not dims or len(set(dims)) != len(dims) or max(dims) >= len(view)
                or dtype not in DTYPES):
            _fail(path, f"entry {name!r}: inconsistent layer, view, dims or dtype")
        t_numel = math.prod(view[d] for d in dims)
        if not isinstance(k, int) or not 1 <= k <= t_numel:
            _fail(path, f"entry {name!r}: k={k!r} outside [1, {t_numel}]")
        n = _stored_count(e)
        if dtype == "int8":
            group = e.get("group")
            if not isinstance(group, int) or group < 1:
                _fail(path, f"entry {name!r}: bad int8 group {group!r}")
            expected = int8_bytes(n, group)
        else:
            expected = n * np.dtype(dtype).itemsize
    else:
        _fail(path, f"entry {name!r}: unknown kind {kind!r}")
    if e["bytes"] != expected:
        _fail(path, f"entry {name!r}: {e['bytes']} bytes where its shape needs {expected}")


def _read(path) -> tuple[dict, memoryview]:
    data = Path(path).read_bytes()
    if len(data) < _HEAD.size + _CRC.size or data[:8] != MAGIC:
        _fail(path, "not an frx packed model (bad magic or too short)")
    _, version, hlen = _HEAD.unpack_from(data)
    if version > VERSION:
        _fail(path, f"format version {version} was written by a newer frx; this one reads versions 1 to {VERSION}")
    if version < 1:
        _fail(path, f"unknown format version {version}")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[:-_CRC.size]) != crc:
        _fail(path, "checksum mismatch (the file is truncated or corrupt)")
    try:
        header = json.loads(zlib.decompress(data[_HEAD.size:_HEAD.size + hlen]))
    except (zlib.error, ValueError) as e:
        _fail(path, f"unreadable header ({e})")
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), list):
        _fail(path, "header has no tensor list")
    if not isinstance(header.get("meta", {}), dict):
        _fail(path, "header meta is not a mapping")
    for e in header["tensors"]:
        _check_entry(path, e)
    values = sum(math.prod(e["shape"]) for e in header["tensors"])
    if values > MAX_VALUES_PER_BYTE * len(data):
        _fail(path, f"header claims {values:,} values, more than a {len(data):,}-byte packed file can hold")
    payload = memoryview(data)[_HEAD.size + hlen:len(data) - _CRC.size]
    if sum(e["bytes"] for e in header["tensors"]) != len(payload):
        _fail(path, "payload size does not match its header")
    offset = 0
    for e in header["tensors"]:
        if not _finite(e, payload[offset:offset + e["bytes"]]):
            _fail(path, f"{e['name']} has non-finite values (nan or inf)")
        offset += e["bytes"]
    return header, payload


def _finite(e: dict, raw: memoryview) -> bool:
    """Whether the entry's stored floats (an int8 entry's scales) are all finite."""
    dtype = np.dtype("<f4") if e["dtype"] == "int8" else np.dtype(e["dtype"]).newbyteorder("<")
    if e["dtype"] == "int8":
        raw = raw[:e["bytes"] - _stored_count(e)]
    return dtype.kind != "f" or bool(np.isfinite(np.frombuffer(raw, dtype)).all())


def unpack_meta(path) -> dict:
    """The header of a packed file: tensor entries and the user's meta."""
    return _read(path)[0]


def _decode(e: dict, raw: memoryview) -> torch.Tensor:
    """The entry's stored values as a flat tensor of its torch dtype."""
    if e["dtype"] == "int8":
        n = _stored_count(e)
        scales = np.frombuffer(raw[:e["bytes"] - n], dtype="<f4")
        values = dequantize_int8(scales, np.frombuffer(raw[e["bytes"] - n:], dtype=np.int8), e["group"])
    else:
        values = torch.from_numpy(np.frombuffer(raw, dtype=np.dtype(e["dtype"]).newbyteorder("<"))
                                  .astype(np.dtype(e["dtype"])))
    return values.to(getattr(torch, e["torch_dtype"][6:]))


def unpack(path) -> "OrderedDict[str, torch.Tensor]":
    """A plain dense state_dict (float32 weights) for the original architecture."""
    header, payload = _read(path)
    state, offset = OrderedDict(), 0
    for e in header["tensors"]:
        values = _decode(e, payload[offset:offset + e["bytes"]])
        offset += e["bytes"]
        if e["kind"] == "fr":
            p = FrequencyWeight(e["shape"], e["layer"], view=e["view"], dims=e["dims"])
            p.set_k(e["k"])
            # the inverse DCT of the kept corner alone: no full-size T is built
            state[e["name"]] = idctn_corner(_corner_from_values(p, values), p.view, p.dims).reshape(p.shape)
        else:
            state[e["name"]] = values.reshape(e["shape"]).clone()
    return state
