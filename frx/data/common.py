"""Shared pieces of the data loaders: splits, batching, errors, safe file writes."""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

log = logging.getLogger("frx.data")


def root_path(root) -> Path:
    """The data root as an absolute path; a relative root is taken from the directory
    the program started in, also inside a Hydra run that changed the working directory."""
    from hydra.utils import to_absolute_path

    return Path(to_absolute_path(str(Path(str(root)).expanduser())))


class DataMissing(FileNotFoundError):
    """A data set is not in the data root; the message says how to get it."""


class ChecksumError(ValueError):
    """Imported files do not have the published checksums."""


@dataclass
class TensorSplit:
    """An in-memory split: ``x`` float (N, C, H, W) already scaled/normalized at the
    stored resolution, ``y`` int64 (N,). When ``size`` (H, W) differs from the stored
    resolution, ``batches`` resizes each batch (bilinear) on its way out, so
    large resized copies never sit in memory."""

    x: torch.Tensor
    y: torch.Tensor
    size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        x = self.x[i]
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = resize_images(x.unsqueeze(0), self.size)[0]
        return x, self.y[i]

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device) -> "TensorSplit":
        """A copy of the split with its tensors on ``device`` (e.g. once, before training)."""
        return TensorSplit(self.x.to(device), self.y.to(device), self.size)

    def take(self, idx: torch.Tensor, device=None, augment=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch at ``idx`` on ``device``, augmented by ``augment(x)`` (at the stored
        resolution, on ``device``), then at ``size``."""
        idx = idx.to(self.x.device)
        x, y = self.x[idx], self.y[idx]
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = resize_images(x, self.size)
        return x, y


@dataclass
class Splits:
    """``train`` and ``val`` (the official test set where a data set has one);
    ``info`` says what was loaded (sizes, subset/synthetic flags, notes); ``extra_val``
    holds further test sets by name (a run reports ``<metric>_<name>`` on each)."""

    train: Any
    val: Any
    info: dict = field(default_factory=dict)
    extra_val: dict = field(default_factory=dict)


def resize_images(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def scale_images(x_uint8: torch.Tensor, mode: str = "unit", mean=None, std=None) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 scaled by ``mode`` (config key ``normalize``):
    "standard" ((x/255 - mean) / std), "unit" ([0, 1]) or "symmetric" ([-1, 1])."""
    x = x_uint8.float().div_(255.0)
    if mode == "standard":
        if mean is None or std is None:
            raise ValueError("dataset.normalize=standard needs dataset.mean and dataset.std")
        mean = torch.tensor(list(mean), dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(list(std), dtype=x.dtype).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)
    if mode == "unit":
        return x
    if mode == "symmetric":
        return x.mul_(2.0).sub_(1.0)
    raise ValueError(f"dataset.normalize must be 'standard', 'unit' or 'symmetric', got {mode!r}")


def check_dataset_keys(d) -> None:
    """The data keys that every loader reads (the dataset group has no schema: each loader has its own keys);
    ValueError with the message for the user."""
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(message)

    for key in ("limit_train", "limit_val"):
        v = d.get(key)
        check(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
              f"dataset.{key} must be an integer >= 1 or null, got {v!r}")
    seed = d.get("split_seed")
    check(seed is None or (isinstance(seed, int) and not isinstance(seed, bool)),
          f"dataset.split_seed must be an integer, got {seed!r}")
    size = d.get("resize")
    check(size is None or (len(size) == 2 and all(isinstance(n, int) and n >= 1 for n in size)),
          f"dataset.resize must be [height, width] of integers >= 1 or null, got {size}")
    vf = d.get("val_fraction")
    check(vf is None or (isinstance(vf, (int, float)) and 0 < vf < 1),
          f"dataset.val_fraction must be in (0, 1), got {vf!r}")
    channels = int(d.get("in_channels") or len(d.get("mean") or [0]))
    try:  # normalize, and mean/std for "standard", as scale_images reads them
        scale_images(torch.zeros(1, channels, 1, 1, dtype=torch.uint8), d.get("normalize", "unit"), d.get("mean"),
                     d.get("std"))
    except RuntimeError:  # mean/std of another length than the channels
        raise ValueError(f"dataset.mean and dataset.std need one value per input channel ({channels}), "
                         f"got {d.get('mean')} and {d.get('std')}") from None


def limit(n: int, lim) -> int:
    return n if lim is None else min(n, int(lim))


def tensor_split(x_uint8: torch.Tensor, y, cfg, lim) -> TensorSplit:
    """First ``lim`` images, scaled; resized lazily to ``cfg.resize``."""
    n = limit(len(x_uint8), lim)
    x = scale_images(x_uint8[:n], cfg.get("normalize", "unit"), cfg.get("mean"), cfg.get("std"))
    y = torch.as_tensor(y[:n], dtype=torch.int64).clone()
    size = cfg.get("resize")
    size = tuple(int(s) for s in size) if size is not None else None
    if size == tuple(x.shape[-2:]):
        size = None
    return TensorSplit(x, y, size)


def shard_rows(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows lo:hi of a batch of n that process `rank` of `world` trains on: consecutive, sizes differing by at
    most one."""
    return n * rank // world, n * (rank + 1) // world


class _RowsOfBatches:
    """A batch sampler: each batch of `batches` cut to one process's rows."""

    def __init__(self, batches, shard: tuple[int, int]):
        self.batches, self.shard = batches, shard

    def __iter__(self):
        for b in self.batches:
            lo, hi = shard_rows(len(b), *self.shard)
            yield b[lo:hi]

    def __len__(self) -> int:
        return len(self.batches)


def batches(split, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
            device="cpu", drop_last: bool = False, augment=None,
            shard: tuple[int, int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) batches on ``device``. In-memory splits are indexed directly
    (call ``split.to(device)`` once to keep the whole split on a GPU) and ``augment``
    (e.g. ``CropFlip``) transforms each whole batch; other splits (Carvana) go through
    a DataLoader with the split's ``num_workers``. ``shard`` = (rank, world size): every process
    draws the same order and gets its rows (``shard_rows``) of each batch of ``batch_size``,
    augmented as they would be in the whole batch."""
    if isinstance(split, TensorSplit):
        n = len(split)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(split.device)
        stop = n - n % batch_size if drop_last else n
        for i in range(0, stop, batch_size):
            if shard is None:
                yield split.take(order[i:i + batch_size], device, augment)
            else:
                idx = order[i:i + batch_size]
                lo, hi = shard_rows(len(idx), *shard)
                rows = None if augment is None else functools.partial(augment, of=len(idx), start=lo)
                yield split.take(idx[lo:hi], device, rows)
        return
    if augment is not None:
        raise ValueError("batch augmentation needs an in-memory split")
    device = torch.device(device)
    workers = getattr(split, "num_workers", 0)
    if shard is not None:  # the samplers DataLoader(shuffle=...) makes, each batch cut to this process's rows
        order = torch.utils.data.RandomSampler(split, generator=generator) if shuffle \
            else torch.utils.data.SequentialSampler(split)
        rows = _RowsOfBatches(torch.utils.data.BatchSampler(order, batch_size, drop_last), shard)
        loader = torch.utils.data.DataLoader(split, batch_sampler=rows, generator=generator, num_workers=workers,
                                             pin_memory=device.type == "cuda", persistent_workers=False)
    else:
        loader = torch.utils.data.DataLoader(
            split, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last,
            num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False)
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


class CropFlip:
    """Standard CIFAR augmentation on a whole batch (N, C, H, W), on the batch's device:
    a random H x W crop of the image padded by ``padding`` pixels on each side (reflect),
    and a horizontal flip with probability 1/2. The random numbers come from ``generator``
    (on the data's device), so a seed fixes them; no Python loop over images."""

    def __init__(self, generator: torch.Generator, padding: int = 4, flip: bool = True):
        self.generator, self.padding, self.flip = generator, int(padding), bool(flip)

    def __call__(self, x: torch.Tensor, of: int | None = None, start: int = 0) -> torch.Tensor:
        """x, or x as rows start:start + len(x) of a batch of `of` (one process's rows): the random numbers
        are drawn for the whole batch, so that every process draws the same and uses its rows of them."""
        n, c, h, w = x.shape
        p, dev = self.padding, x.device
        draw = (lambda t: t) if of is None else (lambda t: t[start:start + n])
        size = n if of is None else of
        if p:
            xp = F.pad(x, (p, p, p, p), mode="reflect")
            dy = draw(torch.randint(0, 2 * p + 1, (size,), generator=self.generator, device=dev))
            dx = draw(torch.randint(0, 2 * p + 1, (size,), generator=self.generator, device=dev))
            rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None].expand(n, c, h, w + 2 * p)
            cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :].expand(n, c, h, w)
            x = xp.gather(2, rows).gather(3, cols)
        if self.flip:
            flip = draw(torch.rand(size, generator=self.generator, device=dev)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def same_file(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and file_md5(a) == file_md5(b)


class Writer:
    """Collects planned writes, refuses to overwrite a different existing file
    unless ``force`` (identical ones are skipped), then writes them all.
    Each planned item is (destination, bytes) or (destination, source path)."""

    def __init__(self, force: bool = False, link: bool = False):
        self.force, self.link = force, link
        self.items: list[tuple[Path, bytes | Path]] = []

    def add(self, dst: Path, content: bytes | Path) -> None:
        self.items.append((Path(dst), content))

    def _identical(self, dst: Path, content) -> bool:
        if isinstance(content, Path):
            return dst.resolve() == content.resolve() or same_file(dst, content)
        return dst.stat().st_size == len(content) and file_md5(dst) == md5(content)

    def commit(self) -> dict[str, int]:
        todo, skipped, conflicts = [], 0, []
        for dst, content in self.items:
            if dst.exists() or dst.is_symlink():
                if dst.exists() and self._identical(dst, content):
                    skipped += 1
                    continue
                if not self.force:
                    conflicts.append(str(dst))
                    continue
            todo.append((dst, content))
        if conflicts:
            more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
            raise FileExistsError("refusing to overwrite existing different files: "
                                  + ", ".join(conflicts[:5]) + more + "; use --force to replace them")
        for dst, content in todo:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists() or dst.is_symlink():
                dst.unlink()
            tmp = dst.with_name(dst.name + ".frx.tmp")
            if isinstance(content, Path):
                if self.link:
                    os.symlink(content.resolve(), tmp)
                else:
                    shutil.copyfile(content, tmp)
            else:
                tmp.write_bytes(content)
            os.replace(tmp, dst)
        return {"written": len(todo), "skipped": skipped}
