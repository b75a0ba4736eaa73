"""Training-step time of ResNet-110 with and without stochastic depth (Huang et al. 2016, Table 2).

One step = forward, cross-entropy, backward and an SGD update on a random CIFAR-shaped batch.
The two models alternate inside one process so that machine load hits both alike; the script
prints the median and mean over the repeats and the ratio (the paper reports ~25% less training
time with p_L = 0.5, whose expected depth is 75% of the full net). The mean is the number that
maps to total training time: stochastic depth's step time varies from step to step because a
different number of blocks is dropped each time.

Usage: python benchmarks/stochastic_depth_time.py [--batch 128] [--repeats 20] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from debench.registry import create_model


def step_time(model, opt, x, y) -> float:
    t = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="examples per step (128 in the paper)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import random

    random.seed(args.seed)
    names = ("resnet110", "stochastic_depth_resnet110")
    models = {n: create_model(n).train() for n in names}
    opts = {n: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for n, m in models.items()}
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    for _ in range(args.warmup):
        for n in names:
            step_time(models[n], opts[n], x, y)
    times = {n: [] for n in names}
    for _ in range(args.repeats):
        for n in names:
            times[n].append(step_time(models[n], opts[n], x, y))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.repeats} alternated repeats after {args.warmup} warm-up steps")
    for n in names:
        print(f"{n:28s} median {statistics.median(times[n]):.3f} s  mean {statistics.mean(times[n]):.3f} s")
    for stat in (statistics.median, statistics.mean):
        r = stat(times[names[1]]) / stat(times[names[0]])
        print(f"ratio stochastic/constant ({stat.__name__}): {r:.3f}  ({100 * (1 - r):.1f}% less time)")


if __name__ == "__main__":
    main()
