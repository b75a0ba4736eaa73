"""Adjoint vs direct backprop for ODE-Nets: backward NFE (seminorm vs standard adjoint),
activation memory and time per training iteration at equal tolerance.

    python benchmarks/ode_adjoint.py [--batch 32] [--repeats 3] [--tol 1e-3] [--models odenet_cifar odenet_mnist]

Each model is built three times from the same seed (identical weights): ``direct`` (backprop
through dopri5), ``adjoint`` and ``adjoint+seminorm``. One iteration is forward, cross-entropy
and backward on a fixed random batch; NFE are the model's own counters (``debench_stats``),
memory is :func:`debench.train.measure.saved_activation_bytes` (bytes autograd saves for the
backward pass, parameters excluded), time is wall-clock per iteration after one warm-up.
Untrained weights: the NFE of a trained model differ.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from debench.registry import create_model
from debench.train.measure import saved_activation_bytes

MODES = {"direct": dict(adjoint=False), "adjoint": dict(adjoint=True), "seminorm": dict(adjoint=True, seminorm=True)}


def shape_of(name: str) -> tuple[int, int]:
    return (1, 28) if "mnist" in name else (3, 32)


def run(name: str, batch: int, repeats: int, tol: float) -> dict[str, dict[str, float]]:
    channels, size = shape_of(name)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    rows = {}
    for mode, opts in MODES.items():
        torch.manual_seed(0)
        model = create_model(name, method="dopri5", rtol=tol, atol=tol, **opts)
        loss_fn = lambda: F.cross_entropy(model(x), y)  # noqa: E731
        loss_fn().backward()  # warm-up
        model.debench_stats()
        times, fwd, bwd = [], [], []
        for _ in range(repeats):
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            loss_fn().backward()
            times.append(time.perf_counter() - start)
            stats = model.debench_stats()
            fwd.append(stats["nfe_forward"])
            bwd.append(stats["nfe_backward"])
        memory = saved_activation_bytes(loss_fn, exclude=list(model.parameters()))
        model.debench_stats()
        rows[mode] = {"nfe_forward": statistics.mean(fwd), "nfe_backward": statistics.mean(bwd),
                      "memory_mib": memory / 2**20, "seconds": statistics.mean(times),
                      "seconds_sd": statistics.stdev(times) if len(times) > 1 else 0.0}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tol", type=float, default=1e-3, help="rtol = atol of forward and adjoint solves")
    parser.add_argument("--models", nargs="+", default=["odenet_cifar", "odenet_mnist"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"repeats {args.repeats}, dopri5 rtol=atol={args.tol}")
    for name in args.models:
        rows = run(name, args.batch, args.repeats, args.tol)
        print(f"\n{name}")
        print(f"  {'mode':<10}{'NFE fwd':>9}{'NFE bwd':>9}{'act. MiB':>10}{'s/iter':>9}{'sd':>7}")
        for mode, r in rows.items():
            print(f"  {mode:<10}{r['nfe_forward']:>9.1f}{r['nfe_backward']:>9.1f}{r['memory_mib']:>10.2f}"
                  f"{r['seconds']:>9.3f}{r['seconds_sd']:>7.3f}")
        semi, std, direct = rows["seminorm"], rows["adjoint"], rows["direct"]
        print(f"  backward NFE seminorm/standard adjoint: {semi['nfe_backward'] / std['nfe_backward']:.3f} (target <= 0.7)")
        print(f"  activation memory adjoint/direct: {std['memory_mib'] / direct['memory_mib']:.4f}")
        print(f"  time per iteration adjoint/direct: {std['seconds'] / direct['seconds']:.2f}, "
              f"seminorm/direct: {semi['seconds'] / direct['seconds']:.2f}")


if __name__ == "__main__":
    main()
