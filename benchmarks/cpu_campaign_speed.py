"""The fastest honest CPU setting for the ResNet-20 campaign, measured side by side in one run.

Settings, each a fresh process (so thread counts are clean), alternated within every repeat:

- ``bare x1 (2 threads)``: the training step alone (forward, backward, SGD with momentum and
  weight decay) on one fixed, already normalised batch: the floor.
- ``loop x1 (2 threads)``: debench's own loop body on the real data path: the resident uint8
  dataset, per-batch gather, pad-crop-flip, per-pixel mean subtraction, channels_last, learning
  rate set per step, loss and accuracy accumulated; plus one evaluation of the test split, which
  the campaign does once per epoch of 391 steps.
- ``loop x2 (1 thread each)``: two such processes at once, one thread each (two seeds side by side).

Printed: median ms per step (per process), images/s of the whole machine, and the epoch cost
(391 steps plus one test evaluation) as seconds and as a ratio to the bare step. fp32 throughout.

    python benchmarks/cpu_campaign_speed.py --npz ../shared/data --steps 60 --repeats 3
    python benchmarks/cpu_campaign_speed.py --steps 4 --repeats 1 --eval-size 256   # synthetic, a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

STEPS_PER_EPOCH = 391  # ceil(50000 / 128)


def _data(npz: str | None, eval_size: int):
    import numpy as np

    if npz:
        root = Path(npz) / "cifar10"
        tr = [np.load(root / f"train_{i:02d}.npz") for i in range(5)]
        te = np.load(root / "test.npz")
        x, y = np.concatenate([d["images"] for d in tr]), np.concatenate([d["labels"] for d in tr])
        xt, yt = te["images"][:eval_size], te["labels"][:eval_size]
    else:
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 5000)
        xt, yt = x[:eval_size], y[:eval_size]
    arrays = {"x_train": x, "y_train": y.astype(np.int64), "x_test": xt, "y_test": yt.astype(np.int64)}
    meta = {"kind": "image", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    return arrays, meta


def worker(mode: str, threads: int, steps: int, npz: str | None, eval_size: int) -> dict:
    """Time ``steps`` training steps (after 3 untimed ones) in this process; return timings."""
    import torch
    import torch.nn.functional as F

    from debench.data.device import DeviceData
    from debench.registry import create_model
    from debench.train.build import make_optimizer
    from debench.train.evaluate import evaluate
    from debench.train.protocol import Protocol, lr_at

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    proto = Protocol.from_dict({"iterations": 64000, "milestones": [32000, 48000], "batch_size": 128, "lr": 0.1,
                                "momentum": 0.9, "weight_decay": 1e-4, "crop_padding": 4, "flip": True,
                                "input_norm": "pixel_mean", "eval_batch_size": 1000})
    arrays, meta = _data(npz, eval_size)
    cpu = torch.device("cpu")
    data = DeviceData(arrays, meta, cpu, norm="pixel_mean")
    model = create_model("resnet20").to(memory_format=torch.channels_last)
    opt = make_optimizer(model, proto, cpu)
    model.train()

    def batches():
        while True:
            yield from data.train_batches(128, gen, crop_padding=4, flip=True)

    gen = torch.Generator().manual_seed(0)
    stream = batches()
    fixed = next(stream)
    loss_sum, correct_sum = torch.zeros(()), torch.zeros((), dtype=torch.long)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        x, y = fixed if mode == "bare" else next(stream)
        if mode == "loop":
            for g in opt.param_groups:
                g["lr"] = lr_at(proto, i, STEPS_PER_EPOCH, 64000)
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if mode == "loop":
            loss_sum += loss.detach() * len(y)
            correct_sum += (out.argmax(1) == y).sum()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    result = {"mode": mode, "threads": threads, "step_s": statistics.median(times), "steps": len(times)}
    if mode == "loop":
        t0 = time.perf_counter()
        evaluate(model, data, proto, True, contextlib.nullcontext, None)
        result["eval_s"] = (time.perf_counter() - t0) * 10000 / len(arrays["y_test"])  # scaled to 10k images
    return result


def _spawn(mode: str, threads: int, a: argparse.Namespace) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", mode, "--threads", str(threads), "--steps", str(a.steps),
           "--eval-size", str(a.eval_size)] + (["--npz", a.npz] if a.npz else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def _collect(procs: list[subprocess.Popen]) -> list[dict]:
    out = []
    for p in procs:
        text, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"worker failed with exit {p.returncode}")
        out.append(json.loads(text.strip().splitlines()[-1]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", help="folder holding cifar10/*.npz (the offline shards); synthetic without")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per process (3 more untimed)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eval-size", type=int, default=10000, help="test images evaluated (time scaled to 10k)")
    ap.add_argument("--worker", choices=["bare", "loop"], help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--out", help="write the raw results as JSON here")
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker, a.threads, a.steps, a.npz, a.eval_size)))
        return 0

    settings = {"bare x1 (2 threads)": ("bare", 2, 1), "loop x1 (2 threads)": ("loop", 2, 1),
                "loop x2 (1 thread each)": ("loop", 1, 2)}
    raw: dict[str, list[list[dict]]] = {k: [] for k in settings}
    for r in range(a.repeats):
        order = list(settings) if r % 2 == 0 else list(reversed(settings))
        for name in order:
            mode, threads, procs = settings[name]
            raw[name].append(_collect([_spawn(mode, threads, a) for _ in range(procs)]))
            print(f"repeat {r + 1}/{a.repeats} {name}: "
                  + ", ".join(f"{w['step_s'] * 1e3:.0f} ms/step" for w in raw[name][-1]), flush=True)

    bare = statistics.median(w["step_s"] for rep in raw["bare x1 (2 threads)"] for w in rep)
    print(f"\n| setting | ms per step (median) | machine img/s | eval of 10k test images (s) | "
          f"s per epoch per seed (391 steps + eval) | seeds per hour | epoch / bare |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (mode, threads, procs) in settings.items():
        step = statistics.median(w["step_s"] for rep in raw[name] for w in rep)
        ev = statistics.median(w.get("eval_s", 0.0) for rep in raw[name] for w in rep)
        epoch = STEPS_PER_EPOCH * step + ev
        seeds_h = procs * 3600 / (epoch * 64000 / STEPS_PER_EPOCH)
        print(f"| {name} | {step * 1e3:.1f} | {procs * 128 / step:.0f} | {ev:.1f} | {epoch:.1f} | "
              f"{seeds_h:.3f} | {epoch / (STEPS_PER_EPOCH * bare):.3f} |")
    if a.out:
        Path(a.out).write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
