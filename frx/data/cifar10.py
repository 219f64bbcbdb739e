"""CIFAR-10 in torchvision's layout: ``<root>/cifar-10-batches-py/`` with the
pickled ``data_batch_1..5`` and ``test_batch``. A subset imported from the
shared ``.npz`` is written in the same layout plus ``frx_subset.json``.

The full set as JPEG bytes (``cifar10-jpeg.npz``: lossy re-encodings of the
originals) is decoded once at import and written in the same layout plus
``frx_jpeg.json``; every record of a run on it says "CIFAR-10 (JPEG copies)".
The lossless first test images (``x_test`` of ``cifar10-subset.npz``) are stored
beside it as ``frx_lossless_test``: runs report their accuracy on them as a
second metric (``top1_lossless1k``), and on the same images' JPEG copies
(``top1_jpeg1k``), so the JPEG effect can be read directly."""
from __future__ import annotations

import json
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .cifar10_jpeg import decode_all, find_lossless, read_jpeg_npz, read_lossless
from .common import DataMissing, Splits, Writer, file_md5, log, root_path, tensor_split
from .registry import DataSpec, register

FOLDER = "cifar-10-batches-py"
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST = "test_batch"
SUBSET_MARKER = "frx_subset.json"
JPEG_MARKER = "frx_jpeg.json"
LOSSLESS_TEST = "frx_lossless_test"
JPEG_MD5 = "77cad84c5fe7cbacb551e8a3f5a45e2d"  # the shared cifar10-jpeg.npz (data README)
JPEG_NOTE = "CIFAR-10 (JPEG copies)"
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def batch_dir(root) -> Path:
    return root_path(root) / FOLDER


def missing_message(root, what: str = "is not") -> str:
    return (f"CIFAR-10 {what} in {batch_dir(root)}.\n"
            f"Import a local copy with one of:\n"
            f"  frx-data import cifar10 /path/to/cifar-10-batches-py --root {root}\n"
            f"  frx-data import cifar10 /path/to/cifar-10-python.tar.gz --root {root}\n"
            f"  frx-data import cifar10 /path/to/cifar10-jpeg.npz --root {root}     (the full set as JPEG copies)\n"
            f"  frx-data import cifar10 /path/to/cifar10-subset.npz --root {root}   (a real 10,000/1,000 subset)\n"
            f"or, with internet access, set dataset.download=true (torchvision downloads it).")


def _get(d: dict, key: str):
    return d[key] if key in d else d[key.encode()]


class _BatchUnpickler(pickle.Unpickler):
    """The official batches hold dicts, lists, strings and NumPy arrays; a pickle of anything else could run code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # bytes in protocol 2

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it holds a {module}.{name}, not only arrays and lists")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="latin1").load()
        x = np.asarray(_get(d, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(_get(d, "labels"), dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e}); import the data "
                         f"again with frx-data import cifar10") from None
    return x, y


def encode_batch(x_chw: np.ndarray, y: np.ndarray, label: str) -> bytes:
    d = {"batch_label": label, "labels": [int(v) for v in y],
         "data": np.ascontiguousarray(x_chw, dtype=np.uint8).reshape(len(y), 3072)}
    return pickle.dumps(d, protocol=2)


def subset_info(root) -> dict | None:
    p = batch_dir(root) / SUBSET_MARKER
    return json.loads(p.read_text()) if p.exists() else None


def jpeg_info(root) -> dict | None:
    p = batch_dir(root) / JPEG_MARKER
    return json.loads(p.read_text()) if p.exists() else None


def present(root) -> bool:
    d = batch_dir(root)
    return (d / TEST).exists() and (d / TRAIN[0]).exists()


def load_arrays(root, download: bool = False):
    d = batch_dir(root)
    if not present(root):
        if not download:
            raise DataMissing(missing_message(root))
        import torchvision

        torchvision.datasets.CIFAR10(str(root_path(root)), train=True, download=True)
    sub = subset_info(root)
    listed = sub or jpeg_info(root) or {}  # an import of fewer images lists the batches it wrote
    names = listed["train_batches"] if "train_batches" in listed else [n for n in TRAIN if (d / n).exists()]
    if "train_batches" not in listed and len(names) < len(TRAIN):
        raise DataMissing(missing_message(root, "is incomplete (missing " +
                                          ", ".join(n for n in TRAIN if n not in names) + ")"))
    parts = [read_batch(d / n) for n in names]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = read_batch(d / TEST)
    return torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte), sub


def load(cfg) -> Splits:
    xtr, ytr, xte, yte, sub = load_arrays(cfg.root, bool(cfg.get("download", False)))
    train = tensor_split(xtr, ytr, cfg, cfg.get("limit_train"))
    val = tensor_split(xte, yte, cfg, cfg.get("limit_val"))
    info = {"source": "cifar10", "train_size": len(train), "val_size": len(val), "val_is": "test set",
            "subset": sub is not None or len(train) < 50000 or len(val) < 10000}
    extra = {}
    jpeg = jpeg_info(cfg.root)
    if jpeg is not None:
        info.update(jpeg_copies=True, data_note=jpeg["note"], val_is="test set (JPEG copies)")
        lossless = batch_dir(cfg.root) / LOSSLESS_TEST
        if lossless.exists():
            xl, yl = read_batch(lossless)
            extra["lossless1k"] = tensor_split(torch.from_numpy(xl), yl, cfg, cfg.get("limit_val"))
            # the JPEG copies of the same test images: the pair shows the JPEG effect exactly
            extra["jpeg1k"] = tensor_split(xte[:len(yl)], yte[:len(yl)], cfg, cfg.get("limit_val"))
            info["second_test_sets"] = {
                "lossless1k": f"the lossless first {len(yl)} test images (official order)",
                "jpeg1k": f"the JPEG copies of the same {len(yl)} test images"}
        log.info("%s", jpeg["note"])
    if sub is not None:
        info["subset_note"] = sub.get("note", "")
        log.warning("CIFAR-10 in %s is a SUBSET (%s): %d train / %d test images",
                    batch_dir(cfg.root), sub.get("note", ""), len(train), len(val))
    else:
        log.info("CIFAR-10: %d train / %d test images", len(train), len(val))
    return Splits(train, val, info, extra)


# ---- the full set as JPEG bytes ---------------------------------------------------------------

def import_jpeg(src: Path, root, force: bool = False, lossless: Path | None = None, jobs: int | None = None,
                progress: bool = True) -> dict:
    """Decode a ``cifar10-jpeg.npz`` once and store it in torchvision's layout (see the module doc).
    ``lossless``: the .npz with the lossless first test images (default: found beside ``src``)."""
    a = read_jpeg_npz(src)  # every check before any decoding
    lossless = lossless or find_lossless(src)
    xl = yl = None
    if lossless is not None:
        xl, yl = read_lossless(Path(lossless), a["y_test"])
    dst = batch_dir(root)
    if (dst / SUBSET_MARKER).exists() and not force:
        raise FileExistsError(f"{dst} holds a CIFAR-10 subset; use --force to replace it by the JPEG copies")
    md5 = file_md5(src)
    if md5 != JPEG_MD5:
        log.warning("%s: MD5 %s is not the published file's (%s); its structure is fine, importing it",
                    src, md5, JPEG_MD5)
    xtr = decode_all(a["train_jpeg"], a["train_offsets"], "decode train JPEGs", jobs, progress=progress)
    xte = decode_all(a["test_jpeg"], a["test_offsets"], "decode test JPEGs", jobs, progress=progress)
    ytr, yte = a["y_train"], a["y_test"]
    writer = Writer(force=force)
    per = 10000
    batches = [TRAIN[i // per] for i in range(0, len(ytr), per)]
    for i in range(0, len(ytr), per):
        writer.add(dst / TRAIN[i // per], encode_batch(xtr[i:i + per].transpose(0, 3, 1, 2), ytr[i:i + per],
                                                     f"training batch {i // per + 1} of 5 (JPEG copies)"))
    writer.add(dst / TEST, encode_batch(xte.transpose(0, 3, 1, 2), yte, "testing batch 1 of 1 (JPEG copies)"))
    writer.add(dst / "batches.meta", pickle.dumps(
        {"num_cases_per_batch": per, "label_names": LABEL_NAMES, "num_vis": 3072}, protocol=2))
    if xl is not None:
        writer.add(dst / LOSSLESS_TEST, encode_batch(xl.transpose(0, 3, 1, 2), yl, "lossless first test images"))
    note = (f"{JPEG_NOTE}: {len(ytr)} training and {len(yte)} test images decoded from {src.name} "
            f"(lossy re-encodings of the originals, mean PSNR 30.5 dB)")
    writer.add(dst / JPEG_MARKER, json.dumps(
        {"source": str(src), "md5": md5, "md5_is_published": md5 == JPEG_MD5, "train": int(len(ytr)),
         "test": int(len(yte)), "train_batches": batches, "lossless_test": int(len(yl)) if yl is not None else 0,
         "lossless_source": str(lossless) if lossless is not None else None, "note": note}, indent=1).encode())
    result = writer.commit()
    if (dst / SUBSET_MARKER).exists():
        (dst / SUBSET_MARKER).unlink()
    if xl is None and (dst / LOSSLESS_TEST).exists():  # from an earlier import: it belongs to other files
        (dst / LOSSLESS_TEST).unlink()
    return {**result, "lossless_test": 0 if yl is None else len(yl)}


def import_files(src, root, force: bool = False, lossless=None, jobs: int | None = None,
                 progress: bool = True) -> dict:
    """Import CIFAR-10 from the official ``cifar-10-batches-py`` folder, the official
    ``.tar.gz``, an ``.npz`` with x_train/y_train/x_test/y_test (uint8, HWC), or the full
    set as JPEG bytes (``cifar10-jpeg.npz``, see ``import_jpeg``; ``lossless``, ``jobs`` and
    ``progress`` are its options)."""
    src = Path(src).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    try:
        return _import_files(src, root, force, lossless, jobs, progress)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, KeyError, pickle.UnpicklingError) as e:
        raise ValueError(f"{src} is not what its name says ({type(e).__name__}: {str(e).partition(chr(10))[0]})") \
            from None
    except ValueError as e:  # NumPy's do not name the file
        raise ValueError(str(e) if str(src) in str(e) else f"{src}: {e}") from None


def _import_files(src: Path, root, force: bool, lossless, jobs: int | None, progress: bool) -> dict:
    if src.suffix == ".npz" and "train_jpeg" in np.load(src).files:
        return import_jpeg(src, root, force=force, lossless=Path(lossless).expanduser() if lossless else None,
                           jobs=jobs, progress=progress)
    if lossless:
        raise ValueError("--lossless-test goes with the JPEG copies (cifar10-jpeg.npz) only")
    dst = batch_dir(root)
    writer = Writer(force=force)
    if src.is_dir():
        for n in TRAIN + [TEST, "batches.meta"]:
            if not (src / n).exists():
                raise FileNotFoundError(f"{src} is not a cifar-10-batches-py folder: {n} is missing")
            writer.add(dst / n, src / n)
        full = True
    elif src.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(src) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers()
                       if m.isfile() and Path(m.name).parent.name == FOLDER}
            for n in TRAIN + [TEST, "batches.meta"]:
                if n not in members:
                    raise FileNotFoundError(f"{src} has no {FOLDER}/{n}")
                writer.add(dst / n, tar.extractfile(members[n]).read())
        full = True
    elif src.suffix == ".npz":
        z = np.load(src)
        xtr, ytr, xte, yte = (z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        if xtr.shape[1:] != (32, 32, 3) or xte.shape[1:] != (32, 32, 3):
            raise ValueError(f"{src}: expected HWC 32x32x3 uint8 images, got {xtr.shape}, {xte.shape}")
        xtr, xte = xtr.transpose(0, 3, 1, 2), xte.transpose(0, 3, 1, 2)
        batches = []
        for i in range(0, len(ytr), 10000):
            batches.append(TRAIN[i // 10000])
            writer.add(dst / TRAIN[i // 10000],
                       encode_batch(xtr[i:i + 10000], ytr[i:i + 10000], f"training batch {i // 10000 + 1} of 5"))
        writer.add(dst / TEST, encode_batch(xte, yte, "testing batch 1 of 1"))
        writer.add(dst / "batches.meta", pickle.dumps(
            {"num_cases_per_batch": 10000, "label_names": LABEL_NAMES, "num_vis": 3072}, protocol=2))
        note = (f"{len(ytr)} training and {len(yte)} test images from {src.name} "
                f"(the first ones in the official order)")
        writer.add(dst / SUBSET_MARKER, json.dumps(
            {"source": str(src), "train": int(len(ytr)), "test": int(len(yte)),
             "train_batches": batches, "note": note}, indent=1).encode())
        full = False
    else:
        raise ValueError(f"{src}: expected a cifar-10-batches-py folder, a .tar.gz or an .npz")
    if full and (dst / SUBSET_MARKER).exists():
        if not force:
            raise FileExistsError(f"{dst} holds a CIFAR-10 subset; use --force to replace it by the full set")
    result = writer.commit()
    if full:  # the original images: no subset, no JPEG copies
        for marker in (SUBSET_MARKER, JPEG_MARKER, LOSSLESS_TEST):
            if (dst / marker).exists():
                (dst / marker).unlink()
    return result


def describe(root) -> dict[str, str]:
    if not present(root):
        return {}
    sub, jpeg = subset_info(root), jpeg_info(root)
    return {"cifar10": f"CIFAR-10 in {batch_dir(root)}" + (f" (SUBSET: {sub['note']})" if sub else "")
            + (f" ({jpeg['note']})" if jpeg else "")}


def notes(root, result: dict) -> list[str]:
    """What `frx-data import cifar10` adds after the count of files: JPEG copies, a subset."""
    jpeg, sub = jpeg_info(root), subset_info(root)
    lossless = result.get("lossless_test", 0) or "none (no lossless file beside it; see --lossless-test)"
    return ([f"note: {jpeg['note']}; lossless first test images: {lossless}"] if jpeg else []) \
        + ([f"note: this is a SUBSET of CIFAR-10 ({sub['note']})"] if sub else [])


register(DataSpec("cifar10", load, describe, import_files, where=batch_dir, notes=notes))
