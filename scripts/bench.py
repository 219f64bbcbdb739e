"""Speed and size benchmarks for the FR core, measured side by side in one run.

    python scripts/bench.py [--quick] [--rounds 3] [--steps 30] [--model-steps 1] [--device cpu]
                            [--threads N] [--models resnet18 vgg16 alexnet] [--batches 32 128]
                            [--linear 512 1024 2048 4096 8192] [--sections ...] [--gpu-batch 512]

Every timing section compares variants of one training step (Adam, cross-entropy)
in interleaved rounds, so machine noise hits every variant alike, and prints the
ratio to the plain step as the median over rounds with its spread [min - max]:

  plain       the unregularized network;
  FR          frx FR: each Linear/Conv2d applies the DCT factors to its activations
              or rebuilds W, whichever a cost count says is cheaper;
  FR rebuild  frx FR always rebuilding W (the truncated corner IDCT), `factored=False`;
  full IDCT   (LeNet-5 only) the whole masked tensor through the IDCT every step.

Budgets: beta = 1 (every run's start, nothing dropped), v1 (1 % per tensor) and
v2 (0.1 %), with the paper's floors (128 per conv tensor, 256 per linear tensor).
Then: the time of `regularize()` on AlexNet, of the zigzag mask of AlexNet's fc1,
and the packed size of a LeNet-5 at the v2 floors. On a CUDA device the run starts with
the `gpu` section: the models at batch 512 (--gpu-batch) under bfloat16 autocast with
channels_last, the settings of the GPU training run (`scale=gpu`). The `cpu` section (asked for by
name: `--sections cpu --threads 2`) times plain and FR at each budget under float32 and bfloat16
autocast, each with NCHW and NHWC (channels_last) activations, at the recipe's batch of 512 (--cpu-batch):
what `scale=cpu` chose.
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
from frx.fr.factors import factored_forwards
from frx.fr.mask import corner_mask, l1_counts
from frx.models import build

BUDGETS = {"beta=1": 1.0, "v1 1%": 0.01, "v2 0.1%": 0.001}
SECTIONS = ["gpu", "cpu", "lenet5", "models", "linear", "setup", "mask", "pack"]
INPUTS = {"lenet5": (1, 28), "resnet18": (3, 32), "vgg16": (3, 32), "alexnet": (3, 64)}


class FullIDCT(nn.Module):
    """FR without the corner trick: the whole masked tensor goes through the IDCT every step."""

    def __init__(self, p):
        super().__init__()
        self.register_buffer("mask", full_mask(p.view, int(p.k)).float())
        self.p = p

    def forward(self, t):
        return idctn(t.reshape(self.p.view) * self.mask).reshape(self.p.shape)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class Runner:
    """One model, its optimizer and a fixed batch; `time(steps)` gives seconds per training step.
    amp: an autocast dtype (the GPU section's bfloat16), None for float32."""

    def __init__(self, model, x, y, amp=None):
        self.model, self.x, self.y, self.amp = model.train(), x, y, amp
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        self.loss = nn.CrossEntropyLoss() if y.dtype == torch.long else nn.MSELoss()

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.x.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            loss = self.loss(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()

    def time(self, steps):
        self.step()  # warm-up: allocations, cached matrices, masks, the layers' route
        _sync(self.x.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        _sync(self.x.device)
        return (time.perf_counter() - t0) / steps


def _spread(ratios):
    return f"{statistics.median(ratios):5.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"


def compare(title, plain, frs, budgets, steps, rounds):
    """Interleaved rounds: per budget, plain then each FR variant; prints ratios to plain."""
    times = {(b, name): [] for b in budgets for name in ["plain", *frs]}
    routes, first = {}, next(iter(frs))  # budget -> (factored layers, layers) of the first FR variant's last step
    for _ in range(rounds):
        for b, beta in budgets.items():
            times[(b, "plain")].append(plain.time(steps))
            for name, (runner, handle) in frs.items():
                handle.set_beta(beta)
                times[(b, name)].append(runner.time(steps))
                if name == first:
                    chosen = [f._choice[1] for f in factored_forwards(runner.model) if f._choice]
                    routes[b] = (sum(chosen), len(chosen))
    print(title)
    rows = {}
    for b in budgets:
        base = times[(b, "plain")]
        line = f"  {b:<8} plain {statistics.median(base) * 1e3:9.1f} ms"
        for name, (runner, handle) in frs.items():
            handle.set_beta(budgets[b])
            ratios = [t / p for t, p in zip(times[(b, name)], base)]
            rows[(b, name)] = ratios
            line += f" | {name} {_spread(ratios)}"
        print(line + " | factored layers {}/{}".format(*routes[b]))
    return rows


VARIANTS = {"FR": True, "FR rebuild": False}


def _fr_variants(make, device, variants=tuple(VARIANTS)):
    out = {}
    for name in variants:
        factored = VARIANTS[name]
        torch.manual_seed(0)
        model = make().to(device)
        out[name] = (model, frx.regularize(model, epsilon=0.001, gamma=1.0, factored=factored))
    return out


def bench_model(name, batch, device, steps, rounds, budgets, variants, fast=False):
    """fast: the GPU run's settings (bfloat16 autocast, channels_last), as `scale=gpu` trains."""
    c, size = INPUTS[name]
    layout = torch.channels_last if fast else torch.contiguous_format
    x = torch.randn(batch, c, size, size, device=device).to(memory_format=layout)
    y = torch.randint(0, 10, (batch,), device=device)
    amp = torch.bfloat16 if fast else None
    torch.manual_seed(0)
    plain = Runner(build(name).to(device, memory_format=layout), x, y, amp)
    frs = {k: (Runner(m.to(memory_format=layout), x, y, amp), h)
           for k, (m, h) in _fr_variants(lambda: build(name), device, variants).items()}
    compare(f"{name}, batch {batch}, {device}{', bfloat16, channels_last' if fast else ''}, {steps} steps x "
            f"{rounds} interleaved rounds: FR / plain, median [min-max]", plain, frs, budgets, steps, rounds)


# the CPU's precision and memory-layout settings: (autocast dtype or None, memory format)
CPU_SETTINGS = {"float32": (None, torch.contiguous_format), "float32 NHWC": (None, torch.channels_last),
                "bfloat16": (torch.bfloat16, torch.contiguous_format),
                "bfloat16 NHWC": (torch.bfloat16, torch.channels_last)}


def bench_cpu(name, batch, rounds, budgets):
    """Plain and FR at each budget under each CPU setting, one step each in interleaved rounds; ratios to
    plain float32 (NCHW) of the same round."""
    c, size = INPUTS[name]
    x0 = torch.randn(batch, c, size, size)
    y = torch.randint(0, 10, (batch,))
    plain, fr = {}, {}
    for setting, (amp, layout) in CPU_SETTINGS.items():
        x = x0.contiguous(memory_format=layout)
        torch.manual_seed(0)
        plain[setting] = Runner(build(name).to(memory_format=layout), x, y, amp)
        model, handle = _fr_variants(lambda: build(name).to(memory_format=layout), "cpu", ["FR"])["FR"]
        fr[setting] = (Runner(model, x, y, amp), handle)
    cells = [(s, "plain") for s in CPU_SETTINGS] + [(s, b) for s in CPU_SETTINGS for b in budgets]

    def step(setting, what):
        if what == "plain":
            plain[setting].step()
            return
        runner, handle = fr[setting]
        handle.set_beta(budgets[what])
        runner.step()

    for cell in cells:  # warm-up: allocations, cached matrices, masks, the layers' route
        step(*cell)
    times = {cell: [] for cell in cells}
    for _ in range(rounds):
        for cell in cells:
            t0 = time.perf_counter()
            step(*cell)
            times[cell].append(time.perf_counter() - t0)
    base = times[("float32", "plain")]
    print(f"{name}, batch {batch}, cpu, {torch.get_num_threads()} threads, {rounds} interleaved rounds of one step: "
          f"ms per step (median), ratio to plain float32 of the same round: median [min-max]")
    for setting in CPU_SETTINGS:
        line = f"  {setting:<14}"
        for what in ["plain", *budgets]:
            t = times[(setting, what)]
            line += f" | {what} {statistics.median(t) * 1e3:6.0f} ms {_spread([a / b for a, b in zip(t, base)])}"
        print(line)


def bench_linear(n, batch, device, steps, rounds, budgets, variants):
    x = torch.randn(batch, n, device=device)
    y = torch.randn(batch, n, device=device)
    torch.manual_seed(0)
    plain = Runner(nn.Linear(n, n).to(device), x, y)
    frs = {k: (Runner(m, x, y), h) for k, (m, h) in _fr_variants(lambda: nn.Linear(n, n), device, variants).items()}
    compare(f"Linear({n}, {n}), batch {batch}, {device}, {steps} steps x {rounds} rounds", plain, frs,
            budgets, steps, rounds)


def bench_lenet5(device, steps, rounds):
    """LeNet-5 at the v2 floors, batch 128: plain, frx FR, FR rebuilt, full-tensor IDCT."""
    x = torch.randn(128, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    torch.manual_seed(0)
    plain = Runner(build("lenet5").to(device), x, y)
    frs = {k: (Runner(m, x, y), h) for k, (m, h) in _fr_variants(lambda: build("lenet5"), device).items()}
    full_model, full_fr = _fr_variants(lambda: build("lenet5"), device)["FR rebuild"]
    full_fr.set_beta(0.001)
    for _, module, p in frx.fr.fr_tensors(full_model):
        original = module.parametrizations.weight.original
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        parametrize.register_parametrization(module, "weight", FullIDCT(p).to(device), unsafe=True)
        with torch.no_grad():
            module.parametrizations.weight.original.copy_(original)

    class _Fixed:  # the full-IDCT model's budget is fixed at build time
        @staticmethod
        def set_beta(beta):
            pass

    frs["full IDCT"] = (Runner(full_model, x, y), _Fixed)
    kept = frs["FR"][1]
    kept.set_beta(0.001)
    compare(f"LeNet-5, batch 128, {device}, {steps} steps x {rounds} rounds (kept {kept.kept():,} of "
            f"{kept.dense():,})", plain, frs, {"v2 0.1%": 0.001}, steps, rounds)


def bench_setup():
    torch.manual_seed(0)
    model = build("alexnet")
    t0 = time.perf_counter()
    frx.regularize(model)
    print(f"regularize() of AlexNet (57M weights, init = DCT of the layers' own weights): "
          f"{time.perf_counter() - t0:.2f} s")


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
    print(f"  kept coefficients {fr.kept():,}: {fr_bytes:,} bytes = "
          f"{fr_bytes / fr.kept():.2f} bytes per kept coefficient")
    print(f"  biases {plain_bytes:,} bytes; whole file {total:,} bytes "
          f"({total / fr.kept():.2f} bytes per kept coefficient, all included)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="3 rounds, batch 32 only, Linear n = 512, 2048, 8192, 10 LeNet-5 steps")
    ap.add_argument("--steps", type=int, default=30, help="timed LeNet-5 steps per variant per round")
    ap.add_argument("--model-steps", type=int, default=1, help="timed steps of the bigger networks per round")
    ap.add_argument("--rounds", "--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--models", nargs="*", default=["resnet18", "vgg16", "alexnet"], choices=sorted(INPUTS))
    ap.add_argument("--batches", nargs="*", type=int, default=[32, 128])
    ap.add_argument("--linear", nargs="*", type=int, default=[512, 1024, 2048, 4096, 8192])
    ap.add_argument("--sections", nargs="*", default=None, choices=SECTIONS,
                    help="default: all (gpu only on a CUDA device); gpu = the models at --gpu-batch, bfloat16 "
                         "autocast, channels_last, FR only (the GPU run's settings)")
    ap.add_argument("--gpu-batch", type=int, default=512, help="batch of the gpu section")
    ap.add_argument("--cpu-batch", type=int, default=512,
                    help="batch of the cpu section (the models in float32 / bfloat16 x NCHW / NHWC, plain and FR)")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.rounds, args.batches, args.linear = 10, 3, [32], [512, 2048, 8192]
    sizes = [args.steps, args.model_steps, args.rounds, args.gpu_batch, args.cpu_batch, *args.batches, *args.linear]
    if min(sizes) < 1:
        ap.error("--steps, --model-steps, --rounds, --gpu-batch, --cpu-batch, --batches and --linear must be >= 1")
    if "cpu" in (args.sections or []) and args.device != "cpu":
        ap.error("the cpu section runs on the CPU: add --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.sections is None:
        # gpu only on a CUDA device; cpu (tens of minutes) only when asked for
        args.sections = [s for s in SECTIONS if (s != "gpu" or device.type == "cuda") and s != "cpu"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    for name in args.models if "gpu" in args.sections else []:  # first: the GPU run keeps the bench short
        bench_model(name, args.gpu_batch, device, args.model_steps, args.rounds, BUDGETS, ["FR"], fast=True)
    for name in args.models if "cpu" in args.sections else []:
        bench_cpu(name, args.cpu_batch, args.rounds, BUDGETS)
    if "lenet5" in args.sections:
        bench_lenet5(device, max(args.steps, 10), args.rounds)  # ~0.2 s steps: fewer would time noise
    for batch in args.batches if "models" in args.sections else []:
        for name in args.models:
            bench_model(name, batch, device, args.model_steps, args.rounds, BUDGETS, args.variants)
    for batch in args.batches if "linear" in args.sections else []:
        for n in args.linear:
            bench_linear(n, batch, device, args.model_steps, args.rounds, BUDGETS, args.variants)
    if "setup" in args.sections:
        bench_setup()
    if "mask" in args.sections:
        bench_mask()
    if "pack" in args.sections:
        bench_pack()


if __name__ == "__main__":
    main()
