"""FID for the MNIST generators, offline, and the checks that it behaves like an FID.

The Inception network behind the usual FID cannot be downloaded here, so frx
computes the Frechet distance (torchmetrics' `FrechetInceptionDistance`) on the
penultimate features of a small MNIST classifier of its own, "frx-mnist-cnn". It
is trained once per data set on the real training images (with a fixed seed,
independent of the run's seed, so that every run of a table is scored by the same
network) and cached as a file; later runs load it. Values are therefore not
comparable with Inception FIDs (the paper's 244 / 81), only with each other.

`checks` shows that these features make a sensible FID on MNIST: real test images
against real training images give a small distance; blurred digits a distance that
grows with the blur; Gaussian noise and one digit repeated a large one; and a second,
independently trained extractor (other seed, half the width) ranks them the same way.
`python -m frx.tasks.fid --samples 10000` prints that table (and, with `--runs`,
rescores the generators of finished runs with both extractors).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import save as _atomic_save

NAME = "frx-mnist-cnn"
MEAN, STD = 0.1307, 0.3081
# The second extractor of `checks`: trained independently (another seed) with another width.
SECOND = {"seed": 1, "width": 16, "num_features": 64}


class MnistFeatures(nn.Module):
    """conv(w)-pool-conv(2w)-pool-fc(num_features)-fc10 on 28x28 images in [0, 1]; `forward` gives
    the features. The FID network is w=32, 128 features.

    Accepts (N, 784), (N, 1, H, W) or (N, 3, H, W) in [0, 1]; other sizes are resized to 28x28.
    """

    def __init__(self, width: int = 32, num_features: int = 128):
        super().__init__()
        self.num_features = num_features
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 7 * 7, num_features)
        self.fc2 = nn.Linear(num_features, 10)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.dim() == 2:
            side = int(round(x.shape[1] ** 0.5))
            x = x.reshape(x.shape[0], 1, side, side)
        if x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        if x.shape[-2:] != (28, 28):
            x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
        return (x - MEAN) / STD

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(self.prepare(x))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(torch.flatten(x, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def cache_path(cache_dir: str | os.PathLike, key: dict) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser() / f"{NAME}-{digest}.pt"


def train_extractor(train_batches: Callable[[torch.Generator], Iterable], epochs: int, device: torch.device,
                    seed: int = 0, width: int = 32, num_features: int = 128) -> MnistFeatures:
    """A new MnistFeatures trained as a classifier (Adam 1e-3, `epochs` epochs) from `seed`.

    train_batches(generator) yields (images in [0, 1], labels) on `device`. The caller's
    random stream is left untouched."""
    rng = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = MnistFeatures(width, num_features).to(device).train()
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        with torch.enable_grad():  # callers evaluate under no_grad
            for _ in range(epochs):
                for x, y in train_batches(gen):
                    loss = F.cross_entropy(model.classify(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    finally:
        torch.set_rng_state(rng)
    return model.eval()


@torch.no_grad()
def top1(model: MnistFeatures, val_batches: Iterable) -> float:
    correct = total = 0
    for x, y in val_batches:
        correct += int((model.classify(x).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def get_extractor(cache_dir: str | os.PathLike, key: dict, train_batches: Callable[[torch.Generator], Iterable],
                  val_batches: Callable[[], Iterable], epochs: int, device: torch.device,
                  log: Callable[[str], None] = print, seed: int = 0, width: int = 32,
                  num_features: int = 128) -> tuple[MnistFeatures, dict]:
    """Load the cached extractor for `key`, or train it (`train_extractor`) and cache it.

    train_batches(generator) / val_batches() yield (images in [0, 1], labels) on `device`.
    Returns (model in eval mode, info) where info names the network, its file and its val top-1.
    """
    arch = {} if (seed, width, num_features) == (0, 32, 128) else \
        {"seed": seed, "width": width, "num_features": num_features}  # the FID network keeps its old file name
    path = cache_path(cache_dir, {**key, "epochs": epochs, "net": NAME, **arch})
    model = MnistFeatures(width, num_features)
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        acc = float(state["val_top1"])
    else:
        log(f"training the FID feature extractor {NAME} ({epochs} epochs), cached at {path}")
        model = train_extractor(train_batches, epochs, device, seed, width, num_features)
        acc = top1(model, val_batches())
        _atomic_save(path, {"model": {k: v.cpu() for k, v in model.state_dict().items()}, "val_top1": acc,
                            "key": key, "epochs": epochs})
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, {"fid_feature_extractor": NAME, "fid_feature_dim": model.num_features,
                   "fid_extractor_file": str(path), "fid_extractor_val_top1": acc}


def native(dataset_cfg: dict) -> dict:
    """A run's data set at MNIST's own 28x28 in [0, 1]: what the extractor is trained on, whatever
    size and scaling the run uses (the DCGAN's 64x64 in [-1, 1], the VAE's 28x28 in [0, 1])."""
    return {**dataset_cfg, "name": None, "resize": [28, 28], "input_size": [28, 28], "normalize": "unit"}


def for_dataset(dataset_cfg: dict, cache_dir, epochs: int, device: torch.device,
                log: Callable[[str], None] = print, splits=None, **arch) -> tuple[MnistFeatures, dict]:
    """`get_extractor` for a run's data set (resolved config dict), trained on `native(dataset_cfg)`,
    which is also the cache key: every run on the same images is scored by the same network, GAN and
    VAE alike. splits: the native splits when already loaded. arch: seed, width, num_features."""
    from .. import data

    cfg = native(dataset_cfg)
    if splits is None:
        splits = data.load(cfg)
    key = {"dataset": cfg, "n_train": len(splits.train)}

    def train_batches(gen):
        for b in data.batches(splits.train, batch_size=128, shuffle=True, generator=gen, device=device):
            yield b[0], b[1]

    def val_batches():
        for b in data.batches(splits.val, batch_size=500, shuffle=False, generator=None, device=device):
            yield b[0], b[1]

    return get_extractor(cache_dir, key, train_batches, val_batches, epochs, device, log=log, **arch)


def for_run(cfg, device: torch.device, log: Callable[[str], None] = print, splits=None) -> tuple[MnistFeatures, dict]:
    """`for_dataset` for a run's (validated) config: its data set, run.cache_dir and
    scale.fid_extractor_epochs. splits: the run's splits, used when they are the native images."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg.dataset, resolve=True)
    epochs = int(cfg.scale.get("fid_extractor_epochs", 3))
    same = data.get("resize") == [28, 28] and data.get("normalize") == "unit"  # the run's data is the native one
    return for_dataset(data, cfg.run.cache_dir, epochs, device, log=log, splits=splits if same else None)


@torch.no_grad()
def frechet_distance(extractor: nn.Module, real: Iterable[torch.Tensor], fake: Iterable[torch.Tensor]) -> float:
    """FID between two streams of image batches in [0, 1] on the extractor's features."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=extractor, reset_real_features=True, normalize=True)
    device = next(extractor.parameters()).device
    metric = metric.to(device)
    for x in real:
        metric.update(x.to(device), real=True)
    for x in fake:
        metric.update(x.to(device), real=False)
    return float(metric.compute())


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
    from omegaconf import OmegaConf

    from .. import data
    from ..train import compose

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


def _packed_file(rec) -> Path:
    """The float32 pack a finished run leaves in its run dir (with run.keep_all=true)."""
    return Path(rec.config["run"]["dir"]) / "model.float32.frx"


def check_runs(records: list[Path]) -> None:
    """FileNotFoundError naming the first run whose float32 pack (what `rescore` reads) is gone."""
    from .. import record

    for rec_path in records:
        packed = _packed_file(record.read(rec_path))
        if not packed.exists():
            raise FileNotFoundError(f"{packed} (the run directory of {rec_path}) is missing: a finished run keeps "
                                    f"its float32 pack only with run.keep_all=true")


def rescore(records: list[Path], extractors: dict[str, nn.Module], test: torch.Tensor,
            n: int) -> dict[str, dict[str, float]]:
    """FID of each finished run's generator (unpacked from its float32 file in its run dir) under every
    extractor, against the first n test images, on the same latent vectors the run was scored with."""
    from omegaconf import OmegaConf

    import frx
    from .. import models, record
    from .gan import generate_images as gan_images
    from .generative import NOISE_SEED
    from .vae import generate_images as vae_images

    check_runs(records)
    table = {}
    for rec_path in records:
        rec = record.read(rec_path)
        stem = Path(rec_path).name[: -len(".json")]
        packed = _packed_file(rec)
        cfg = OmegaConf.create(rec.config)
        model = models.build_from_config(cfg.model)
        model.load_state_dict(frx.unpack(packed))
        model.eval()
        generate = gan_images if rec.task == "gan" else vae_images
        nz = model.nz if rec.task == "gan" else model.latent_dim
        z = torch.randn(n, nz, generator=torch.Generator().manual_seed(NOISE_SEED))
        with torch.no_grad():
            fake = torch.cat([generate(model, zb) for zb in batched(z)])
        table[stem] = {e: frechet_distance(ex, batched(test[:n]), batched(fake)) for e, ex in extractors.items()}
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
    p = argparse.ArgumentParser(prog="python -m frx.tasks.fid",
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
        print(f"python -m frx.tasks.fid: error: {e}", file=sys.stderr)
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
                     rescore([Path(r) for r in a.runs], extractors, test, a.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
