"""MLflow tracking that cannot kill a run.

The trainer talks to a :class:`Tracker`. :class:`MlflowTracker` logs through an
``MlflowClient`` (no global state) once per epoch; every call retries briefly and, if the store
stays unreachable, warns once and goes on without tracking (``metrics.json`` stays complete and
``debench track sync`` uploads later). :class:`NullTracker` is used when tracking is off or
MLflow is not installed.

Besides the resolved config, a run carries :data:`GROUP_KEYS` (experiment, table, mode, preset,
family, ...) as parameters to group and filter the runs table by (:func:`group_params`), the
memory figures under names that say what they measure (:func:`memory_metrics`), and MLflow's
own system metrics (CPU, memory, disk, network; GPU with ``pynvml``) sampled by a thread of the
training process (:data:`SYSTEM_METRICS_INTERVAL_S`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("debench.track")

_CREDENTIALS = re.compile(r"(//)([^/@:]+)(:[^/@]*)?@")


def redact(uri: str | None) -> str | None:
    """Hide ``user:password@`` in a URI so it never reaches logs, params or reports."""
    return None if uri is None else _CREDENTIALS.sub(r"\1***@", uri)


def hide_credentials_from_mlflow(uri: str | None) -> None:
    """MLflow prints "View run at <tracking URI>" on terminate, password included: silence it then."""
    import os

    if uri and redact(uri) != uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


# MLflow's own HTTP retries (7 with backoff 2, timeout 120 s) spend minutes per call on a store that
# is down; debench's runs lose nothing without it (metrics.json is complete, `track sync` uploads),
# so each call gives up within seconds. A value the user set in the environment wins.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def cap_http_retries() -> None:
    """Bound MLflow's HTTP retries to seconds (see :data:`HTTP_LIMITS`); explicit env values win."""
    import os

    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)


def default_tracking_uri(results_dir: str | Path) -> str:
    """Embedded SQLite store under the results folder, as an absolute URI."""
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


# MLflow parameters to group and filter runs by, named as in metrics.json. The record's head holds
# them all; the live run logs those it knows at start (its experiment, the registry's family and
# task, model, dataset, seed, preset) and the rest (table, mode) from metrics.json at finish.
GROUP_KEYS = ("experiment", "table", "mode", "preset", "family", "task", "model", "dataset", "seed")


def group_params(rec: dict[str, Any]) -> dict[str, str]:
    """The :data:`GROUP_KEYS` of a record (or its head) as MLflow parameters; None is left out."""
    return {k: str(rec[k]) for k in GROUP_KEYS if rec.get(k) is not None}


def run_params(head: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of a run: the resolved config (``flat_params``) and :func:`group_params`."""
    from debench.record_format import flat_params

    return {k: canonical(v) for k, v in {**flat_params(head), **group_params(head)}.items()}


def canonical(value: Any) -> Any:
    """A JSON list or object parameter with its keys sorted, as ``metrics.json`` stores it, so that
    the live run and ``debench track sync`` log the same text (``flat_params`` keeps the order of
    the object it was given: the head's in the live run, the sorted file's in a sync)."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return value


def memory_metrics(rec: dict[str, Any]) -> dict[str, float]:
    """Memory figures named for what they measure, from a record (``metrics.json``).

    ``activation_memory_mb`` (the model's: autograd's saved bytes of one training step) is logged
    under its own name with the other final metrics. Added here: ``cuda_peak_memory_mb``, the
    record's ``peak_memory_mb`` (``torch.cuda.max_memory_allocated``; null on CPU), and
    ``process_peak_rss_mb``, the process's peak resident set (``provenance.process_peak_rss_mb``:
    the interpreter and every library, not the model).
    """
    out = {"cuda_peak_memory_mb": rec.get("peak_memory_mb"),
           "process_peak_rss_mb": (rec.get("provenance") or {}).get("process_peak_rss_mb")}
    return {k: float(v) for k, v in out.items() if _is_number(v)}


# MLflow's system metrics: one sample every SYSTEM_METRICS_INTERVAL_S, their mean logged every
# SYSTEM_METRICS_SAMPLES samples (one point a minute: ~600 points in a 10-hour run, and one
# get_run + log_batch a minute per job on a shared store). MLflow's environment variables
# MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL / _SAMPLES_BEFORE_LOGGING override both;
# DEBENCH_SYSTEM_METRICS=0 switches them off.
SYSTEM_METRICS_INTERVAL_S = 30.0
SYSTEM_METRICS_SAMPLES = 2


class _RedactFilter(logging.Filter):
    """Hides ``user:password@`` in the records of a logger debench does not write itself (MLflow's
    system-metrics thread warns with the failing request's URL, tracking URI included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        hidden = redact(msg)
        if hidden != msg:
            record.msg, record.args = hidden, None
        return True


SYSTEM_METRICS_LOGGER = "mlflow.system_metrics.system_metrics_monitor"


def _redact_system_metrics_log() -> None:
    logger = logging.getLogger(SYSTEM_METRICS_LOGGER)
    if not any(isinstance(f, _RedactFilter) for f in logger.filters):
        logger.addFilter(_RedactFilter())


def system_metrics_available() -> bool:
    """MLflow's CPU monitor needs psutil (MLflow does not require it); off with DEBENCH_SYSTEM_METRICS=0."""
    import importlib.util

    if os.environ.get("DEBENCH_SYSTEM_METRICS", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return importlib.util.find_spec("psutil") is not None


class NullTracker:
    run_id: str | None = None
    active = False

    def start(self, *args: Any, **kwargs: Any) -> None: ...
    def log_epoch(self, metrics: dict[str, float], step: int) -> None: ...
    def finish(self, metrics: dict[str, float], artifacts: list[Path], status: str) -> None: ...


class MlflowTracker:
    """One debench run as one MLflow run.

    Args:
        tracking_uri: MLflow store (``sqlite:///abs/path.db`` or ``http://host:port``).
        experiment_id: id created before jobs fan out (see ``debench track init``); when None
            the experiment ``experiment_name`` is looked up or created here (serial use only).
        experiment_name: debench experiment name.
        retries: attempts per call before tracking is switched off for this run (each attempt
            makes MLflow's own, capped, HTTP retries: :func:`cap_http_retries`).
        system_metrics: log MLflow's system metrics while the run is open (when
            :func:`system_metrics_available`).
    """

    def __init__(self, tracking_uri: str, experiment_id: str | None, experiment_name: str,
                 retries: int = 2, system_metrics: bool = True):
        from mlflow.tracking import MlflowClient

        cap_http_retries()
        hide_credentials_from_mlflow(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.uri = tracking_uri
        self.experiment_id = experiment_id
        self.experiment_name = experiment_name
        self.retries = retries
        self.run_id: str | None = None
        self.active = True
        self.system_metrics = system_metrics
        self._monitor: Any = None

    def _call(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:
        if not self.active:
            return None
        for attempt in range(self.retries):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # network errors, sqlite 'database is locked', ...
                last = exc
                time.sleep(0.5 * 2**attempt)
        log.warning("MLflow %s failed (%s); tracking is off for the rest of this run, metrics.json "
                    "stays complete; upload later with `debench track sync`", what, redact(str(last))[:200])
        self.active = False
        self._stop_system_metrics(flush=False)
        return None

    def start(self, run_name: str, params: dict[str, Any], tags: dict[str, str],
              resume_run_id: str | None = None) -> None:
        if resume_run_id:
            self.run_id = resume_run_id
            self._call("resume", self.client.update_run, resume_run_id, status="RUNNING")
            self._start_system_metrics(resume=True)
            return
        if self.experiment_id is None:
            self.experiment_id = self._call("experiment lookup", ensure_experiment, self.client,
                                            self.experiment_name)
        run = self._call("create_run", self.client.create_run, self.experiment_id,
                         run_name=run_name, tags=tags)
        if run is None:
            return
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        params = {k: canonical(v) for k, v in
                  {**params, **group_params({**self._known_groups(params), **params})}.items()}
        batch = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(batch), 100):
            self._call("log params", self.client.log_batch, self.run_id, params=batch[i:i + 100])
        self._start_system_metrics(resume=False)

    def _known_groups(self, params: dict[str, Any]) -> dict[str, Any]:
        """The :data:`GROUP_KEYS` a run knows before its record exists: experiment, family, task."""
        out: dict[str, Any] = {"experiment": self.experiment_name}
        try:
            from debench.registry import model_info

            info = model_info(str(params["model"]))
            out.update(family=info.family, task=info.task)
        except Exception:  # no model param, or a model the registry does not know here
            pass
        return out

    def _start_system_metrics(self, resume: bool) -> None:
        if not (self.system_metrics and self.active and self.run_id and system_metrics_available()):
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            _redact_system_metrics_log()
            self._monitor = SystemMetricsMonitor(
                self.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                samples_before_logging=SYSTEM_METRICS_SAMPLES, resume_logging=resume,
                tracking_uri=self.uri)
            self._monitor.start()
        except Exception as exc:  # a monitor is a view; the run goes on without it
            log.warning("MLflow system metrics are off for this run (%s)", redact(str(exc))[:200])
            self._monitor = None

    def _stop_system_metrics(self, flush: bool = True) -> None:
        """Stop the sampling thread; with ``flush``, log the samples of the unfinished window too
        (so that a run shorter than one window still shows a point)."""
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        try:
            monitor._shutdown_event.set()
            if monitor._process is not None:
                monitor._process.join(timeout=60)
            if flush:
                pending = monitor.aggregate_metrics()
                if pending:
                    monitor.publish_metrics(pending)
                monitor.mlflow_logger.flush()
        except Exception as exc:
            log.warning("MLflow system metrics: the last samples were not logged (%s)", redact(str(exc))[:200])

    def log_epoch(self, metrics: dict[str, float], step: int) -> None:
        self._log({EPOCH_PREFIX + k: v for k, v in metrics.items()}, step)

    def _log(self, metrics: dict[str, float], step: int) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if _is_number(v)]
        self._call("log metrics", self.client.log_batch, self.run_id, metrics=batch)

    def finish(self, metrics: dict[str, float], artifacts: list[Path], status: str) -> None:
        """Log the run's reported numbers (step 0) and artifacts, then close the run.

        The record (``metrics.json`` among ``artifacts``) also gives the memory figures under
        their own names (:func:`memory_metrics`) and the :data:`GROUP_KEYS` the run did not know
        at start (table, mode).
        """
        if self.run_id is None:
            return
        self._stop_system_metrics()
        rec = _read_record(artifacts)
        self._log({**metrics, **memory_metrics({**rec, **metrics})}, step=0)
        self._log_missing_params(group_params({"experiment": self.experiment_name, **rec}))
        for path in artifacts:
            if Path(path).exists():
                self._call("log artifact", self.client.log_artifact, self.run_id, str(path))
        self._call("set status tag", self.client.set_tag, self.run_id, "debench.status", status)
        self._call("terminate", self.client.set_terminated, self.run_id,
                   "FINISHED" if status == "ok" else "FAILED")


    def _log_missing_params(self, params: dict[str, str]) -> None:
        """Log those of ``params`` the run does not hold yet (a parameter, once logged, is fixed)."""
        if not params or not self.active:
            return
        from mlflow.entities import Param

        run = self._call("read params", self.client.get_run, self.run_id)
        if run is None:
            return
        new = [Param(k, v) for k, v in sorted(params.items()) if k not in run.data.params]
        if new:
            self._call("log params", self.client.log_batch, self.run_id, params=new)


def _read_record(artifacts: list[Path]) -> dict[str, Any]:
    """The ``metrics.json`` among a run's artifacts, or {} (missing or unreadable)."""
    for path in artifacts:
        if Path(path).name == "metrics.json":
            try:
                rec = json.loads(Path(path).read_text())
            except (OSError, ValueError):
                return {}
            return rec if isinstance(rec, dict) else {}
    return {}


def _is_number(v: Any) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# MLflow 3's mark of a model-training (not GenAI) experiment, read by its UI when choosing an
# experiment's view (MLflow 3.17's global GenAI/training switch overrides it: README, "MLflow").
# Per-epoch values are logged as "epoch/<key>" at steps 1..N, the run's reported numbers (those of
# metrics.json) under their own names at step 0. MLflow's runs table shows a metric's value at its
# highest step, so one name for both would show the last epoch's value where the run reports the
# selected epoch's (select_by: best_val); the UI's charts group the "epoch/" curves together.
EPOCH_PREFIX = "epoch/"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def artifact_root(tracking_uri: str | None) -> str | None:
    """Where a store's experiments keep artifacts: ``mlartifacts/`` beside a SQLite file, so that
    deleting ``results/<preset>`` deletes them too; None (the server's choice) for other stores."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()


def ensure_experiment(client: Any, name: str) -> str:
    """The id of experiment ``name``, created if new: kind-tagged, artifacts beside a SQLite store."""
    artifacts = artifact_root(getattr(client, "tracking_uri", None))
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.tags.get(EXPERIMENT_KIND[0]) is None:  # created by an older debench
            client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=f"{artifacts}/{name}" if artifacts else None,
                                        tags=dict([EXPERIMENT_KIND]))
    except Exception:
        exp = client.get_experiment_by_name(name)  # created concurrently by another process
        if exp is None:
            raise
        return exp.experiment_id


def init_store(tracking_uri: str, experiments: list[str]) -> dict[str, str]:
    """Create the store (schema migration) and the experiments once, serially.

    Parallel jobs that each create a fresh SQLite store race on its schema migration; doing it
    once before jobs fan out and handing each job its experiment id avoids that.

    Returns:
        ``{experiment name: experiment id}``.

    Raises:
        Exception: whatever MLflow raises when the store cannot be reached (after capped retries).
    """
    from mlflow.tracking import MlflowClient

    cap_http_retries()
    hide_credentials_from_mlflow(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    return {name: ensure_experiment(client, name) for name in experiments}


def make_tracker(tracking: dict[str, Any], experiment: str) -> NullTracker | MlflowTracker:
    """The tracker a run should use: MLflow when enabled and importable, else a no-op."""
    if not tracking.get("enabled", True) or not tracking.get("uri"):
        return NullTracker()
    try:
        import mlflow  # noqa: F401
    except ImportError:
        log.warning("mlflow is not installed: tracking is off, metrics.json is still written")
        return NullTracker()
    try:
        return MlflowTracker(tracking["uri"], tracking.get("experiment_id"), experiment,
                             system_metrics=tracking.get("system_metrics", True))
    except Exception as exc:
        log.warning("MLflow store %s unusable (%s): tracking is off", redact(tracking["uri"]), exc)
        return NullTracker()
