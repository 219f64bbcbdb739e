"""Import FR checkpoints made by other code into frx.

`frereg`: the FR authors' released Carvana UNet (`unet_fr.pt`, or the `unet_fr.tar.xz`
that holds it). It is a dict of sparse COO tensors, one per FR weight, holding the
frequency coefficients T (the spatial weight is the orthonormal DCT-III over all
dims). Each tensor's stored positions must be exactly frx's mask for its count, so
the import is a re-encoding, never a re-ordering; the model is `unet_frereg`.

    frx-convert frereg unet_fr.tar.xz u.frx [--dtype float16|float32] [--overwrite]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import sys
import tarfile
import warnings
import zlib
from pathlib import Path

import torch
from torch import nn

from . import models
from .fr import FR, corner_mask, kind_of, pack, regularize, set_k
from .fr.codec import DTYPES

MODEL = "unet_frereg"
_TAR_SUFFIXES = (".tar", ".tar.xz", ".txz", ".tar.gz", ".tgz")
# authors' name -> frx name, where they differ (their OutConv wraps the final conv)
FREREG_NAMES = {"outc.conv.weight": "outc.weight"}


class ConvertError(ValueError):
    """The source is not a checkpoint this converter reads; the message says why, in one line."""


def _load_bytes(src: Path) -> bytes:
    """The bytes of the .pt file: read directly, or from the one .pt member of a tar archive."""
    if not src.is_file():
        raise ConvertError(f"{src}: no such file")
    if not src.name.endswith(_TAR_SUFFIXES) and not _is_tar(src):
        return src.read_bytes()
    try:
        with tarfile.open(src, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".pt")]
            if len(members) != 1:
                raise ConvertError(f"{src}: expected one .pt file in the archive, found {len(members)}")
            return tar.extractfile(members[0]).read()
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, OSError) as e:
        raise ConvertError(f"{src}: unreadable archive, truncated or corrupt ({type(e).__name__}: {e})") from None


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (EOFError, lzma.LZMAError, zlib.error, OSError):
        return False


def read_frereg(src) -> dict[str, torch.Tensor]:
    """The authors' {name: sparse COO tensor} dict, loaded with weights_only=True."""
    src = Path(src)
    data = _load_bytes(src)
    try:
        with warnings.catch_warnings():  # weights_only validates sparse tensors, and says so
            warnings.filterwarnings("ignore", message="Validating sparse tensor invariants")
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types (and long texts) for a file that is not a torch checkpoint
        raise ConvertError(f"{src}: not a readable torch checkpoint of tensors "
                           f"(torch.load with weights_only=True failed: {type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConvertError(f"{src}: expected a dict of tensors, got {type(state).__name__}")
    return state


def check_positions(name: str, t: torch.Tensor) -> int:
    """k of a sparse coefficient tensor whose stored positions are exactly frx's mask for k.

    The mask is over all dims (the authors transform every dim); ConvertError otherwise."""
    if t.layout != torch.sparse_coo:
        layout = "dense" if t.layout == torch.strided else str(t.layout)
        raise ConvertError(f"{name}: a {layout} tensor; an FR checkpoint stores sparse COO coefficients")
    if not t.dtype.is_floating_point:
        raise ConvertError(f"{name}: dtype {t.dtype}, expected floating point coefficients")
    idx = t.coalesce().indices()  # coalesced indices are sorted row-major, i.e. lexicographically
    k = idx.shape[1]
    if k == 0:
        raise ConvertError(f"{name}: keeps no coefficient")
    expected = torch.nonzero(corner_mask(tuple(t.shape), k)).T  # row-major too
    if idx.shape != expected.shape or not torch.equal(idx, expected):
        raise ConvertError(f"{name}: its {k} stored positions are not frx's mask for k={k} "
                           f"(the first {k} indices of shape {tuple(t.shape)} in L1-then-lexicographic order)")
    return k


def check_frereg(state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], src="checkpoint"
                 ) -> dict[str, tuple[torch.Tensor, int]]:
    """{frx weight name: (dense coefficients, k)}: the authors' tensors checked against the FR weights' shapes."""
    theirs = {ours: key for key, ours in FREREG_NAMES.items()}
    frx_name = {theirs.get(name, name): name for name in shapes}  # the authors' key -> frx weight name
    missing, extra = sorted(set(frx_name) - set(state)), sorted(set(state) - set(frx_name))
    if missing or extra:
        what = "; ".join(s for s in (f"missing {', '.join(missing)}" if missing else "",
                                     f"unexpected {', '.join(extra)}" if extra else "") if s)
        raise ConvertError(f"{src}: not the authors' UNet checkpoint ({what})")
    out = {}
    for key, name in frx_name.items():
        t = state[key]
        if tuple(t.shape) != shapes[name]:
            raise ConvertError(f"{src}: {key}: shape {tuple(t.shape)}, {MODEL} expects {shapes[name]}")
        try:
            k = check_positions(key, t)
        except ConvertError as e:
            raise ConvertError(f"{src}: {e}") from None
        dense = t.to_dense().float()
        if not bool(torch.isfinite(dense).all()):
            raise ConvertError(f"{src}: {key} has non-finite coefficients (nan or inf)")
        out[name] = (dense, k)
    return out


def from_frereg(src) -> tuple[nn.Module, FR]:
    """(unet_frereg with FR applied and the authors' coefficients and k, in eval mode; its FR handle).

    Each k is set with `frx.fr.set_k`: the model is for evaluation and packing. Training it
    further under `fr` would let the schedule set every k again (from beta = 1)."""
    state = read_frereg(src)
    model = models.build(MODEL)
    shapes = {f"{n}.weight": tuple(m.weight.shape) for n, m in model.named_modules() if kind_of(m)}
    coefficients = check_frereg(state, shapes, src)  # every check before the slow part
    fr = regularize(model)
    with torch.no_grad():
        for name, module, _ in fr.tensors:
            module.parametrizations.weight.original.copy_(coefficients[name][0])
    set_k(model, {name: k for name, (_, k) in coefficients.items()})
    return model.eval(), fr


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frx-convert", description="Convert another code's FR checkpoint "
                                     "into an frx packed file.")
    sub = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    p = sub.add_parser("frereg", help="the FR authors' released UNet (unet_fr.pt or unet_fr.tar.xz) -> "
                                      f"{MODEL}")
    p.add_argument("src", type=Path, help="unet_fr.pt, or the tar archive that holds it")
    p.add_argument("out", type=Path, help="the packed file to write (.frx)")
    p.add_argument("--dtype", choices=DTYPES, default="float16", help="storage of the kept coefficients")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"frx-convert: error: {msg}", file=sys.stderr)
        return 2

    if args.out.exists() and not args.overwrite:
        return fail(f"{args.out} exists; pass --overwrite to replace it")
    if args.out.is_dir():
        return fail(f"{args.out} is a directory")
    try:
        model, fr = from_frereg(args.src)
    except ConvertError as e:
        return fail(str(e))
    meta = {"model": MODEL, "source": "frereg", "source_file": args.src.name, "source_md5": _md5(args.src)}
    size = pack(model, args.out, dtype=args.dtype, meta=meta, overwrite=args.overwrite)
    print(f"{args.out}: {MODEL}, {len(fr.tensors)} FR tensors, {fr.kept():,} of {fr.dense():,} weights kept, "
          f"{size:,} bytes ({args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
