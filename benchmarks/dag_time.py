"""DAG construction time: `snakemake -n` over a synthetic matrix of N training runs.

Builds a configuration of N = models x datasets x seeds runs from the registered classifiers
(no training, nothing written but Snakemake's metadata), then times the dry run end to end,
median of ``--repeats``. Target: under 10 s for 1,000 runs.

    python benchmarks/dag_time.py --runs 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from debench.registry import list_models  # noqa: E402


def matrix(n_runs: int) -> dict:
    models = list_models(task="classify")
    datasets = ["cifar10", "cifar100"]
    seeds = list(range(-(-n_runs // (len(models) * len(datasets)))))
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg.update(preset="dagbench", seeds=seeds)
    cfg["experiments"] = {"matrix": {"table": "discrete", "mode": "common", "datasets": datasets, "models": models,
                                     "protocol": {"epochs": 1}}}
    return cfg, len(models) * len(datasets) * len(seeds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    cfg, n = matrix(a.runs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dagbench.yaml"
        path.write_text(yaml.safe_dump(cfg))
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--quiet", "rules",
                                  "--configfile", str(path)], cwd=ROOT, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if out.returncode:
                sys.exit(out.stderr[-3000:])
        jobs = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("train")]
    print(f"{n} training runs ({jobs[0].split()[-1] if jobs else '?'} train jobs in the DAG): "
          f"snakemake -n median {statistics.median(times):.2f} s over {a.repeats} repeats "
          f"({', '.join(f'{t:.2f}' for t in times)}); target < 10 s")


if __name__ == "__main__":
    main()
