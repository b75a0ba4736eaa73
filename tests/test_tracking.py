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
        history = client.get_metric_history(run.info.run_id, "test_accuracy")
        assert sorted(m.step for m in history) == [0, 1, 2]  # two epochs and the final summary
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
