"""Adjoint vs direct backprop for ODE-Nets: backward NFE (seminorm vs standard adjoint),
activation memory and time per training iteration at equal tolerance.

    python benchmarks/ode_adjoint.py [--batch 32] [--repeats 3] [--tols 1e-3 1e-3:1e-6] [--models odenet_cifar odenet_mnist]

For each tolerance (``RTOL`` or ``RTOL:ATOL``; forward and adjoint solves share it) each model is
built three times from the same seed (identical weights): ``direct`` (backprop through dopri5),
``adjoint`` (standard norm: the parameter gradients take part in the step-size control) and
``seminorm`` (Kidger et al. 2021; debench's default for an adaptive adjoint). One iteration is forward, cross-entropy
and backward on a fixed random batch; NFE are the model's own counters (``debench_stats``),
memory is :func:`debench.train.measure.saved_activation_bytes` (bytes autograd saves for the
backward pass, parameters excluded), time is wall-clock per iteration after one warm-up.
Untrained weights: the NFE of a trained model differ.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
import torch.nn.functional as F

from debench.registry import create_model
from debench.train.measure import saved_activation_bytes

MODES = {"direct": dict(adjoint=False), "adjoint": dict(adjoint=True, seminorm=False),
         "seminorm": dict(adjoint=True, seminorm=True)}


def shape_of(name: str) -> tuple[int, int]:
    return (1, 28) if "mnist" in name else (3, 32)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_tol(text: str) -> tuple[float, float]:
    """``"1e-3"`` -> (1e-3, 1e-3); ``"1e-3:1e-6"`` -> (rtol, atol)."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"tolerance {text!r}: expected RTOL or RTOL:ATOL, e.g. 1e-3:1e-6") from None
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"tolerance {text!r}: expected one or two positive numbers RTOL[:ATOL]")
    return parts[0], parts[-1]


def warm_weights(name: str, steps: int, batch: int, tol: tuple[float, float], device: torch.device) -> dict | None:
    """Weights after ``steps`` Adam steps on synthetic, learnable images (None: untrained).

    NFE depend on the learned dynamics; the seminorm's saving shows once the parameter part of
    the adjoint state has grown, which random weights do not reproduce.
    """
    if steps <= 0:
        return None
    from debench.data.sources import synthetic

    channels, size = shape_of(name)
    data = synthetic((size, size, channels), 10, steps * batch, 1, seed=0)
    x_all = torch.from_numpy(data["x_train"]).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)
    y_all = torch.from_numpy(data["y_train"])
    torch.manual_seed(0)
    model = create_model(name, method="dopri5", rtol=tol[0], atol=tol[1], adjoint=False).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(steps):
        xb, yb = x_all[i * batch:(i + 1) * batch].to(device), y_all[i * batch:(i + 1) * batch].to(device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"  {name}: {steps} warm-up Adam steps, last loss {loss.item():.3f}, NFE {model.debench_stats()}")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run(name: str, batch: int, repeats: int, tol: tuple[float, float], device: torch.device = torch.device("cpu"),
        warm_steps: int = 0) -> dict[str, dict[str, float]]:
    channels, size = shape_of(name)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    state = warm_weights(name, warm_steps, batch, tol, device)
    rows = {}
    for mode, opts in MODES.items():
        torch.manual_seed(0)
        model = create_model(name, method="dopri5", rtol=tol[0], atol=tol[1], **opts).to(device)
        if state is not None:
            model.load_state_dict(state)
        loss_fn = lambda: F.cross_entropy(model(x), y)  # noqa: E731
        loss_fn().backward()  # warm-up
        model.debench_stats()
        times, fwd, bwd = [], [], []
        for _ in range(repeats):
            model.zero_grad(set_to_none=True)
            sync(device)
            start = time.perf_counter()
            loss_fn().backward()
            sync(device)
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
    parser.add_argument("--tols", nargs="+", type=parse_tol, default=[parse_tol("1e-3")], metavar="RTOL[:ATOL]",
                        help="tolerances of forward and adjoint solves, one measurement each (default 1e-3)")
    parser.add_argument("--models", nargs="+", default=["odenet_cifar", "odenet_mnist"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warm-steps", type=int, default=0,
                        help="Adam steps on synthetic images before measuring (0: untrained weights)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}; torch {torch.__version__}, batch {args.batch}, warm-up steps {args.warm_steps}, "
          f"repeats {args.repeats}, dopri5")
    summary = []
    for name, tol in itertools.product(args.models, args.tols):
        rows = run(name, args.batch, args.repeats, tol, device, args.warm_steps)
        print(f"\n{name}, rtol={tol[0]:g}, atol={tol[1]:g}")
        print(f"  {'mode':<10}{'NFE fwd':>9}{'NFE bwd':>9}{'act. MiB':>10}{'s/iter':>9}{'sd':>7}")
        for mode, r in rows.items():
            print(f"  {mode:<10}{r['nfe_forward']:>9.1f}{r['nfe_backward']:>9.1f}{r['memory_mib']:>10.2f}"
                  f"{r['seconds']:>9.3f}{r['seconds_sd']:>7.3f}")
        semi, std, direct = rows["seminorm"], rows["adjoint"], rows["direct"]
        ratio = semi["nfe_backward"] / std["nfe_backward"]
        summary.append((name, tol, std["nfe_backward"], semi["nfe_backward"], ratio))
        print(f"  backward NFE seminorm/standard adjoint: {ratio:.3f} (target <= 0.7)")
        print(f"  activation memory adjoint/direct: {std['memory_mib'] / direct['memory_mib']:.4f}")
        print(f"  time per iteration adjoint/direct: {std['seconds'] / direct['seconds']:.2f}, "
              f"seminorm/direct: {semi['seconds'] / direct['seconds']:.2f}")

    print("\nbackward NFE, standard adjoint vs seminorm, same weights and tolerance")
    print(f"  {'model':<16}{'rtol':>8}{'atol':>8}{'standard':>10}{'seminorm':>10}{'ratio':>8}")
    for name, tol, std_b, semi_b, ratio in summary:
        print(f"  {name:<16}{tol[0]:>8g}{tol[1]:>8g}{std_b:>10.1f}{semi_b:>10.1f}{ratio:>8.3f}")


if __name__ == "__main__":
    main()
