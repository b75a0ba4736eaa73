"""``debench track sync``: upload to MLflow the runs the store missed.

``metrics.json`` is the source of truth; MLflow is a view of it. When the store was unreachable
during training (tracking switched itself off with a warning) or a run was tracked into another
store, the MLflow run is missing or incomplete. :func:`sync` finds those runs under a results
folder and uploads each as one complete MLflow run: params, per-epoch metrics from
``epochs.csv``, final metrics, artifacts and the status tag. The uploaded run id is written back
into ``metrics.json`` atomically (``mlflow_run_id``, ``mlflow_synced: true``), so a second sync
finds every run complete and uploads nothing.

An incomplete MLflow run (created, then cut off by the outage) is soft-deleted
(``mlflow gc`` purges it; ``restore_run`` brings it back) and replaced by the complete upload, so
one debench run is never two MLflow runs.

Each ``metrics.json`` is checked against the run-record schema (:mod:`debench.record_format`)
first; one that breaks it is skipped, with the file and key named, and nothing of it is uploaded.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from debench.record_format import RecordFormatError, read_record, write_record
from debench.track.tracker import (EPOCH_PREFIX, cap_http_retries, ensure_experiment, hide_credentials_from_mlflow,
                                   memory_metrics, redact, run_params)

log = logging.getLogger("debench.track")
_NOT_METRICS = ("schema_version", "seed", "epoch", "step")


@dataclass
class SyncReport:
    """What one :func:`sync` did, as lists of ``metrics.json`` paths."""

    uploaded: list[Path] = field(default_factory=list)
    complete: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason"


def sync(runs_dir: str | Path, tracking_uri: str, min_age_s: float = 60.0,
         dry_run: bool = False) -> SyncReport:
    """Upload every run under ``runs_dir`` whose MLflow run in ``tracking_uri`` is missing or incomplete.

    Args:
        runs_dir: folder searched recursively for ``metrics.json``.
        tracking_uri: the MLflow store to complete (``http://...`` or ``sqlite:///...``).
        min_age_s: a ``metrics.json`` younger than this whose MLflow run is still ``RUNNING`` is
            left alone: its trainer may be finishing the upload right now.
        dry_run: report what would be uploaded without touching the store or the files.

    Returns:
        A :class:`SyncReport`.

    Raises:
        mlflow.exceptions.MlflowException: when the store itself cannot be reached.
    """
    from mlflow.tracking import MlflowClient

    cap_http_retries()
    hide_credentials_from_mlflow(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    report = SyncReport()
    for path in sorted(Path(runs_dir).rglob("metrics.json")):
        try:
            rec = read_record(path)  # parsed and checked against the run-record schema
        except RecordFormatError as exc:
            report.skipped.append(str(exc))
            continue
        state, run = _state(client, rec)
        if state == "complete":
            report.complete.append(path)
            continue
        if state == "running" and time.time() - path.stat().st_mtime < min_age_s:
            report.skipped.append(f"{path}: MLflow run {run.info.run_id} is still running")
            continue
        report.uploaded.append(path)
        if dry_run:
            continue
        if run is not None:
            client.delete_run(run.info.run_id)
        _upload(client, path, rec, replaces=run.info.run_id if run is not None else None)
    log.info("sync to %s: %d %s, %d already complete, %d skipped", redact(tracking_uri),
             len(report.uploaded), "would upload" if dry_run else "uploaded", len(report.complete),
             len(report.skipped))
    return report


def _state(client: Any, rec: dict[str, Any]) -> tuple[str, Any]:
    """``missing``, ``running``, ``incomplete`` or ``complete``, and the MLflow run if any."""
    run_id = rec.get("mlflow_run_id")
    if not run_id:
        return "missing", None
    try:
        run = client.get_run(run_id)
    except Exception:  # RESOURCE_DOES_NOT_EXIST: another store, or never created
        return "missing", None
    if run.info.lifecycle_stage != "active":
        return "missing", None
    if run.info.status == "RUNNING":
        return "running", run
    primary = rec.get("metric")
    complete = (run.info.status in ("FINISHED", "FAILED")
                and run.data.tags.get("debench.status") == rec.get("status")
                and run.data.params.get("config_hash") == rec.get("config_hash")
                and (_number(rec.get(primary)) is None or primary in run.data.metrics))
    return ("complete" if complete else "incomplete"), run


def _upload(client: Any, path: Path, rec: dict[str, Any], replaces: str | None) -> str:
    from mlflow.entities import Metric, Param

    exp_id = ensure_experiment(client, rec["experiment"])
    tags = {"debench.preset": str(rec.get("preset")), "debench.config_hash": str(rec.get("config_hash")),
            "debench.synced": "true",
            **{f"provenance.{k}": str(v) for k, v in (rec.get("provenance") or {}).items()}}
    if replaces:
        tags["debench.replaces_run"] = replaces
    run = client.create_run(exp_id, run_name=f"{rec['model']}-{rec['dataset']}-seed{rec['seed']}", tags=tags)
    run_id = run.info.run_id
    params = [Param(k, str(v)[:6000]) for k, v in sorted(_params(rec).items())]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])
    now = int(time.time() * 1000)
    metrics = [Metric(EPOCH_PREFIX + k, v, now, int(row["epoch"])) for row in _epoch_rows(path.parent / "epochs.csv")
               for k, v in row.items() if k != "epoch"]  # as the live run logs them (debench.track.tracker)
    metrics += [Metric(k, v, now, 0) for k, v in _final_metrics(rec).items()]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    if (path.parent / "epochs.csv").exists():
        client.log_artifact(run_id, str(path.parent / "epochs.csv"))
    for rel in rec.get("artifacts") or []:
        if (path.parent / rel).exists():
            client.log_artifact(run_id, str(path.parent / rel), artifact_path=str(Path(rel).parent))
    # The record names its run before the run is closed: a sync cut off here sees a RUNNING run
    # next time and redoes the upload.
    rec = {**rec, "mlflow_run_id": run_id, "mlflow_synced": True}
    write_record(path, rec)
    client.log_artifact(run_id, str(path))
    client.set_tag(run_id, "debench.status", str(rec.get("status")))
    client.set_terminated(run_id, "FINISHED" if rec.get("status") == "ok" else "FAILED")
    return run_id


def _params(rec: dict[str, Any]) -> dict[str, Any]:
    return run_params(rec)  # the live run ends with the same parameters (debench.track.tracker)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    try:
        f = float(v)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _final_metrics(rec: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in rec.items():
        if k in _NOT_METRICS or isinstance(v, (str, bool)):
            continue
        f = _number(v)
        if f is not None:
            out[k] = f
    return {**out, **memory_metrics(rec)}  # as the live run logs them


def _epoch_rows(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row = {k: _number(v) for k, v in raw.items() if k}
            if row.get("epoch") is not None:
                rows.append({k: v for k, v in row.items() if v is not None})
    return rows
