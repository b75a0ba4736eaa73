"""Several training jobs on one GPU: aggregate throughput of 1, 2, 4, 8 concurrent jobs, side by side.

Each job is a real ``debench train`` process (its own CUDA context, the default runtime: bf16 and
CUDA graphs for the CIFAR ResNets), all on the same device, started together. For k concurrent
jobs the benchmark reports, in one run and alternating the k values within each repeat:
- end-to-end aggregate images/s: all jobs' training images / wall time from the first start to the
  last exit (start-up and compilation included: what a user's bill sees);
- steady-state aggregate images/s over the overlap window: the parent stamps each job's epoch lines
  as they are printed; from the moment every job has finished its first epoch (start-up and CUDA
  graph capture behind all of them) to the moment the first job prints its last epoch, the images
  all jobs trained (cumulative images interpolated between epoch ends) over that window's length.
  No window (a job ended before another finished its first epoch) gives null: lengthen --epochs.
  (Until 2026-12-04 this was the sum of each job's last-epoch images/s, which counts jobs whose last
  epochs did not overlap as if they ran together and overstates packing.);
- each job's final test accuracy (packing must not change what a run learns: compare the seeds'
  accuracies across k).
Ratios are against k = 1 (one job at a time) from the same repeat.

    python benchmarks/gpu_packing.py --models resnet20 resnet56 --jobs 1 2 4 8 --epochs 4 --npz .devdata/cifar10
    python benchmarks/gpu_packing.py --device cpu --models resnet20 --jobs 1 2 --epochs 1 --train-size 256 --repeats 1

On a machine without the shards, ``--train-size`` synthetic images are used (same cost per step,
accuracies meaningless).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
# an epoch's end ("[m/d/seed0] epoch 3/6, loss ..."), not the progress lines ("epoch 3/6 step 867")
EPOCH_LINE = re.compile(r"\] epoch \d+/\d+, loss")


def run_batch(model: str, k: int, cache: Path, a: argparse.Namespace, tmp: Path, n_train: int) -> dict:
    """Start ``k`` jobs of ``model`` at once (seeds 0..k-1); wait; return their figures."""
    steps = a.epochs * -(-n_train // a.batch)
    procs, folders = [], []
    start = time.perf_counter()
    for seed in range(k):
        folder = tmp / f"{model}-k{k}-s{seed}-{time.time_ns()}"
        spec = {
            "experiment": "packing", "preset": "bench", "table": "discrete", "mode": "paper", "model": model,
            "dataset": "cifar10", "seed": seed,
            "protocol": {"iterations": steps, "batch_size": a.batch, "lr": 0.1, "weight_decay": 5e-4,
                         "schedule": "cosine", "eval_every": 10**6, "checkpoint_every": 10**6,
                         "eval_batch_size": 1000},
            "runtime": {"device": a.device, "threads": a.threads},
            "data": {"cache": str(cache)}, "tracking": {"enabled": False},
            "paths": {"metrics": str(folder / "metrics.json"), "checkpoints": str(folder / "ckpt")},
        }
        procs.append(subprocess.Popen([sys.executable, "-m", "debench.cli", "train", "--spec", json.dumps(spec)],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        folders.append(folder)
    stamps: list[list[float]] = [[] for _ in procs]  # each job's epoch-end times, stamped by this process
    logs: list[list[str]] = [[] for _ in procs]

    def read(i: int) -> None:
        for line in procs[i].stdout:
            logs[i].append(line)
            if EPOCH_LINE.search(line):
                stamps[i].append(time.perf_counter())

    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(k)]
    for t in readers:
        t.start()
    for i, p in enumerate(procs):
        p.wait()
        readers[i].join()
        if p.returncode != 0:
            raise SystemExit(f"{model} k={k}: a job failed:\n{''.join(logs[i])[-3000:]}")
    wall = time.perf_counter() - start
    accs = [json.loads((folder / "metrics.json").read_text())["test_accuracy"] for folder in folders]
    per_epoch = steps // a.epochs * a.batch
    return {"wall_s": wall, "end_to_end_img_s": k * steps * a.batch / wall,
            "steady_img_s": overlap_rate(stamps, per_epoch), "epoch_stamps_s": [[t - start for t in s] for s in stamps],
            "test_accuracy": accs}


def overlap_rate(stamps: list[list[float]], per_epoch: int) -> float | None:
    """Aggregate images/s of all jobs over the window in which every one of them was training.

    ``stamps[j]`` are job j's epoch-end times; job j has trained ``e * per_epoch`` images at its
    e-th stamp, linearly in between. The window runs from the last first-epoch end to the first
    last-epoch end; None when it is empty (or a job printed fewer than two epochs).
    """
    if any(len(s) < 2 for s in stamps):
        return None
    t_a, t_b = max(s[0] for s in stamps), min(s[-1] for s in stamps)
    if t_b <= t_a:
        return None
    import numpy as np

    trained = [np.interp([t_a, t_b], s, per_epoch * np.arange(1, len(s) + 1)) for s in stamps]
    return float(sum(b - a for a, b in trained)) / (t_b - t_a)


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(v: float | None, spec: str = "8.0f") -> str:
    return format(v, spec) if v is not None else "no overlap".rjust(int(spec.split(".")[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 2, 4, 8], help="concurrent jobs per measurement")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per job")
    ap.add_argument("--npz", default=None, help="folder of the CIFAR-10 .npz shards (real data)")
    ap.add_argument("--train-size", type=int, default=5000, help="synthetic train images (without --npz)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args()
    if 1 not in a.jobs:
        ap.error("--jobs must include 1 (the one-at-a-time baseline)")

    from debench.data import load_cached, prepare_dataset

    tmp = Path(tempfile.mkdtemp(prefix="debench-packing-"))
    cache = tmp / "cifar10.npz"
    if a.npz:
        prepare_dataset("cifar10", "npz", cache, npz_dir=a.npz)
    else:
        prepare_dataset("cifar10", "synthetic", cache, train_size=a.train_size, test_size=500)
    n_train = len(load_cached(cache)[0]["y_train"])
    if a.device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(0)
    else:
        name = f"CPU ({a.threads} threads per job)"
    print(f"device: {name}; {n_train} train images ({'real' if a.npz else 'synthetic'}); batch {a.batch}; "
          f"{a.epochs} epochs per job; jobs {a.jobs}; {a.repeats} repeat(s)", flush=True)
    results = []
    for model in a.models:
        per_k: dict[int, list[dict]] = {k: [] for k in a.jobs}
        for r in range(a.repeats):
            order = a.jobs if r % 2 == 0 else list(reversed(a.jobs))  # alternate against drift
            for k in order:
                res = run_batch(model, k, cache, a, tmp, n_train)
                per_k[k].append(res)
                if a.out:  # what was measured so far survives a timeout
                    Path(a.out).write_text(json.dumps({"partial": True, "model": model, "device": name,
                                                       "done": results, "runs_by_jobs": per_k}, indent=2))
                print(f"  {model} repeat {r} k={k}: end-to-end {res['end_to_end_img_s']:8.0f} img/s, steady "
                      f"{_fmt(res['steady_img_s'])} img/s, acc {res['test_accuracy']}", flush=True)
        base_e2e = statistics.median(x["end_to_end_img_s"] for x in per_k[1])
        base_steady = _median(x["steady_img_s"] for x in per_k[1])
        for k, runs in per_k.items():
            e2e = statistics.median(x["end_to_end_img_s"] for x in runs)
            steady = _median(x["steady_img_s"] for x in runs)
            results.append({"model": model, "jobs": k, "device": name, "end_to_end_img_s": e2e,
                            "steady_img_s": steady, "ratio_end_to_end": e2e / base_e2e,
                            "ratio_steady": steady / base_steady if steady and base_steady else None, "runs": runs})
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
    print("\nmodel       jobs   end-to-end img/s (x one-at-a-time)   steady img/s (x)   test accuracies")
    for r in results:
        accs = [round(v, 2) for x in r["runs"] for v in x["test_accuracy"]]
        print(f"{r['model']:11s} {r['jobs']:4d}   {r['end_to_end_img_s']:12.0f} ({r['ratio_end_to_end']:5.2f}x)"
              f"              {_fmt(r['steady_img_s'])} ({_fmt(r['ratio_steady'], '5.2f')}x)   {accs}")


if __name__ == "__main__":
    main()
