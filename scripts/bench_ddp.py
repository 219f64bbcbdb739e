"""One training step on the CPU: one process with T threads against P processes (DDP, gloo) with T / P threads
each, the batch split between them. Plain network and FR, SGD and cross-entropy on random data.

    python scripts/bench_ddp.py [--model resnet18] [--batch 128] [--cores 2] [--steps 10] [--warmup 3]
                                [--beta 1.0 0.01]

Prints the median seconds per step of each layout. What DDP adds is the all-reduce of the gradients of the
learnable tensors once per step; with FR those are the DCT coefficients (as many as the weights they replace),
so FR adds no communication of its own: its kept counts advance alike on every process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import frx
from frx.models import build

INPUTS = {"lenet5": (1, 28), "resnet18": (3, 32), "vgg16": (3, 32), "alexnet": (3, 64)}


def step_times(rank: int, world: int, threads: int, args, beta, init_file: str, out) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(args.model)
    if beta is not None:
        frx.regularize(model).set_beta(beta)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
        model = nn.parallel.DistributedDataParallel(model)
    channels, size = INPUTS[args.model]
    rows = args.batch // world
    x = torch.randn(rows, channels, size, size)
    y = torch.randint(0, 10, (rows,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if world > 1:
            dist.barrier()  # a step ends when the slowest process ends it
        times.append(time.perf_counter() - t0)
    if world > 1:
        dist.destroy_process_group()
    if rank == 0:
        out.put(statistics.median(times[args.warmup:]))


def measure(world: int, threads: int, args, beta) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        init = os.path.join(tmp, "init")
        procs = [ctx.Process(target=step_times, args=(r, world, threads, args, beta, init, out)) for r in range(world)]
        for p in procs:
            p.start()
        result = out.get()
        for p in procs:
            p.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18", choices=sorted(INPUTS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--cores", type=int, default=2, help="threads of the one process; P processes get cores / P each")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--beta", type=float, nargs="*", default=[1.0, 0.01], help="FR budgets (none: plain only)")
    args = ap.parse_args()
    p, t = args.processes, args.cores
    print(f"{args.model}, batch {args.batch}, SGD step on the CPU; median s/step of {args.steps} after "
          f"{args.warmup} warm-up steps")
    for name, beta in [("plain", None)] + [(f"FR beta={b:g}", b) for b in args.beta]:
        one = measure(1, t, args, beta)
        several = measure(p, max(1, t // p), args, beta)
        print(f"  {name:<14} 1 process x {t} threads {one:.3f} s   {p} processes x {max(1, t // p)} thread(s) "
              f"{several:.3f} s   ratio {several / one:.2f}", flush=True)


if __name__ == "__main__":
    main()
