"""MLflow as a user meets it (issue 18.2, 18.3): artifacts beside the store, runs table first."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from debench.track.tracker import EXPERIMENT_KIND, MlflowTracker, init_store

# MLflow 3.17's UI picks its view from a global "GenAI / Model training" switch (URL parameter
# workflowType, else the browser's last choice, GenAI by default); the Makefile's link sets it.
UI_QUERY = "workflowType=machine_learning"

METRICS = {"test_accuracy": 91.5, "nfe_forward": 26.0, "peak_memory_mb": 123.0}


def tracked_run(tmp: Path) -> tuple[str, str, Path]:
    """A store under tmp/results/p with one finished run that logged an artifact; cwd is tmp."""
    results = tmp / "results" / "p"
    results.mkdir(parents=True)
    uri = f"sqlite:///{results / 'mlflow.db'}"
    exp_id = init_store(uri, ["disc"])["disc"]
    tracker = MlflowTracker(uri, exp_id, "disc")
    tracker.start("resnet20-seed0", {"lr": 0.1}, {"debench.preset": "p"})
    artifact = tmp / "metrics.json"
    artifact.write_text("{}")
    tracker.finish(METRICS, [artifact], "ok")
    return uri, exp_id, results


@pytest.mark.slow  # an SQLite store's schema migration: 5-9 s on the shared 2-core machine
def test_artifacts_stay_beside_the_sqlite_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, _, results = tracked_run(tmp_path)
    assert list(results.rglob("metrics.json")), "the artifact is not under results/p"
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlartifacts").exists()


@pytest.mark.slow  # an SQLite store's schema migration: 5-9 s on the shared 2-core machine
def test_an_experiment_created_by_sync_also_keeps_artifacts_beside_the_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from debench.track.tracker import ensure_experiment

    monkeypatch.chdir(tmp_path)
    uri, _, results = tracked_run(tmp_path)
    client = MlflowClient(uri)
    exp = client.get_experiment(ensure_experiment(client, "synced"))  # what `debench track sync` calls
    assert exp.artifact_location == (results / "mlartifacts" / "synced").resolve().as_uri()


@pytest.mark.slow  # an SQLite store's schema migration: 5-9 s on the shared 2-core machine
def test_experiments_are_marked_as_model_training(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri, exp_id, _ = tracked_run(tmp_path)
    client = MlflowClient(uri)
    assert client.get_experiment(exp_id).tags.get(EXPERIMENT_KIND[0]) == "custom_model_development"
    # an experiment made by an older debench gets the tag when the store is next initialised
    old = client.create_experiment("old")
    init_store(uri, ["old"])
    assert client.get_experiment(old).tags.get(EXPERIMENT_KIND[0]) == "custom_model_development"


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_mlflow_ui_opens_an_experiment_on_its_runs_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, exp_id, _ = tracked_run(tmp_path)
    port = _free_port()
    ui = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port),
                           "--backend-store-uri", uri, "--workers", "1"], cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline and ui.poll() is None, "mlflow ui did not start"
                time.sleep(1)
        out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000",
                              "--window-size=1600,1000", "--dump-dom",
                              f"http://127.0.0.1:{port}/#/experiments/{exp_id}?{UI_QUERY}"],
                             capture_output=True, text=True, timeout=180)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
    dom = out.stdout
    assert out.returncode == 0 and "resnet20-seed0" in dom, (out.stderr[-1500:], dom[-3000:])
    assert "<title>Runs - Experiment" in dom and "Token Usage" not in dom and "Latency" not in dom
