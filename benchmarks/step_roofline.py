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

``--compile MODE`` also times the same step with the model under ``torch.compile(mode=MODE)``
(``default`` for inductor's default), a copy with the same weights, alternated with the others.
``--profile`` prints where the eager step's time goes (``torch.profiler``, 5 steps, by operator).

    python benchmarks/step_roofline.py --threads 2 --repeats 5 --compile default --profile
    python benchmarks/step_roofline.py --threads 2 --repeats 3 --nchw   # channels_last against NCHW
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


def measure(threads: int, repeats: int, steps: int, gemm: int, batch: int = 128,
            compile_mode: str | None = None, profile: bool = False, nchw: bool = False) -> dict:
    import copy

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

    def stepper(net, optimiser, inputs=x):
        def train_step():
            loss = F.cross_entropy(net(inputs), y)
            loss.backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
        return train_step

    def matmul():
        torch.mm(a, b)

    fns = {"step": stepper(model, opt), "gemm": matmul}
    compile_s = None
    if compile_mode:
        twin = copy.deepcopy(model)
        twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        compiled = torch.compile(twin, mode=None if compile_mode == "default" else compile_mode)
        fns["compiled step"] = stepper(compiled, twin_opt)
        t0 = time.perf_counter()
        fns["compiled step"]()
        compile_s = time.perf_counter() - t0
    if nchw:  # the same step with NCHW (contiguous) weights and inputs, alternated with the others
        twin = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
        twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        fns["NCHW step"] = stepper(twin, twin_opt, x.contiguous())
    flops = step_flops(model, x, y, opt)
    for _ in range(3):  # warm-up: oneDNN primitives, MKL buffers
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name in list(fns) if r % 2 == 0 else reversed(list(fns)):
            times[name].append(_median_time(fns[name], steps))
        print(f"repeat {r + 1}/{repeats}: " + ", ".join(
            f"{'sgemm ' + str(gemm) if name == 'gemm' else name} {ts[-1] * 1e3:.1f} ms" for name, ts in times.items()),
            flush=True)
    result = {"threads": threads, "batch": batch, "gemm": gemm, "step_flops": flops,
              "gemm_flops": 2 * gemm ** 3, "step_s": statistics.median(times["step"]),
              "gemm_s": statistics.median(times["gemm"]), "repeats": repeats, "steps": steps,
              "torch": torch.__version__}
    if compile_mode:
        result.update(compile_mode=compile_mode, compiled_step_s=statistics.median(times["compiled step"]),
                      compile_s=compile_s)
    if nchw:
        result["nchw_step_s"] = statistics.median(times["NCHW step"])
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as profiler

        with profiler(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                fns["step"]()
        result["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return result


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
    ] + ([
        f"| step time under torch.compile ({m['compile_mode']}; {m['compile_s']:.0f} s to compile) | "
        f"{m['compiled_step_s'] * 1e3:.1f} ms |",
        f"| eager / compiled | {m['step_s'] / m['compiled_step_s']:.3f} |",
    ] if "compiled_step_s" in m else []) + ([
        f"| step time in NCHW (contiguous) | {m['nchw_step_s'] * 1e3:.1f} ms |",
        f"| NCHW / channels_last | {m['nchw_step_s'] / m['step_s']:.3f} |",
    ] if "nchw_step_s" in m else []) + (["", "Where the eager step's time goes (5 steps):", m["profile"]]
                                            if "profile" in m else [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="timed calls per repeat (median taken)")
    ap.add_argument("--gemm", type=int, default=2048, help="side of the square sgemm")
    ap.add_argument("--target-ms", type=float, default=108.0,
                    help="a step time to test against the ceiling (issue 25 quotes 108 ms)")
    ap.add_argument("--compile", metavar="MODE", help="also time the step under torch.compile(mode=MODE); "
                    "'default' for inductor's default mode")
    ap.add_argument("--nchw", action="store_true", help="also time the step in NCHW (contiguous) memory format")
    ap.add_argument("--profile", action="store_true", help="print where the eager step's time goes")
    ap.add_argument("--out", help="write the raw measurement as JSON here")
    a = ap.parse_args(argv)
    for key in ("threads", "repeats", "steps", "gemm"):
        if getattr(a, key) < 1:
            ap.error(f"--{key} must be at least 1, got {getattr(a, key)}")
    m = measure(a.threads, a.repeats, a.steps, a.gemm, compile_mode=a.compile, profile=a.profile, nchw=a.nchw)
    print("\n".join(["", *summarise(m, a.target_ms)]))
    if a.out:
        from pathlib import Path

        Path(a.out).write_text(json.dumps(m, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
