"""``frx-data``: import local copies of the data sets into the data root, make
synthetic Carvana-like images, list what is present."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import present, specs
from .common import ChecksumError
from .synthetic_carvana import make_synthetic_carvana


def default_root() -> str:
    return os.environ.get("FRX_DATA", "./data")


def main(argv: list[str] | None = None) -> int:
    root_help = "data root (default: $FRX_DATA, else ./data)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    p = argparse.ArgumentParser(prog="frx-data", description=__doc__)
    p.add_argument("--root", default=default_root(), help=root_help)
    sub = p.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", parents=[common], help="import a local copy of a data set into the root")
    importable = {d.name: d for d in specs() if d.import_files is not None}
    imp.add_argument("dataset", choices=list(importable))
    imp.add_argument("path", help="mnist: folder with the 4 .gz files; cifar10: cifar-10-batches-py folder, "
                                  "cifar-10-python.tar.gz, cifar10-jpeg.npz (the full set as JPEG copies) or a "
                                  "subset .npz; carvana: folder with train/ and "
                                  "train_masks/ (or train.zip and train_masks.zip)")
    imp.add_argument("--force", action="store_true", help="replace existing files that differ")
    imp.add_argument("--link", action="store_true", help="carvana: symlink the files instead of copying")
    imp.add_argument("--lossless-test", default=None, metavar="NPZ",
                     help="cifar10-jpeg.npz: .npz whose x_test/y_test are the lossless first test images "
                          "(default: cifar10-subset.npz beside it, when there)")
    imp.add_argument("--jobs", type=int, default=None,
                     help="cifar10-jpeg.npz: decoding processes (default: cores, <= 8)")
    imp.add_argument("--no-verify", action="store_true",
                     help="mnist: skip the check of the published MD5 checksums")
    syn = sub.add_parser("make-synthetic-carvana", parents=[common],
                         help="write synthetic car-and-mask images in the Carvana (Kaggle) layout")
    syn.add_argument("dest_root", nargs="?", default=None, help="data root (default: --root)")
    syn.add_argument("--n", type=int, default=16, help="number of cars (default 16)")
    syn.add_argument("--views", type=int, default=4, help="images per car (default 4)")
    syn.add_argument("--size", type=int, nargs=2, default=[320, 480], metavar=("H", "W"))
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--subdir", default="carvana_synthetic",
                     help="folder under the root (default carvana_synthetic; the real data set uses carvana)")
    syn.add_argument("--force", action="store_true")
    sub.add_parser("list", parents=[common], help="list the data sets present in the root")
    a = p.parse_args(argv)
    try:
        if a.cmd == "import":
            d = importable[a.dataset]
            options = {"force": a.force, "verify": not a.no_verify, "lossless": a.lossless_test, "jobs": a.jobs,
                       "link": a.link}
            r = d.import_files(a.path, a.root, **{k: v for k, v in options.items() if k in d.import_options()})
            print(f"{a.dataset}: {r['written']} files written, {r['skipped']} identical skipped -> {d.where(a.root)}")
            for line in d.notes(a.root, r) if d.notes else []:
                print(line)
        elif a.cmd == "make-synthetic-carvana":
            out = Path(a.dest_root or a.root).expanduser() / a.subdir
            r = make_synthetic_carvana(out, n=a.n, views=a.views, size=a.size, seed=a.seed, force=a.force)
            print(f"synthetic carvana: {a.n} cars x {a.views} views, {r['written']} files written -> {out}")
        else:
            found = present(a.root)
            print(f"data root {Path(a.root).expanduser().resolve()}:")
            for name, what in found.items():
                print(f"  {name:24s} {what}")
    except (OSError, ChecksumError, ValueError) as e:  # OSError: missing, existing, unwritable, full disk
        print(f"frx-data: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
