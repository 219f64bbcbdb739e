"""Speed and size benchmarks for the FR core, measured side by side in one run.

    python scripts/bench.py [--steps 30] [--repeats 5] [--device cpu] [--threads N]

1. LeNet-5 training step (batch 128, Adam): plain, frx FR (truncated IDCT of the
   kept corner), and FR with a full-tensor IDCT every step; ratios to plain.
   Rounds are interleaved so machine noise hits every variant alike.
2. Time to build the zigzag mask of an AlexNet-fc1-sized tensor (4096 x 9216).
3. Packed bytes per kept coefficient (float16) of a LeNet-5 at the paper's v2 floors.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

import frx
from frx.fr import full_mask, idctn
from frx.fr.mask import corner_mask, l1_counts
from frx.models import build


class FullIDCT(nn.Module):
    """FR without the corner trick: the whole masked tensor goes through the IDCT every step."""

    def __init__(self, p):
        super().__init__()
        self.register_buffer("mask", full_mask(p.view, int(p.k)).float())
        self.p = p

    def forward(self, t):
        return idctn(t.reshape(self.p.view) * self.mask).reshape(self.p.shape)


def lenet5_variants(device):
    torch.manual_seed(0)
    plain = build("lenet5").to(device)
    fr_model = build("lenet5").to(device)
    fr = frx.regularize(fr_model, epsilon=0.001, gamma=1.0)  # gamma=1: straight to the v2 floors
    fr_model.train()
    fr.step()
    full_model = build("lenet5").to(device)
    full_fr = frx.regularize(full_model, epsilon=0.001, gamma=1.0)
    full_model.train()
    full_fr.step()
    for _, module, p in frx.fr.fr_tensors(full_model):
        original = module.parametrizations.weight.original
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        parametrize.register_parametrization(module, "weight", FullIDCT(p).to(device), unsafe=True)
        with torch.no_grad():
            module.parametrizations.weight.original.copy_(original)
    return {"plain": plain, "frx FR": fr_model, "full IDCT": full_model}, fr


def time_steps(model, x, y, steps, device):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    step()  # warm-up: allocations, cached cosine matrices and masks
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def bench_step(device, steps, repeats):
    models, fr = lenet5_variants(device)
    x = torch.randn(128, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(time_steps(model.train(), x, y, steps, device))
    base = statistics.median(times["plain"])
    print(f"LeNet-5 training step, batch 128, {device}, {steps} steps x {repeats} interleaved rounds (median)")
    print(f"  FR kept coefficients: {fr.kept():,} of {fr.dense():,}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<10} {med * 1e3:8.2f} ms/step   {med / base:5.2f}x plain")
    return {name: statistics.median(ts) / base for name, ts in times.items()}


def bench_mask():
    shape = (4096, 9216)
    print(f"Zigzag mask for a {shape[0]}x{shape[1]} tensor (AlexNet fc1), cold cache:")
    for ratio in (0.01, 0.001, 0.5):
        k = round(ratio * shape[0] * shape[1])
        l1_counts.cache_clear()
        t0 = time.perf_counter()
        m = corner_mask(shape, k)
        dt = time.perf_counter() - t0
        print(f"  kept {ratio:>6.1%} (k={k:,}): {dt * 1e3:7.1f} ms, corner {tuple(m.shape)}")


def bench_pack():
    torch.manual_seed(0)
    model = build("lenet5")
    fr = frx.regularize(model, epsilon=0.001, gamma=1.0)
    model.train()
    fr.step()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lenet5.frx"
        total = frx.pack(model, path, dtype="float16")
        entries = frx.unpack_meta(path)["tensors"]
    fr_bytes = sum(e["bytes"] for e in entries if e["kind"] == "fr")
    plain_bytes = sum(e["bytes"] for e in entries if e["kind"] == "plain")
    print("Packed LeNet-5 at the v2 floors, float16:")
    print(f"  kept coefficients {fr.kept():,}: {fr_bytes:,} bytes = {fr_bytes / fr.kept():.2f} bytes per kept coefficient")
    print(f"  biases {plain_bytes:,} bytes; whole file {total:,} bytes "
          f"({total / fr.kept():.2f} bytes per kept coefficient, all included)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_step(torch.device(args.device), args.steps, args.repeats)
    bench_mask()
    bench_pack()


if __name__ == "__main__":
    main()
