"""`frx-fid` (python -m frx.fid_checks): does frx's MNIST FID behave like an FID, and what do the
generators of finished runs score under a second extractor?

`checks`: real test images against real training images give a small distance; blurred digits a
distance that grows with the blur; Gaussian noise and one digit repeated a large one; and a second,
independently trained extractor (other seed, half the width) ranks them the same way.
`frx-fid --samples 10000` prints that table (and, with `--runs`, rescores the generators of finished
runs with both extractors).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Iterable

import torch
from omegaconf import OmegaConf
from torch import nn

from . import data, models, record, tasks
from .config import compose
from .fr import unpack
from .tasks.fid import MEAN, NAME, STD, for_dataset

# The second extractor of `checks`: trained independently (another seed) with another width.
SECOND = {"seed": 1, "width": 16, "num_features": 64}

# ---- checks: does this FID behave like one? ---------------------------------------------------

BLUR_SIGMAS = (0.5, 1.0, 2.0)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (N, 1, H, W) images (kernel 2*ceil(3 sigma)+1)."""
    from torchvision.transforms.functional import gaussian_blur

    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(x, [k, k], [sigma, sigma])


def check_sets(train: torch.Tensor, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The image sets that `checks` scores against real test images, from (N, 1, 28, 28) training
    images in [0, 1]: n real ones; the same blurred at each of BLUR_SIGMAS; Gaussian noise with
    MNIST's pixel mean and std (clipped to [0, 1]); the first training digit repeated n times."""
    g = torch.Generator().manual_seed(seed)
    real = train[torch.randperm(len(train), generator=g)[:n]]
    sets = {"real train": real}
    sets.update({f"blur sigma={s:g}": blur(real, s) for s in BLUR_SIGMAS})
    sets["gaussian noise"] = (MEAN + STD * torch.randn(real.shape, generator=g)).clamp(0, 1)
    sets["one digit repeated"] = real[:1].expand_as(real).contiguous()
    return sets


def batched(x: torch.Tensor, bs: int = 500) -> Iterable[torch.Tensor]:
    return (x[i:i + bs] for i in range(0, len(x), bs))


def checks(extractors: dict[str, nn.Module], train: torch.Tensor, test: torch.Tensor, n: int,
           seed: int = 0) -> dict[str, dict[str, float]]:
    """{set name: {extractor name: FID(first n test images, set)}} for the sets of `check_sets`."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    sets = check_sets(train, n, seed)
    table: dict[str, dict[str, float]] = {name: {} for name in sets}
    with torch.no_grad():
        for e, ex in extractors.items():
            metric = FrechetInceptionDistance(feature=ex, reset_real_features=False, normalize=True)
            for x in batched(test[:n]):  # the real features, once per extractor
                metric.update(x, real=True)
            for name, imgs in sets.items():
                for x in batched(imgs):
                    metric.update(x, real=False)
                table[name][e] = float(metric.compute())
                metric.reset()  # forgets the fake features only
    return table


def ranking(table: dict[str, dict[str, float]], extractor: str) -> list[str]:
    """Row names of a `checks` (or rescoring) table, best (smallest FID) first, under one extractor."""
    return sorted(table, key=lambda r: table[r][extractor])


def kendall_tau(table: dict[str, dict[str, float]], a: str, b: str) -> float:
    """Rank agreement of two extractors' columns: 1 = same order, -1 = reversed."""
    rows = list(table)
    pairs = [(r, s) for i, r in enumerate(rows) for s in rows[i + 1:]]
    agree = sum(1 if (table[r][a] - table[s][a]) * (table[r][b] - table[s][b]) > 0 else -1 for r, s in pairs)
    return agree / max(len(pairs), 1)


# ---- command line -------------------------------------------------------------------------------

def _vae_data(root):
    """The data of the VAE rows (full MNIST, 28x28, [0, 1]): (resolved dataset config, splits)."""
    cfg = compose(["experiment=table4/vae_ref", f"dataset.root={Path(root).resolve()}"])
    return OmegaConf.to_container(cfg.dataset, resolve=True), data.load(cfg.dataset)


def _two_extractors(dataset_cfg, splits, cache_dir, epochs: int, log) -> dict[str, nn.Module]:
    """The FID network of the Table 4 runs (the very file they use, trained if missing) and the
    second one of SECOND, trained the same way on the same data."""
    out = {}
    for name, arch in ((NAME, {}), ("second: seed 1, width 16, 64 features", SECOND)):
        model, info = for_dataset(dataset_cfg, cache_dir, epochs, torch.device("cpu"), log=log, splits=splits,
                                  **arch)
        log(f"{name}: val top-1 {info['fid_extractor_val_top1']:.4f}, {info['fid_extractor_file']}")
        out[name] = model
    return out


def _packed_file(rec) -> Path | None:
    """The pack a finished run left in its run dir: float32 where it was kept (run.keep_all=true), else the
    float16 one every run keeps (its FID is the record's value_fp16); None if neither is there."""
    run_dir = Path(rec.config["run"]["dir"])
    return next((p for p in (run_dir / "model.float32.frx", run_dir / "model.float16.frx") if p.exists()), None)


def check_runs(records: list[Path]) -> None:
    """FileNotFoundError naming the first run whose packed model (what `rescore` reads) is gone."""
    for rec_path in records:
        rec = record.read(rec_path)
        if _packed_file(rec) is None:
            raise FileNotFoundError(f"{Path(rec.config['run']['dir'])} (the run directory of {rec_path}) holds no "
                                    f"model.float32.frx or model.float16.frx")


def rescore(records: list[Path], extractors: dict[str, nn.Module], root, n: int) -> dict[str, dict[str, float]]:
    """FID of each finished run's generator (unpacked from its packed file in its run dir) under every
    extractor, scored the way the run scored it (its task's `evaluate`: its own data pipeline, e.g. the
    DCGAN's 64x64 images, the same latent vectors, its autocast) against the first n test images. The
    data are read from the record's data root where it still exists, else from root."""
    check_runs(records)
    table = {}
    for rec_path in records:
        rec = record.read(rec_path)
        cfg = OmegaConf.create(rec.config)
        if not Path(str(cfg.dataset.root)).is_dir():
            cfg.dataset.root = str(Path(root).resolve())
        cfg.scale.fid_samples = n
        splits = data.load(cfg.dataset)
        task = tasks.build(rec.task, cfg, splits, torch.device("cpu"), data.batches)
        model = models.build_from_config(cfg.model)
        model.load_state_dict(unpack(_packed_file(rec)))
        scores = {}
        for name, extractor in extractors.items():
            task.extractor = extractor  # in place of the run's own FID network
            scores[name] = task.evaluate(model, splits.val)
        table[Path(rec_path).name[: -len(".json")]] = scores
    return table


def _print_table(title: str, table: dict[str, dict[str, float]]) -> None:
    names = list(next(iter(table.values())))
    print(f"\n{title}")
    print(f"{'':40s}" + "".join(f"{e[:26]:>28s}" for e in names))
    for row, vals in table.items():
        print(f"{row:40s}" + "".join(f"{vals[e]:28.2f}" for e in names))
    for e in names[1:]:
        same = ranking(table, names[0]) == ranking(table, e)
        print(f"ranking by {e} vs {names[0]}: Kendall tau {kendall_tau(table, names[0], e):.2f}"
              + (" (same order)" if same else f"; orders: {ranking(table, names[0])} vs {ranking(table, e)}"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="frx-fid",
                                description="FID sanity checks on MNIST with two independently trained extractors")
    p.add_argument("--root", default=os.environ.get("FRX_DATA", "./data"), help="data root holding MNIST")
    p.add_argument("--samples", type=int, default=10000, help="images per FID (default 10,000)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of each extractor")
    p.add_argument("--cache-dir", default=None, help="default $FRX_CACHE_DIR, else <root>/cache (as frx-train)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs", nargs="*", default=[], help="run records (JSON) whose generators to rescore")
    p.add_argument("--skip-checks", action="store_true", help="with --runs: only rescore the runs")
    a = p.parse_args(argv)
    if not 2 <= a.samples <= 10000:
        p.error("--samples must be in [2, 10000] (MNIST's test set has 10,000 images)")
    if a.skip_checks and not a.runs:
        p.error("--skip-checks needs --runs")
    missing = [r for r in a.runs if not Path(r).is_file()]
    if missing:
        p.error(f"no such record: {missing[0]}")
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        check_runs([Path(r) for r in a.runs or []])  # before any extractor is trained
        dataset_cfg, splits = _vae_data(a.root)
    except FileNotFoundError as e:
        print(f"frx-fid: error: {e}", file=sys.stderr)
        return 2
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    cache_dir = a.cache_dir or os.environ.get("FRX_CACHE_DIR") or Path(dataset_cfg["root"]) / "cache"
    extractors = _two_extractors(dataset_cfg, splits, cache_dir, a.epochs, log)
    train, test = splits.train.x, splits.val.x
    if not a.skip_checks:
        _print_table(f"FID against {a.samples:,} real MNIST test images",
                     checks(extractors, train, test, a.samples))
    if a.runs:
        _print_table(f"generators of finished runs, {a.samples:,} samples each",
                     rescore([Path(r) for r in a.runs], extractors, a.root, a.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
