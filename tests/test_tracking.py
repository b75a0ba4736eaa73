"""MLflow: the store is created once, then parallel training processes lose no run or metric."""

from __future__ import annotations

import json

import pytest

from debench.track.tracker import default_tracking_uri, init_store, redact
from tests.conftest import make_spec, train_concurrently

mlflow = pytest.importorskip("mlflow")


def test_redact_hides_credentials():
    assert redact("postgresql://user:secret@db:5432/mlflow") == "postgresql://***@db:5432/mlflow"
    assert redact("http://alice@host:5000") == "http://***@host:5000"
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


@pytest.mark.slow
def test_parallel_training_processes_all_tracked(tmp_path, synthetic_cache):
    n = 4
    uri = default_tracking_uri(tmp_path)
    ids = init_store(uri, ["parallel"])
    train_concurrently([
        make_spec(tmp_path / f"s{seed}", synthetic_cache, experiment="parallel", seed=seed,
                  protocol={"epochs": 2, "batch_size": 128},
                  tracking={"enabled": True, "uri": uri, "experiment_id": ids["parallel"]})
        for seed in range(n)
    ], timeout=600)
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs([ids["parallel"]])
    assert len(runs) == n
    assert not client.search_runs([client.get_experiment_by_name("Default").experiment_id])
    for run in runs:
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "epoch/test_accuracy")
        assert sorted(m.step for m in history) == [1, 2]  # two epochs
        assert [m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy")] == [0]  # the record
        assert run.data.params["protocol.epochs"] == "2"
        assert {"metrics.json", "epochs.csv"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        seed = run.data.params["seed"]
        rec = json.loads((tmp_path / f"s{seed}" / "run" / "metrics.json").read_text())
        assert rec["mlflow_run_id"] == run.info.run_id
        assert run.data.metrics["test_accuracy"] == pytest.approx(rec["test_accuracy"])


def test_unreachable_server_does_not_stop_training(tmp_path, synthetic_cache, caplog):
    spec = make_spec(tmp_path, synthetic_cache, protocol={"epochs": 1},
                     tracking={"enabled": True, "uri": "http://127.0.0.1:9", "experiment_id": "1"})
    from debench.train.loop import train
    import os

    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "2"
    try:
        rec = train(spec)
    finally:
        del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"], os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]
    assert rec["status"] == "ok" and rec["mlflow_run_id"] is None
    assert (tmp_path / "run" / "metrics.json").exists()
    assert "tracking is off" in caplog.text


@pytest.mark.slow  # an SQLite store's schema migration: 5-9 s on the shared 2-core machine
def test_the_runs_table_shows_the_reported_number_not_the_last_epochs(tmp_path):
    # under select_by: best_val the reported test accuracy is the selected epoch's, not the last
    # one's; MLflow's runs table shows a metric's value at its highest step
    from debench.track.tracker import EPOCH_PREFIX, MlflowTracker

    uri = default_tracking_uri(tmp_path)
    exp = init_store(uri, ["sel"])["sel"]
    tracker = MlflowTracker(uri, exp, "sel")
    tracker.start("m-seed0", {}, {})
    tracker.log_epoch({"test_accuracy": 80.0, "val_accuracy": 70.0}, step=1)
    tracker.log_epoch({"test_accuracy": 90.0, "val_accuracy": 60.0}, step=2)
    tracker.finish({"test_accuracy": 80.0}, [], "ok")
    client = mlflow.tracking.MlflowClient(uri)
    run = client.get_run(tracker.run_id)
    assert run.data.metrics["test_accuracy"] == 80.0
    history = client.get_metric_history(tracker.run_id, f"{EPOCH_PREFIX}test_accuracy")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(1, 80.0), (2, 90.0)]
