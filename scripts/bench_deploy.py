"""Inference cost of deployed FR models (frx.deploy) against their dense form, on the CPU.

    python scripts/bench_deploy.py                      # every Table 1-2 row at v1/v2/v3, a few minutes
    python scripts/bench_deploy.py --rows table2/alexnet_v2 table2/alexnet_v3 --rounds 7
    python scripts/bench_deploy.py --big-models all     # batch 256 for VGG16 and ResNet18 too (slow)

Each row's model is built and regularized with its experiment's epsilon, floors and linear
view, and put straight at its final budget (the coefficients are random: cost does not depend
on them). Per row: multiply-adds per sample (all layers, and linear layers alone) of the dense
and the deployed model, and the time of one forward pass at batch 1 and 256 on one thread,
dense and deployed measured alternately in each round; the ratio is dense / deployed, the
median over rounds with the min-max spread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import frx
from frx import models
from frx.fr import count_macs
from frx.fr.deploy import forms
from frx.train import compose

TABLE1 = ["table1/lenet300_v1", "table1/lenet300_v2", "table1/lenet5_v1", "table1/lenet5_v2", "table1/lenet5_v2_auto"]
TABLE2 = [f"table2/{m}_v{v}" for m in ("alexnet", "vgg16", "resnet18") for v in (1, 2, 3)]
BIG_DEFAULT = ("lenet300", "lenet5", "alexnet")  # VGG16 / ResNet18 at batch 256 take ~30 s a pass here


def build_row(row: str, seed: int = 0):
    """(name, regularized model at its final budget, one-sample input) for an experiment file."""
    cfg = compose([f"experiment={row}"])
    f = cfg.fr
    spec = models.spec_from_config(cfg.model)
    size = cfg.dataset.get("resize") or spec.input_size
    torch.manual_seed(seed)
    x = torch.randn(1, spec.in_channels, *[int(s) for s in size])
    model = models.build_from_config(cfg.model)
    fr = frx.regularize(model, epsilon=f.epsilon, gamma=1.0, min_kept=dict(f.min_kept), init="normal",
                        linear_view=f.linear_view, sample_input=x if f.linear_view == "auto" else None)
    model.train()
    fr.step()  # gamma = 1: beta reaches epsilon, every tensor at its final k
    return cfg.run.row + (" (auto view)" if f.linear_view == "auto" else ""), model.eval(), x, fr.kept()


def per_call(model: nn.Module, x: torch.Tensor, min_time: float) -> float:
    """Seconds per forward pass: repeated until `min_time` has passed (at least once after a warm-up)."""
    with torch.inference_mode():
        model(x)
        n, t0 = 0, time.perf_counter()
        while True:
            model(x)
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                return elapsed / n


def side_by_side(dense, deployed, x, rounds, min_time):
    """(median dense s, median deployed s, median ratio, min ratio, max ratio) over interleaved rounds."""
    td, tf = [], []
    for _ in range(rounds):
        td.append(per_call(dense, x, min_time))
        tf.append(per_call(deployed, x, min_time))
    ratios = [a / b for a, b in zip(td, tf)]
    return statistics.median(td), statistics.median(tf), statistics.median(ratios), min(ratios), max(ratios)


def linear_macs(model, macs):
    names = {n for n, m in model.named_modules() if isinstance(m, (nn.Linear, frx.fr.FactoredLinear))}
    return sum(v for n, v in macs.items() if n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=TABLE1 + TABLE2, help="experiment files (default: Tables 1-2)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds of calls per timing")
    ap.add_argument("--big-batch", type=int, default=256)
    ap.add_argument("--big-models", nargs="+", default=list(BIG_DEFAULT),
                    help="models timed at --big-batch too ('all' for every model)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s), {args.rounds} interleaved rounds; ratio = dense / deployed "
          f"(median [min-max]); MACs = multiply-adds per sample")
    head = (f"{'row':<24} {'kept':>9} {'factored':>8} {'MACs dense':>11} {'deployed':>10} {'ratio':>7} "
            f"{'linear':>7} {'maxreldiff':>10}  {'batch 1: ms dense/deployed, ratio':<38} "
            f"{'batch ' + str(args.big_batch):<30}")
    print(head)
    for row in args.rows:
        name, model, x1, kept = build_row(row)
        dense = frx.deploy(model, form="dense")
        deployed = frx.deploy(model, sample_input=x1)
        with torch.no_grad():
            ref = dense(x1)
            diff = ((deployed(x1) - ref).abs().max() / ref.abs().max()).item()
        md, mf = count_macs(dense, x1), count_macs(deployed, x1)
        ld, lf = linear_macs(dense, md), linear_macs(deployed, mf)
        f = forms(deployed)
        n_fact = sum(v == "factored" for v in f.values())
        cols = [f"{name:<24} {kept:>9,} {n_fact:>3}/{len(f):<4} {sum(md.values()):>11,} {sum(mf.values()):>10,} "
                f"{sum(md.values()) / sum(mf.values()):>6.1f}x {ld / lf:>6.1f}x {diff:>10.1e}"]
        batches = [1]
        if "all" in args.big_models or any(row.split("/")[-1].startswith(m + "_") for m in args.big_models):
            batches.append(args.big_batch)
        for b in batches:
            x = x1.expand(b, *x1.shape[1:]).contiguous()
            td, tf, r, lo, hi = side_by_side(dense, deployed, x, args.rounds, args.min_time)
            flag = "  SLOWER" if r < 1 else ""
            cols.append(f"{td * 1e3:8.2f}/{tf * 1e3:<8.2f} {r:5.2f}x [{lo:.2f}-{hi:.2f}]{flag}")
        print("  ".join(cols), flush=True)


if __name__ == "__main__":
    main()
