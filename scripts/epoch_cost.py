"""Where an epoch's time goes, plain against FR: one training step at the recipe's batch against the
evaluation of a block of test images, under scale=cpu's settings (bfloat16 autocast, NHWC), best of rounds;
for FR also the evaluation as the training loop runs it (frx.fr.factored_inference).

    python scripts/epoch_cost.py [--model resnet18] [--batch 512] [--eval-images 2000] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import frx
from frx.models import build


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best(fn, rounds: int) -> float:
    fn()  # warm-up: allocations, masks, the layers' route
    return min(timed(fn) for _ in range(rounds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--eval-images", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    nhwc = torch.channels_last
    x = torch.randn(a.batch, 3, 32, 32).contiguous(memory_format=nhwc)
    y = torch.randint(0, 10, (a.batch,))
    xe = torch.randn(a.eval_images, 3, 32, 32).contiguous(memory_format=nhwc)
    steps, evals = math.ceil(50_000 / a.batch), 10_000 / a.eval_images  # one epoch of CIFAR-10
    for label, beta in (("plain", None), ("FR v2", 0.001)):
        model = build(a.model).to(memory_format=nhwc)
        if beta is not None:
            frx.regularize(model, epsilon=0.001, gamma=1.0).set_beta(beta)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

        def step():
            model.train()
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        def evaluate():
            model.eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                model(xe)

        def evaluate_factored():  # as the training loop evaluates an FR model (frx.fr.factored_inference)
            with frx.fr.factored_inference(model):
                evaluate()

        s, e = best(step, a.rounds), best(evaluate, a.rounds)
        print(f"{label}: training step ({a.batch}) {s:.2f} s, evaluation of {a.eval_images} images {e:.2f} s; "
              f"one epoch {steps * s:.0f} s of steps + {evals * e:.0f} s of evaluation "
              f"(evaluation {evals * e / (steps * s + evals * e):.0%})")
        if beta is not None:  # the two evaluations in interleaved rounds: the ratio of each round
            evaluate_factored()
            pairs = [(timed(evaluate), timed(evaluate_factored)) for _ in range(max(3, a.rounds))]
            ratios = sorted(f / d for d, f in pairs)
            f = min(f for _, f in pairs)
            print(f"{label}: evaluation of {a.eval_images} images by the factored route {f:.2f} s, "
                  f"{statistics.median(ratios):.2f}x the rebuilt weights' [{ratios[0]:.2f}-{ratios[-1]:.2f}] over "
                  f"{len(ratios)} interleaved rounds; one epoch {steps * s:.0f} s of steps + {evals * f:.0f} s of "
                  f"evaluation (evaluation {evals * f / (steps * s + evals * f):.0%})")


if __name__ == "__main__":
    main()
