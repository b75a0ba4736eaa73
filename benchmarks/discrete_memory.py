"""Activation memory and wall time of the memory-saving backward of the discrete family.

Usage: ``python benchmarks/discrete_memory.py [--batch 128] [--repeats 3] [--threads 1]``

Prints, measured in one run: the bytes autograd keeps for one training step (saved-tensor
hooks, :func:`debench.train.measure.training_step_activation_bytes`) of resnet110, revnet110
and momentum_resnet110 (invertible and not), their ratios to resnet110 (target <= 0.25), and
the median wall time of forward + backward with the memory-saving backward against plain
autograd on the same weights (target <= 1.6x). CPU, float32, CIFAR-sized inputs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from debench.registry import create_model
from debench.train.measure import training_step_activation_bytes

PAIRS = ("revnet110", "momentum_resnet110")


def step_seconds(model, x, y) -> float:
    """Wall time of one forward + cross-entropy + backward."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    F.cross_entropy(model(x), y).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default so that a shared machine times both variants alike")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    loss = lambda out: F.cross_entropy(out, y)  # noqa: E731
    print(f"# torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} thread(s), "
          f"batch {args.batch}, repeats {args.repeats} (median, after 1 warm-up), float32, CPU")
    base = training_step_activation_bytes(create_model("resnet110"), x, loss)
    print(f"{'resnet110':38s} activations {base / 2**20:8.1f} MiB")
    for name in PAIRS:
        fast = create_model(name, invertible=True)
        plain = create_model(name, invertible=False)
        plain.load_state_dict(fast.state_dict())
        mem = {k: training_step_activation_bytes(m, x, loss) for k, m in (("inv", fast), ("plain", plain))}
        times: dict[str, list[float]] = {"inv": [], "plain": []}
        for i in range(args.repeats + 1):  # interleaved, so that load changes hit both alike
            for k, m in (("inv", fast), ("plain", plain)):
                t = step_seconds(m, x, y)
                if i:
                    times[k].append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, label in (("inv", "invertible=True"), ("plain", "invertible=False")):
            print(f"{name + '[' + label + ']':38s} activations {mem[k] / 2**20:8.1f} MiB "
                  f"({mem[k] / base:.3f} x resnet110)   fwd+bwd {med[k]:6.2f} s")
        print(f"{name:38s} memory-saving / plain autograd time: {med['inv'] / med['plain']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
