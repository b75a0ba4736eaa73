"""One run of a config's experiment, outside Snakemake: the exact spec the DAG's train rule would
give ``debench train``, on a machine with no Snakemake or MLflow (a lent GPU machine).

It prepares the dataset cache from the offline ``.npz`` shards, builds the spec with
``debench.config.run_spec`` from the validated config (so the protocol is the DAG's, not a copy),
runs ``debench train`` on it and copies the run record (``metrics.json``, ``epochs.csv``), the
spec and the log into ``--out``. Tracking is off (no MLflow there); the record says so.

    python benchmarks/he2016_run.py --npz .devdata/npz --model resnet56 --device cuda --out $OUT
    # a CPU rehearsal of the same path, 20 iterations:
    python benchmarks/he2016_run.py --npz ../shared/data --model resnet20 --device cpu --iterations 20 --out /tmp/x

``--iterations`` shortens the protocol (milestones scaled with it) for rehearsals only; the
record's protocol then says so and its run is not comparable.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    ap.add_argument("--experiment", default="resnet_he2016")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--npz", type=Path, required=True, help="folder holding cifar10/*.npz and SHA256SUMS")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iterations", type=int, default=None, help="rehearsal only: fewer iterations")
    ap.add_argument("--work", type=Path, default=Path("/tmp/debench-he2016"))
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    from debench.config import load_config, run_spec

    config = load_config(a.config)
    if a.experiment not in config["experiments"]:
        raise SystemExit(f"{a.config}: no experiment {a.experiment!r}")
    config["runtime"] = {**config.get("runtime", {}), "device": a.device}
    config["data"] = {**config.get("data", {}), "source": "npz"}
    a.work.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    cache = a.work / "data" / f"{a.dataset}.npz"
    t0 = time.perf_counter()
    if not cache.exists():
        subprocess.run([sys.executable, "-m", "debench.cli", "prepare-data", "--dataset", a.dataset,
                        "--source", "npz", "--out", str(cache),
                        "--options", json.dumps({"npz_dir": str(a.npz)})], check=True)
    prepared = time.perf_counter() - t0
    run = a.work / "runs" / f"{a.experiment}-{a.model}-seed{a.seed}"
    spec = run_spec(config, a.experiment, a.dataset, a.model, a.seed, cache=str(cache),
                    metrics=str(run / "metrics.json"), checkpoints=str(run / "ckpt"),
                    tracking={"enabled": False})
    if a.iterations:
        full = spec["protocol"]["iterations"]
        spec["protocol"]["iterations"] = a.iterations
        spec["protocol"]["milestones"] = [m * a.iterations // full for m in spec["protocol"].get("milestones", [])]
        spec["comparable"] = False
    (a.out / "spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True))
    log = a.out / f"train_{a.model}_seed{a.seed}.log"
    t1 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call([sys.executable, "-m", "debench.cli", "train", "--spec", json.dumps(spec),
                              "--gpu-slots", "off"], stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t1
    for name in ("metrics.json", "epochs.csv"):
        if (run / name).exists():
            shutil.copy(run / name, a.out / f"{a.model}_seed{a.seed}_{name}")
    print(f"{a.model} seed {a.seed}: debench train exit {rc}, {wall:.1f} s wall "
          f"(data cache {prepared:.1f} s before it); log {log}")
    if rc == 0:
        m = json.loads((run / "metrics.json").read_text())
        print(json.dumps({"test_error": m["test_error"], "best_test_error": m.get("best_test_error"),
                          "steps": m.get("steps"), "train_time_s": m.get("train_time_s"),
                          "wall_time_s": m.get("wall_time_s"), "throughput_img_s": m.get("throughput_img_s"),
                          "train_precision": (m.get("precision") or {}).get("train"),
                          "runtime": m.get("runtime")}, default=str))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
