"""Where one short training job's wall time goes: the fixed cost that every Snakemake ``train``
job pays, which dominates the smoke preset (74 jobs of 8 steps each).

    python benchmarks/job_overhead.py [--repeats 3] [--model resnet20]

Each measurement is a fresh process, timed from outside, median of ``--repeats``:

* imports alone: ``import torch``; ``torch`` plus ``torch._dynamo`` (which the first
  ``torch.optim`` optimizer imports); ``mlflow`` plus opening the SQLite store;
* the smoke preset's training job (batch 16, 8 steps, evaluation, activation probe, checkpoint,
  metrics.json) with tracking off and with an MLflow SQLite store, each both as ``debench train``
  runs it (leaving with ``os._exit`` once its outputs are durable) and with the interpreter's
  normal teardown (``sys.exit(main(...))``);
* the same job with MLflow, handed by ``debench train`` to a preloaded fork server
  (``debench.forkserver``, what a local Snakemake run of the smoke preset does), which is started
  once before the repeats and warmed up by one untimed job; the benchmark fails if the server
  declined any of them (a declined job runs in its own process, and would be timed as a fork).

Variants run alternately within each repeat, so machine load hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NORMAL_EXIT = "import sys; from debench.cli import main; sys.exit(main(sys.argv[1:]))"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="resnet20")
    args = parser.parse_args()
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="debench-overhead-"))
    server = None
    try:
        from debench import forkserver
        from debench.data.cache import prepare_dataset
        from debench.track.tracker import init_store

        cache = work / "cifar10.npz"
        prepare_dataset("cifar10", "synthetic", cache, train_size=128, test_size=64, seed=0)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        ids = init_store(uri, ["overhead"])
        (work / "ids.json").write_text(json.dumps({"experiment_ids": ids}))

        def spec(tracking: bool) -> str:
            return json.dumps({
                "experiment": "overhead", "preset": "smoke", "table": "discrete", "mode": "paper", "seed": 0,
                "model": args.model, "dataset": "cifar10", "model_args": {}, "data": {"cache": str(cache)},
                "protocol": {"batch_size": 16, "iterations": 8, "eval_batch_size": 128, "checkpoint_every": 1,
                             "optimizer": "sgd", "lr": 0.01, "momentum": 0.9},
                "runtime": {"device": "cpu", "channels_last": True, "amp": "off", "compile": False},
                "tracking": {"enabled": tracking, "uri": uri},
                "paths": {"metrics": str(work / "run" / "metrics.json"), "checkpoints": str(work / "ckpt")},
            })

        def train_cmd(tracking: bool, fast: bool) -> list[str]:
            head = [py, "-m", "debench.cli"] if fast else [py, "-c", NORMAL_EXIT]
            return [*head, "train", "--spec", spec(tracking), "--tracking-ids", str(work / "ids.json"),
                    "--threads", "1"]

        variants = {
            "python -c pass": [py, "-c", "pass"],
            "import torch": [py, "-c", "import torch"],
            "import torch, torch._dynamo": [py, "-c", "import torch, torch._dynamo"],
            "import mlflow + open the store": [py, "-c", "from mlflow.tracking import MlflowClient; "
                                               f"MlflowClient({uri!r}).get_experiment({ids['overhead']!r})"],
            "train, tracking off, normal exit": train_cmd(False, False),
            "train, tracking off, debench train": train_cmd(False, True),
            "train, MLflow SQLite, normal exit": train_cmd(True, False),
            "train, MLflow SQLite, debench train": train_cmd(True, True),
        }
        server = forkserver.start(work / "fork_server.log")
        fork_env = dict(os.environ)
        os.environ.pop(forkserver.ENV)  # only the fork-server variant uses it
        fork = "train, MLflow SQLite, fork server"
        variants[fork] = train_cmd(True, True)
        timed(variants[fork], fork_env)  # the server's imports happen here, untimed
        times: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.repeats):
            for name, cmd in variants.items():
                shutil.rmtree(work / "run", ignore_errors=True)
                shutil.rmtree(work / "ckpt", ignore_errors=True)  # every job trains from scratch
                times[name].append(timed(cmd, fork_env if name == fork else None))
            print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr)
        forked = (work / "fork_server.log").read_text().count(": debench train")
        if forked != args.repeats + 1:  # a declined job runs in its own process: its time is no fork's
            raise SystemExit(f"only {forked} of {args.repeats + 1} fork-server jobs were forked:\n"
                             + (work / "fork_server.log").read_text()[-2000:])
        print(f"{args.model}, smoke-preset job (batch 16, 8 steps), 1 thread; median of {args.repeats} "
              "alternated repeats, seconds of wall time per process")
        for name, ts in times.items():
            print(f"  {name:<38}{statistics.median(ts):>7.2f}")
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"teardown skipped by debench train's fast exit: "
              f"{med['train, MLflow SQLite, normal exit'] - med['train, MLflow SQLite, debench train']:.2f} s "
              f"(tracking on), {med['train, tracking off, normal exit'] - med['train, tracking off, debench train']:.2f}"
              " s (tracking off)")
        print(f"cost of MLflow tracking per job: "
              f"{med['train, MLflow SQLite, debench train'] - med['train, tracking off, debench train']:.2f} s")
        print(f"fork server against a process of its own (MLflow SQLite): {med[fork]:.2f} s against "
              f"{med['train, MLflow SQLite, debench train']:.2f} s per job, "
              f"{med['train, MLflow SQLite, debench train'] / med[fork]:.1f}x faster")
    finally:
        forkserver.stop(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
