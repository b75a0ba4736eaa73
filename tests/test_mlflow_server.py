"""`debench mlflow-server`: a shared tracking server that many concurrent training jobs log to."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from debench.track.tracker import init_store
from tests.conftest import make_spec, train_concurrently

mlflow = pytest.importorskip("mlflow")
N_JOBS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow server at {url} not healthy after {timeout_s} s")


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "debench.cli", "mlflow-server", "--port", str(port),
                             "--root", str(tmp_path / "store")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # debench stops the server's own process group
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    # nothing is left listening on the port once the server was stopped by its pid
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_concurrent_jobs_against_a_server(tmp_path, synthetic_cache, server):
    ids = init_store(server, ["shared"])  # what the track_init rule does, over http
    assert (tmp_path / "store" / "mlflow.db").exists()
    outputs = train_concurrently([
        make_spec(tmp_path / f"s{seed}", synthetic_cache, experiment="shared", seed=seed,
                  protocol={"epochs": 2, "batch_size": 256},
                  tracking={"enabled": True, "uri": server, "experiment_id": ids["shared"]})
        for seed in range(N_JOBS)
    ], timeout=900)
    for out in outputs:
        assert "tracking is off" not in out, out[-2000:]
    client = mlflow.tracking.MlflowClient(server)
    runs = client.search_runs([ids["shared"]])
    assert len(runs) == N_JOBS
    assert sorted(r.data.params["seed"] for r in runs) == [str(s) for s in range(N_JOBS)]
    for run in runs:
        assert run.info.status == "FINISHED"
        rec = json.loads((tmp_path / f"s{run.data.params['seed']}" / "run" / "metrics.json").read_text())
        assert rec["mlflow_run_id"] == run.info.run_id
        steps = {key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
                 for key in ("test_accuracy", "epoch/test_accuracy", "epoch/test_loss", "epoch/train_loss")}
        # per epoch (steps 1, 2) and, for the summary metric, the final record (step 0)
        assert steps == {"test_accuracy": [0], "epoch/test_accuracy": [1, 2], "epoch/test_loss": [1, 2],
                         "epoch/train_loss": [1, 2]}
        assert run.data.metrics["test_accuracy"] == pytest.approx(rec["test_accuracy"])
        # what the runs table groups by, and MLflow's system metrics, also over http (issue 28.6)
        assert (run.data.params["experiment"], run.data.params["table"], run.data.params["family"]) == \
            ("shared", "discrete", "discrete")
        assert "system/cpu_utilization_percentage" in run.data.metrics, sorted(run.data.metrics)
        # artifacts went through the server into its artifact folder
        assert {"metrics.json", "epochs.csv"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert list((tmp_path / "store" / "artifacts").rglob("metrics.json"))
