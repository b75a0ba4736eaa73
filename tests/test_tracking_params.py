"""MLflow runs carry what the runs table groups and filters by, memory under honest names, and
MLflow's system metrics (issue 28.6)."""

from __future__ import annotations

import json
import logging

import pytest

from debench.track import tracker as tr
from debench.track.tracker import GROUP_KEYS, group_params, memory_metrics, system_metrics_available
from tests.conftest import make_spec

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("psutil")  # MLflow's CPU monitor needs it (a declared dependency)


def test_group_params_name_the_records_identity_and_leave_out_nulls():
    head = {"experiment": "discrete", "table": "discrete", "mode": "paper", "preset": "smoke",
            "family": "discrete", "task": "classify", "model": "resnet20", "dataset": "cifar10", "seed": 0,
            "protocol": {"epochs": 2}}
    assert group_params(head) == {k: str(head[k]) for k in GROUP_KEYS}
    assert group_params({**head, "table": None, "mode": None}).keys() == set(GROUP_KEYS) - {"table", "mode"}


def test_memory_metrics_say_what_they_measure():
    cpu = {"peak_memory_mb": None, "activation_memory_mb": 12.5, "provenance": {"process_peak_rss_mb": 812.0}}
    assert memory_metrics(cpu) == {"process_peak_rss_mb": 812.0}  # no CUDA figure on CPU
    gpu = {"peak_memory_mb": 301.0, "provenance": {"process_peak_rss_mb": 2048.0}}
    assert memory_metrics(gpu) == {"cuda_peak_memory_mb": 301.0, "process_peak_rss_mb": 2048.0}
    assert memory_metrics({}) == {}


def test_system_metrics_can_be_switched_off(monkeypatch):
    monkeypatch.delenv("DEBENCH_SYSTEM_METRICS", raising=False)
    assert system_metrics_available()  # psutil is installed (importorskip above)
    monkeypatch.setenv("DEBENCH_SYSTEM_METRICS", "0")
    assert not system_metrics_available()


def test_the_sampling_interval_suits_long_runs():
    # MLflow's default (a point every 10 s) gives a 10-hour run 3,600 points per metric and each of
    # eight parallel jobs a get_run + log_batch every 10 s on a shared SQLite store
    assert tr.SYSTEM_METRICS_INTERVAL_S * tr.SYSTEM_METRICS_SAMPLES >= 60


@pytest.mark.slow  # two SQLite stores (schema migrations) and a 1-epoch run: ~30 s on 2 cores
def test_a_trained_run_is_grouped_measured_and_monitored_and_sync_logs_the_same(tmp_path, synthetic_cache,
                                                                                monkeypatch, caplog):
    from mlflow.tracking import MlflowClient

    from debench.registry import model_info
    from debench.track.sync import sync
    from debench.train.loop import train

    monkeypatch.delenv("DEBENCH_SYSTEM_METRICS", raising=False)
    caplog.set_level(logging.WARNING)
    uri = f"sqlite:///{tmp_path / 'live' / 'mlflow.db'}"
    (tmp_path / "live").mkdir()
    spec = make_spec(tmp_path, synthetic_cache, experiment="grouped", table="discrete", mode="paper",
                     protocol={"epochs": 1, "batch_size": 128}, tracking={"enabled": True, "uri": uri})
    rec = train(spec)
    assert rec["status"] == "ok" and rec["mlflow_run_id"], caplog.text
    client = MlflowClient(uri)
    run = client.get_run(rec["mlflow_run_id"])
    info = model_info("resnet20")
    want = {"experiment": "grouped", "table": "discrete", "mode": "paper", "preset": "test",
            "family": info.family, "task": info.task, "model": "resnet20", "dataset": "cifar10", "seed": "0"}
    assert {k: run.data.params.get(k) for k in GROUP_KEYS} == want
    exp = run.info.experiment_id
    found = client.search_runs([exp], f"params.table = 'discrete' and params.family = '{info.family}' "
                                      "and params.mode = 'paper'")
    assert [r.info.run_id for r in found] == [run.info.run_id]

    # memory: the model's activation memory, the process's peak RSS named as such, no CUDA figure
    metrics = run.data.metrics
    assert metrics["activation_memory_mb"] == pytest.approx(rec["activation_memory_mb"])
    assert metrics["process_peak_rss_mb"] == pytest.approx(rec["provenance"]["process_peak_rss_mb"])
    assert "cuda_peak_memory_mb" not in metrics and "peak_memory_mb" not in metrics
    # the record keeps its keys (the report reads them)
    assert rec["peak_memory_mb"] is None and "process_peak_rss_mb" not in rec

    # MLflow's system metrics: at least the point logged when the run closed
    system = {k for k in metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system, sorted(metrics)
    assert run.info.status == "FINISHED"

    # `debench track sync` into another store uploads the same parameters and memory metrics
    other = f"sqlite:///{tmp_path / 'other.db'}"
    report = sync(tmp_path / "run", other, min_age_s=0)
    assert len(report.uploaded) == 1
    synced_id = json.loads((tmp_path / "run" / "metrics.json").read_text())["mlflow_run_id"]
    synced = MlflowClient(other).get_run(synced_id)
    assert synced.data.params == run.data.params
    for key in ("activation_memory_mb", "process_peak_rss_mb"):
        assert synced.data.metrics[key] == pytest.approx(metrics[key])
    assert "cuda_peak_memory_mb" not in synced.data.metrics


def test_the_system_metrics_threads_warnings_hide_credentials(caplog):
    # MLflow's monitor warns "Failed to get mlflow run: API request to <tracking URI>/... failed"
    tr._redact_system_metrics_log()
    tr._redact_system_metrics_log()  # once is enough: no second filter
    logger = logging.getLogger(tr.SYSTEM_METRICS_LOGGER)
    assert sum(isinstance(f, tr._RedactFilter) for f in logger.filters) == 1
    logger.warning("Failed to get mlflow run: API request to %s/api/2.0/mlflow/runs/get failed",
                   "http://alice:s3cret@127.0.0.1:5999")
    assert "s3cret" not in caplog.text and "http://***@127.0.0.1:5999/api" in caplog.text
