"""frx-eval: the task's metric for a packed model file.

Two ways to name the data:

    frx-eval FILE.frx [model=NAME] dataset=NAME [more overrides] [--split train]
        a data set config, as frx-train takes it; scores the validation split (or,
        with --split train, the training images without augmentation) with the
        task's own metric (top-1, Dice, FID).
    frx-eval FILE.frx [--model NAME] --images DIR --masks DIR [--size HxW] [--limit N]
        a folder of segmentation images and masks paired in name order (PNG, JPEG,
        GIF): image = pixels / 255, mask = pixels above half its maximum,
        prediction = argmax over the classes, Dice of the foreground per image
        (2|A∩B| + eps) / (|A| + |B| + eps) with eps = 1e-6, averaged; one image per
        batch (a model whose BatchNorm uses batch statistics sees each image alone).

The model defaults to the one named in the file's header. `--json OUT` also writes
the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import models
from .files import atomic_write_bytes
from .fr import CorruptFile, unpack, unpack_meta

SPLITS = {"val": "validation", "train": "training"}  # frx-eval --split with a config
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff")
EPS = 1e-6


class EvalError(ValueError):
    """Bad input to frx-eval; the message says what, in one line."""


def list_images(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def pairs(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths, paired in sorted name order; the two folders must hold as many."""
    for d in (images, masks):
        if not d.is_dir():
            raise EvalError(f"{d}: no such directory")
    imgs, msks = list_images(images), list_images(masks)
    if not imgs:
        raise EvalError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    if len(imgs) != len(msks):
        raise EvalError(f"{images} holds {len(imgs)} images but {masks} holds {len(msks)} masks")
    return list(zip(imgs, msks))


def read_pair(image: Path, mask: Path, size: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(image float (1, 3, H, W) in [0, 1], mask int64 (H, W) in {0, 1}); resized to size (H, W) if given."""
    img, msk = Image.open(image).convert("RGB"), Image.open(mask).convert("L")
    if img.size != msk.size:
        raise EvalError(f"{image.name} is {img.size[0]}x{img.size[1]} but {mask.name} is {msk.size[0]}x{msk.size[1]}")
    if size is not None:
        img = img.resize((size[1], size[0]), Image.BILINEAR)
        msk = msk.resize((size[1], size[0]), Image.NEAREST)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    m = np.asarray(msk)
    return x.contiguous(), torch.from_numpy(m > m.max() / 2).long()


def dice(pred: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> float:
    """Dice of two binary masks: (2|A∩B| + eps) / (|A| + |B| + eps)."""
    pred, target = pred.bool(), target.bool()
    inter = (pred & target).sum().item()
    return (2 * inter + eps) / (pred.sum().item() + target.sum().item() + eps)


@torch.no_grad()
def folder_dice(model: torch.nn.Module, items, size=None, progress=print) -> list[float]:
    """Per-image Dice of the foreground (class 1) of `model` on (image, mask) paths, one image per batch."""
    model.eval()
    scores = []
    for i, (image, mask) in enumerate(items, 1):
        t0 = time.time()
        x, y = read_pair(image, mask, size)
        scores.append(dice(model(x)[0].argmax(0) == 1, y == 1))
        if progress:
            progress(f"[{i}/{len(items)}] {image.name}  dice {scores[-1]:.5f}  ({time.time() - t0:.1f} s)")
    return scores


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text)
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 320x480), got {text!r}")
    return int(m[1]), int(m[2])


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def load_packed(model: torch.nn.Module, path: Path, name: str) -> torch.nn.Module:
    """`model` with the packed file's weights, in eval mode."""
    try:
        model.load_state_dict(unpack(path))
    except RuntimeError as e:  # torch's text: a title line, then what is missing or mismatched
        lines = str(e).strip().splitlines()
        raise EvalError(f"{path} does not fit model {name}: {lines[-1].strip()}") from None
    return model.eval()


def _config_eval(path: Path, overrides: list[str], model_name: str, split: str = "val") -> tuple[str, str, float, dict]:
    """(metric name, model, value, extra) on a split ("val" or "train") of a data set config."""
    from . import data, tasks
    from .config import UserError, compose, task_name, validate

    if not any(o.startswith("model=") for o in overrides):
        overrides = [f"model={model_name}", *overrides]
    try:
        cfg = validate(compose(overrides))
        tasks.check_compatible(cfg.model, cfg.dataset)
        splits = data.load(cfg.dataset)
    except (UserError, ValueError, TypeError, KeyError, FileNotFoundError) as e:
        raise EvalError(" ".join(str(e).split())) from None  # one line
    except Exception as e:  # Hydra's errors for an unknown group or option
        raise EvalError(f"bad overrides {' '.join(overrides)}: {str(e).splitlines()[0]}") from None
    task = tasks.build(task_name(cfg), cfg, splits, torch.device("cpu"), data.batches)
    model = load_packed(models.build_from_config(cfg.model), path, cfg.model.name)
    samples = getattr(splits, split)
    value = task.evaluate(model, samples)
    return task.metric, cfg.model.name, value, {"dataset": cfg.dataset.name, "split": split,
                                                  "samples": len(samples), "overrides": overrides}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frx-eval", description="The task's metric for a packed model file.")
    parser.add_argument("file", type=Path, help="packed model (.frx)")
    parser.add_argument("overrides", nargs="*", help="config overrides as frx-train takes them (dataset=NAME ...)")
    parser.add_argument("--model", help="model name (default: the one in the file's header)")
    parser.add_argument("--images", type=Path, help="folder of images (segmentation)")
    parser.add_argument("--masks", type=Path, help="folder of masks, paired with --images in name order")
    parser.add_argument("--size", type=parse_size, help="resize images and masks to HxW (default: as stored)")
    parser.add_argument("--limit", type=positive, help="only the first N images")
    parser.add_argument("--split", choices=list(SPLITS), default="val",
                        help="with a config: score its validation split (default) or its training images, "
                             "unaugmented (dataset.limit_train=N takes the first N)")
    parser.add_argument("--threads", type=positive, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    args = parser.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"frx-eval: error: {msg}", file=sys.stderr)
        return 2

    folder = args.images is not None or args.masks is not None
    try:  # every check before any work
        if not args.file.is_file():
            raise EvalError(f"{args.file}: no such file")
        meta = unpack_meta(args.file).get("meta", {})
        name = args.model or meta.get("model")
        if not name:
            raise EvalError(f"{args.file} does not name its model: pass --model")
        if name not in models.names():
            raise EvalError(f"unknown model {name!r}; known models: {', '.join(models.names())}")
        if args.json is not None and args.json.exists() and not args.overwrite:
            raise EvalError(f"{args.json} exists; pass --overwrite to replace it")
        if folder:
            if args.overrides:
                raise EvalError("give either --images/--masks or config overrides, not both")
            if args.split != "val":
                raise EvalError("--split goes with a config (dataset=NAME), not with --images/--masks")
            if args.images is None or args.masks is None:
                raise EvalError("--images and --masks go together")
            if models.spec(name).task != "segmentation":
                raise EvalError(f"--images/--masks score segmentation; {name} is a {models.spec(name).task} model")
            items = pairs(args.images, args.masks)[:args.limit]
        else:
            if not args.overrides:
                raise EvalError("name the data: dataset=NAME (a config), or --images DIR --masks DIR")
            if args.size or args.limit:
                raise EvalError("--size and --limit go with --images/--masks; with a config use "
                                f"dataset.resize=[H,W] / dataset.limit_{args.split}=N")
    except (EvalError, CorruptFile) as e:
        return fail(str(e))

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    try:
        if folder:
            model = load_packed(models.build(name), args.file, name)
            print(f"{args.file}: {name}, {len(items)} images from {args.images}"
                  f"{'' if args.size is None else ' at %dx%d' % args.size}", flush=True)
            scores = folder_dice(model, items, args.size, progress=lambda s: print(s, flush=True))
            metric, value = "dice", float(np.mean(scores))
            extra = {"images": len(items), "size": list(args.size) if args.size else "as stored",
                     "per_image": {img.name: s for (img, _), s in zip(items, scores)}}
        else:
            metric, name, value, extra = _config_eval(args.file, args.overrides, name, args.split)
    except EvalError as e:
        return fail(str(e))
    n = f"{extra['images']} images" if folder else f"{extra['samples']} {extra['dataset']} {SPLITS[args.split]} samples"
    print(f"{metric} {value:.4f} ({value:.6f}) for {name} from {args.file}, mean over {n}")
    if args.json is not None:
        result = {"file": str(args.file), "model": name, "metric": metric, "value": value,
                  "seconds": round(time.time() - t0, 1), **extra}
        atomic_write_bytes(args.json, (json.dumps(result, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
