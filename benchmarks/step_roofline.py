"""How close the ResNet-20 training step is to what this CPU can compute at all.

One process, one thread count. Three measurements, alternated within every repeat so machine
noise hits them alike:

- the floating-point work of one training step (forward, backward, SGD step) at batch 128,
  counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products:
  the operations that dominate; BatchNorm, ReLU and the optimiser's element-wise work are not
  counted, so the count is a lower bound of the work);
- the time of that step (fp32, channels_last, as the CPU campaign trains);
- the time of a large fp32 matrix product (MKL sgemm, ``--gemm`` square), the fastest dense
  fp32 arithmetic this machine does on these threads: the practical ceiling.

Printed: the step's GFLOP, each rate in GFLOP/s, the step's share of the sgemm rate, the step
time the sgemm rate would allow (the floor for this count of work), and the rate a target step
time (``--target-ms``) would need. A target beyond the sgemm rate cannot be met by any loop on
this machine; it needs a faster one.

    python benchmarks/step_roofline.py --threads 2 --repeats 5
    python benchmarks/step_roofline.py --threads 2 --repeats 1 --steps 2 --gemm 512   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def step_flops(model, x, y, opt) -> int:
    """Floating-point operations of one training step, as FlopCounterMode counts them."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _median_time(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(threads: int, repeats: int, steps: int, gemm: int, batch: int = 128) -> dict:
    import torch
    import torch.nn.functional as F

    from debench.registry import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("resnet20").to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    a, b = torch.randn(gemm, gemm), torch.randn(gemm, gemm)

    def train_step():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def matmul():
        torch.mm(a, b)

    flops = step_flops(model, x, y, opt)
    for _ in range(3):  # warm-up: oneDNN primitives, MKL buffers
        train_step()
        matmul()
    step_s, gemm_s = [], []
    for r in range(repeats):
        pair = [("step", train_step), ("gemm", matmul)]
        for name, fn in pair if r % 2 == 0 else reversed(pair):
            (step_s if name == "step" else gemm_s).append(_median_time(fn, steps))
        print(f"repeat {r + 1}/{repeats}: step {step_s[-1] * 1e3:.1f} ms, sgemm {gemm} "
              f"{gemm_s[-1] * 1e3:.1f} ms", flush=True)
    return {"threads": threads, "batch": batch, "gemm": gemm, "step_flops": flops,
            "gemm_flops": 2 * gemm ** 3, "step_s": statistics.median(step_s),
            "gemm_s": statistics.median(gemm_s), "repeats": repeats, "steps": steps,
            "torch": torch.__version__}


def summarise(m: dict, target_ms: float) -> list[str]:
    step_rate = m["step_flops"] / m["step_s"] / 1e9
    gemm_rate = m["gemm_flops"] / m["gemm_s"] / 1e9
    floor_ms = m["step_flops"] / (gemm_rate * 1e9) * 1e3
    need = m["step_flops"] / (target_ms / 1e3) / 1e9
    return [
        f"ResNet-20 training step, batch {m['batch']}, fp32, channels_last, {m['threads']} thread(s), "
        f"torch {m['torch']}; medians of {m['repeats']} repeats x {m['steps']} calls",
        "",
        "| quantity | value |",
        "| --- | ---: |",
        f"| work of one step (FlopCounterMode: convolutions and matrix products) | {m['step_flops'] / 1e9:.2f} GFLOP |",
        f"| step time | {m['step_s'] * 1e3:.1f} ms |",
        f"| step rate | {step_rate:.1f} GFLOP/s |",
        f"| sgemm {m['gemm']}x{m['gemm']} rate (the ceiling) | {gemm_rate:.1f} GFLOP/s |",
        f"| step rate / sgemm rate | {step_rate / gemm_rate:.3f} |",
        f"| step time at the sgemm rate (the floor) | {floor_ms:.1f} ms |",
        f"| rate a {target_ms:g} ms step needs | {need:.1f} GFLOP/s ({need / gemm_rate:.2f}x the sgemm rate) |",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="timed calls per repeat (median taken)")
    ap.add_argument("--gemm", type=int, default=2048, help="side of the square sgemm")
    ap.add_argument("--target-ms", type=float, default=108.0,
                    help="a step time to test against the ceiling (issue 25 quotes 108 ms)")
    ap.add_argument("--out", help="write the raw measurement as JSON here")
    a = ap.parse_args(argv)
    for key in ("threads", "repeats", "steps", "gemm"):
        if getattr(a, key) < 1:
            ap.error(f"--{key} must be at least 1, got {getattr(a, key)}")
    m = measure(a.threads, a.repeats, a.steps, a.gemm)
    print("\n".join(["", *summarise(m, a.target_ms)]))
    if a.out:
        from pathlib import Path

        Path(a.out).write_text(json.dumps(m, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
