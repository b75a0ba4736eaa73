"""The Snakemake workflow end to end, in a temporary copy of the project."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def project_copy(tmp: Path) -> Path:
    dst = tmp / "project"
    dst.mkdir()
    for item in ("Snakefile", "workflow", "config", "environment.yml"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / item)
    return dst


def reduced_smoke(project: Path) -> Path:
    """The smoke preset cut to the first model of every experiment, two seeds."""
    cfg = yaml.safe_load((project / "config" / "smoke.yaml").read_text())
    from debench.config import resolve_models

    for name, exp in cfg["experiments"].items():
        exp["models"] = resolve_models(exp["models"], name)[:1]
        exp["datasets"] = exp["datasets"][:1]
        exp["model_args"] = {m: a for m, a in exp.get("model_args", {}).items() if m in exp["models"]}
        exp["protocol_overrides"] = {m: a for m, a in exp.get("protocol_overrides", {}).items() if m in exp["models"]}
    cfg["seeds"] = [0, 1]
    path = project / "config" / "test.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_default_config_lists_the_survey_training_jobs(tmp_path):
    project = project_copy(tmp_path)
    out = subprocess.run(SNAKEMAKE + ["-n", "--cores", "1"], cwd=project, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", log, flags=re.M))
    assert int(counts["train"]) >= 15
    for depth in (20, 32, 44, 56, 110):
        for seed in (0, 1, 2):
            assert f"resnet_he2016/cifar10/resnet{depth}/seed{seed}/metrics.json" in log


@pytest.mark.e2e
@pytest.mark.slow
def test_smoke_dag_end_to_end(tmp_path):
    project = project_copy(tmp_path)
    config = reduced_smoke(project)
    run = subprocess.run(SNAKEMAKE + ["--cores", "2", "--configfile", str(config)], cwd=project,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    results = project / "results" / "smoke"
    cfg = yaml.safe_load(config.read_text())
    runs = pd.read_csv(results / "runs.csv")
    assert len(runs) == len(cfg["experiments"]) * 2
    assert (runs["status"] == "ok").all()
    for table in {e["table"] for e in cfg["experiments"].values()}:
        csv = pd.read_csv(results / "tables" / f"{table}.csv")
        assert len(csv) >= 1 and csv["n"].min() >= 1 and (csv["verdict"] == "not comparable").all()
        assert (results / "tables" / f"{table}.md").exists() and (results / "tables" / f"{table}.tex").exists()
    html = (results / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and 'id="summary"' in html
    assert all(f'data-table="{t}"' in html for t in {e["table"] for e in cfg["experiments"].values()})
    # every training job is one MLflow run with per-epoch metrics
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    ids = json.loads((results / "mlflow" / "experiments.json").read_text())["experiment_ids"]
    tracked = client.search_runs(list(ids.values()))
    assert len(tracked) == len(runs)
    assert all(client.get_metric_history(r.info.run_id, "epoch/train_loss") for r in tracked)
    # every training job was forked from the run's preloaded server (debench.forkserver), now ended
    server_log = (results / "logs" / "fork_server.log").read_text()
    assert server_log.count(": debench train") == len(runs), server_log[-2000:]
    sock = re.search(r"fork server: (\S+) ready", server_log).group(1)
    assert not Path(sock).exists()
    # the same DAG builds Snakemake's own report
    rep = subprocess.run(SNAKEMAKE + ["--cores", "1", "--configfile", str(config), "--report", "report.zip"],
                         cwd=project, capture_output=True, text=True, timeout=600)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert (project / "report.zip").stat().st_size > 10_000
    # nothing to do on a rerun: outputs are complete and not recomputed
    again = subprocess.run(SNAKEMAKE + ["-n", "--cores", "1", "--configfile", str(config)], cwd=project,
                           capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_bad_config_is_rejected_naming_key_and_line(tmp_path):
    project = project_copy(tmp_path)
    cfg = (project / "config" / "smoke.yaml").read_text().replace('models: ["resnet[0-9][0-9]*",', "models: [resnet65,")
    (project / "config" / "bad.yaml").write_text(cfg)
    out = subprocess.run(SNAKEMAKE + ["-n", "--cores", "1", "--configfile", "config/bad.yaml"], cwd=project,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    msg = out.stdout + out.stderr
    assert "experiments.smoke_discrete.models" in msg and "resnet65" in msg and "resnet56" in msg
    assert re.search(r"\(line \d+\)", msg)
