"""What Snakemake reruns, on a project whose runs are recorded as finished (issue 19.1, 19.4, 18.1).

The runs are never trained here: their outputs are written as placeholders and recorded in
Snakemake's metadata with ``--touch --forceall``, exactly as a finished job records them (the
params included). Every check after that is a dry run, or a real run that must do nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from debench.config import data_dir
from tests.test_workflow import SNAKEMAKE, project_copy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODELS = ("resnet6_mnist", "rknet_mnist")
TINY = {
    "preset": "tiny", "seeds": [0, 1],
    "data": {"source": "synthetic", "cache_dir": "resources/data",
             "synthetic": {"train_size": 32, "test_size": 16, "seed": 0}},
    "runtime": {"device": "cpu"}, "mlflow": {"enabled": False},
    "defaults": {"protocol": {"batch_size": 16, "iterations": 2, "eval_batch_size": 64}},
    "experiments": {"tiny": {"table": "neural_ode", "datasets": ["mnist"], "models": list(MODELS),
                             "protocol": {"optimizer": "sgd", "lr": 0.01}}},
}
CACHE = Path("resources/data") / Path(data_dir(TINY)).name / "mnist.npz"


def metrics(model: str, seed: int) -> str:
    return f"results/tiny/runs/tiny/mnist/{model}/seed{seed}/metrics.json"


def snakemake(project: Path, cfg: dict, *args: str, env: dict | None = None) -> str:
    (project / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    seeds = cfg["seeds"]
    targets = [metrics(m, s) for m in MODELS for s in seeds]
    out = subprocess.run(SNAKEMAKE + [*targets, "--cores", "1", "--configfile", "config/tiny.yaml", *args],
                         cwd=project, capture_output=True, text=True, timeout=300, env=env)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    return log


def planned(log: str, rule: str) -> dict[str, str]:
    """{output: reason} of every job of ``rule`` a dry run lists."""
    jobs = {}
    for block in re.split(r"\n(?=rule \w+:)", log):
        if block.startswith(f"rule {rule}:"):
            out = re.search(r"output: (\S+)", block).group(1).rstrip(",")
            jobs[out] = re.search(r"reason: (.*)", block).group(1)
    return jobs


@pytest.fixture
def finished(tmp_path):
    """A project copy whose four tiny runs are recorded as finished under config TINY."""
    project = project_copy(tmp_path)
    for path in [CACHE, CACHE.with_suffix(".json"), Path("results/tiny/mlflow/experiments.json")] + [
            Path(metrics(m, s)) for m in MODELS for s in (0, 1)]:
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text('{"status": "ok", "placeholder": true}')
    snakemake(project, TINY, "--touch", "--forceall")
    return project


def edited(**changes) -> dict:
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    for path, value in changes.items():
        *keys, last = path.split("__")
        parent = cfg
        for k in keys:
            parent = parent.setdefault(k, {})
        parent[last] = value
    return cfg


def test_an_edited_config_reruns_exactly_the_runs_it_changes(finished):
    assert "Nothing to be done" in snakemake(finished, TINY, "-n")
    log = snakemake(finished, edited(experiments__tiny__protocol_overrides={"rknet_mnist": {"lr": 0.05}}), "-n")
    jobs = planned(log, "train")
    assert set(jobs) == {metrics("rknet_mnist", 0), metrics("rknet_mnist", 1)}, log[-3000:]
    assert all("Params have changed" in r and '"lr": 0.05' in log for r in jobs.values())

    log = snakemake(finished, edited(experiments__tiny__model_args={"resnet6_mnist": {}},
                                     seeds=[0, 1, 2]), "-n")
    assert set(planned(log, "train")) == {metrics(m, 2) for m in MODELS}, log[-3000:]

    cfg = edited(experiments__tiny__model_args={"rknet_mnist": {"step_size": 0.5}})
    assert set(planned(snakemake(finished, cfg, "-n"), "train")) == {metrics("rknet_mnist", s) for s in (0, 1)}

    log = snakemake(finished, edited(data__synthetic={"train_size": 64, "test_size": 16, "seed": 0}), "-n")
    assert len(planned(log, "prepare_data")) == 1
    assert set(planned(log, "train")) == {metrics(m, s) for m in MODELS for s in (0, 1)}, log[-3000:]

    # where results are tracked changes no result
    log = snakemake(finished, edited(mlflow={"enabled": True, "tracking_uri": "sqlite:///elsewhere.db"}), "-n")
    assert planned(log, "train") == {}, log[-3000:]


def test_a_corrupt_cache_never_deletes_a_finished_result(finished):
    (finished / CACHE).write_bytes(b"truncated")
    log = snakemake(finished, TINY)
    assert "Nothing to be done" in log, log[-3000:]
    assert all((finished / metrics(m, s)).exists() for m in MODELS for s in (0, 1))

    # the documented recovery: rebuild the cache in place; no finished run is retrained
    log = snakemake(finished, TINY, "-n", "--forcerun", "prepare_data")
    assert planned(log, "prepare_data") and planned(log, "train") == {}, log[-3000:]
    # a deleted cache (the error's hint) is rebuilt too, and a result lost earlier is trained again
    # (with the cache gone, Snakemake also reruns the runs that read it: they resume from checkpoints)
    (finished / CACHE).unlink()
    (finished / metrics("rknet_mnist", 1)).unlink()
    log = snakemake(finished, TINY, "-n")
    assert list(planned(log, "prepare_data")) == [str(CACHE)]
    assert "Missing output" in planned(log, "train")[metrics("rknet_mnist", 1)], log[-3000:]


def test_rules_find_the_debench_of_the_interpreter_running_snakemake(tmp_path):
    project = project_copy(tmp_path)
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no venv on PATH, as with .venv/bin/snakemake
    (project / "config" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    out = subprocess.run(SNAKEMAKE + [str(CACHE), "--cores", "1", "--configfile", "config/tiny.yaml"],
                         cwd=project, capture_output=True, text=True, timeout=300, env=env)
    job_log = project / CACHE.parent / "logs" / "mnist.log"
    log = out.stdout + out.stderr + (job_log.read_text() if job_log.exists() else "")
    assert out.returncode == 0 and "command not found" not in log, log[-3000:]
    assert (project / CACHE).stat().st_size > 1000
