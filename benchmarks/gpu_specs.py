"""Run specs of He et al.'s ResNet-20 (config/config.yaml, experiment resnet_he2016) for gpu_reproduce.sh.

The specs are what the Snakemake train rule would hand ``debench train`` for the survey config
(``debench.config.run_spec``), with the data cache and output folders of the script. With
``--iterations`` other than the config's budget the runs are marked ``comparable: false`` and
get the preset ``gpu_reproduce_reduced``, so a shortened run can never sit beside a published
number as if it were one.

Usage: python benchmarks/gpu_specs.py --cache C --results R --seeds 0 1 2 [--iterations N] [--device D]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from debench.config import check_config, run_spec

EXPERIMENT, DATASET = "resnet_he2016", "cifar10"


def specs(config: dict, cache: str, results: Path, seeds: list[int], iterations: int | None,
          device: str, model: str = "resnet20") -> list[dict]:
    """One spec per seed; see the module docstring for the reduced-budget rule."""
    protocol = config["experiments"][EXPERIMENT]["protocol"]
    reduced = iterations is not None and iterations != protocol.get("iterations")
    if reduced:
        protocol.update(iterations=iterations, milestones=[m for m in protocol.get("milestones", []) if m < iterations])
    config["preset"] = "gpu_reproduce_reduced" if reduced else config["preset"]
    config["comparable"] = bool(config.get("comparable")) and not reduced
    config["runtime"] = {**config.get("runtime", {}), "device": device}
    check_config(config)
    out = []
    for seed in seeds:
        tail = f"{EXPERIMENT}/{DATASET}/{model}/seed{seed}"
        out.append(run_spec(config, EXPERIMENT, DATASET, model, seed, cache=cache,
                            metrics=str(results / "runs" / tail / "metrics.json"),
                            checkpoints=str(results / "checkpoints" / tail), tracking={"enabled": False}))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    p.add_argument("--cache", required=True, help="the prepared cifar10.npz cache")
    p.add_argument("--results", type=Path, required=True, help="folder of runs/ and checkpoints/")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=None, help="default: the config's (64000)")
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="resnet20", help="a model of the resnet_he2016 experiment (resnet56: the timed survey run)")
    p.add_argument("--out", type=Path, required=True, help="folder for spec_seed<N>.json")
    a = p.parse_args()
    config = yaml.safe_load(a.config.read_text())
    a.out.mkdir(parents=True, exist_ok=True)
    if a.model not in config["experiments"][EXPERIMENT]["models"]:
        p.error(f"--model {a.model}: not a model of experiment {EXPERIMENT} in {a.config}")
    for spec in specs(config, a.cache, a.results, a.seeds, a.iterations, a.device, a.model):
        (a.out / f"spec_{a.model}_seed{spec['seed']}.json").write_text(json.dumps(spec, sort_keys=True))
        print(f"{a.out}/spec_{a.model}_seed{spec['seed']}.json: {spec['protocol']['iterations']} iterations, "
              f"comparable {spec['comparable']}")


if __name__ == "__main__":
    main()
