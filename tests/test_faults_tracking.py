"""Fault injection in tracking: an MLflow server stopped mid-run, `debench track sync`, resumed runs,
8 concurrent writers per store, and credentials that never leak."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from debench.track.tracker import default_tracking_uri, init_store
from tests.conftest import ROOT, make_spec

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.faults
MLFLOW = str(Path(sys.executable).parent / "mlflow")
SECRET = "s3cr3t-pw"
FAST_FAIL = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
ENV = {**os.environ, **FAST_FAIL, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
       "OMP_NUM_THREADS": "1"}


class Server:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend; stop() and start() keep the store."""

    def __init__(self, root: Path):
        self.root, self.proc = root, None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.secret_uri = f"http://alice:{SECRET}@127.0.0.1:{self.port}"

    def start(self) -> "Server":
        self.proc = subprocess.Popen(
            [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--default-artifact-root", str(self.root / "artifacts")],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "server.log", "ab"), start_new_session=True)
        end = time.time() + 120
        while time.time() < end:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise TimeoutError("mlflow server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server's own process group (workers included)
            self.proc.wait()
        self.proc = None


@pytest.fixture
def server(tmp_path):
    (tmp_path / "mlflow").mkdir()
    s = Server(tmp_path / "mlflow").start()
    yield s
    s.stop()


def _train_proc(spec: dict, tmp: Path, name: str) -> subprocess.Popen:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(spec))
    return subprocess.Popen([sys.executable, "-m", "debench.cli", "train", "--spec", f"@{path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)


def _sync(runs: Path, uri: str) -> str:
    out = subprocess.run([sys.executable, "-m", "debench.cli", "track", "sync", "--runs", str(runs), "--uri", uri,
                          "--min-age", "0"], capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout + out.stderr


def _no_secret_under(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file() and p.suffix != ".db":
            assert SECRET.encode() not in p.read_bytes(), p


# ---- outage mid-run, then sync ----------------------------------------------------------------

@pytest.mark.slow
def test_server_stopped_mid_run_then_sync_completes_the_store(tmp_path, synthetic_cache, server):
    ids = init_store(server.uri, ["outage"])
    runs = tmp_path / "results" / "runs"
    spec = make_spec(tmp_path, synthetic_cache, experiment="outage", protocol={"epochs": 4, "batch_size": 64},
                     tracking={"enabled": True, "uri": server.secret_uri, "experiment_id": ids["outage"]},
                     paths={"metrics": str(runs / "outage" / "cifar10" / "resnet20" / "seed0" / "metrics.json"),
                            "checkpoints": str(tmp_path / "results" / "checkpoints")})
    p = _train_proc(spec, tmp_path, "spec")
    rows = Path(spec["paths"]["metrics"]).parent / "epochs.csv"
    end = time.time() + 300
    while not rows.exists() and time.time() < end and p.poll() is None:
        time.sleep(0.05)
    server.stop()  # after the run was created and epoch 1 logged
    log = p.communicate(timeout=600)[0].decode()
    assert p.returncode == 0, log[-3000:]
    assert "tracking is off" in log and "debench track sync" in log
    rec = json.loads(Path(spec["paths"]["metrics"]).read_text())
    assert rec["status"] == "ok" and rec["epochs_completed"] == 4 and "test_accuracy" in rec
    assert rec["tracking_uri"] == f"http://***@127.0.0.1:{server.port}"
    assert SECRET not in log
    first_id = rec["mlflow_run_id"]
    assert first_id  # created before the outage, left RUNNING by it

    server.start()
    client = mlflow.tracking.MlflowClient(server.uri)
    assert client.get_run(first_id).info.status == "RUNNING"
    out = _sync(runs, server.secret_uri)
    assert "1 uploaded, 0 already complete" in out and SECRET not in out
    rec = json.loads(Path(spec["paths"]["metrics"]).read_text())
    assert rec["mlflow_synced"] is True and rec["mlflow_run_id"] != first_id
    active = client.search_runs([ids["outage"]])
    assert [r.info.run_id for r in active] == [rec["mlflow_run_id"]]  # the cut-off run is replaced, not doubled
    run = active[0]
    assert run.info.status == "FINISHED" and run.data.tags["debench.status"] == "ok"
    assert run.data.tags["debench.replaces_run"] == first_id
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "epoch/train_loss")) == [1, 2, 3, 4]
    assert run.data.metrics["test_accuracy"] == pytest.approx(rec["test_accuracy"])
    assert run.data.params["protocol.epochs"] == "4" and run.data.params["config_hash"] == rec["config_hash"]
    assert {"metrics.json", "epochs.csv"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    everything = json.dumps([run.data.params, run.data.tags])
    assert SECRET not in everything and "alice" not in everything

    again = _sync(runs, server.secret_uri)
    assert "0 uploaded, 1 already complete" in again
    assert len(client.search_runs([ids["outage"]])) == 1

    # nothing written anywhere carries the password: run folder, checkpoints, reports
    from debench.report.aggregate import aggregate

    aggregate(runs, ROOT / "config" / "reference" / "published_results.csv", tmp_path / "results")
    _no_secret_under(tmp_path / "results")


def test_sync_uploads_runs_tracked_nowhere_and_is_idempotent(tmp_path, synthetic_cache):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        from debench.train.loop import train

        train(make_spec(tmp_path / f"s{seed}", synthetic_cache, seed=seed, protocol={"epochs": 1},
                        paths={"metrics": str(runs / "e" / "cifar10" / "resnet20" / f"seed{seed}" / "metrics.json"),
                               "checkpoints": str(tmp_path / f"ck{seed}")}))
    uri = default_tracking_uri(tmp_path)
    from debench.track.sync import sync

    first = sync(runs, uri, min_age_s=0)
    assert len(first.uploaded) == 2 and not first.complete
    second = sync(runs, uri, min_age_s=0)
    assert not second.uploaded and len(second.complete) == 2
    client = mlflow.tracking.MlflowClient(uri)
    tracked = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert len(tracked) == 2
    for seed in (0, 1):
        rec = json.loads((runs / "e" / "cifar10" / "resnet20" / f"seed{seed}" / "metrics.json").read_text())
        assert rec["mlflow_synced"] and rec["mlflow_run_id"] in {r.info.run_id for r in tracked}


# ---- a resumed run continues its MLflow run --------------------------------------------------

@pytest.mark.parametrize("die_at", ["before the first checkpoint", "after the first checkpoint"])
def test_resumed_run_continues_its_mlflow_run(tmp_path, synthetic_cache, die_at):
    import debench.train.loop as loop

    uri = default_tracking_uri(tmp_path)
    ids = init_store(uri, ["resume"])
    spec = make_spec(tmp_path, synthetic_cache, experiment="resume", protocol={"epochs": 3},
                     tracking={"enabled": True, "uri": uri, "experiment_id": ids["resume"]})
    real = loop.ckpt.save_checkpoint

    def die(*args, **kwargs):
        if die_at.startswith("after"):
            real(*args, **kwargs)
        raise KeyboardInterrupt  # the state a SIGKILL around the first checkpoint leaves

    loop.ckpt.save_checkpoint = die
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.train(spec)
    finally:
        loop.ckpt.save_checkpoint = real
    client = mlflow.tracking.MlflowClient(uri)
    (first,) = client.search_runs([ids["resume"]])
    rec = loop.train(spec)
    runs = client.search_runs([ids["resume"]])
    assert [r.info.run_id for r in runs] == [first.info.run_id] == [rec["mlflow_run_id"]]
    assert runs[0].info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(rec["mlflow_run_id"], "epoch/train_loss")}
    assert steps == {1, 2, 3}  # every epoch once, none lost (the final summary has no train_loss)


# ---- concurrency ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_eight_concurrent_writers_lose_nothing(tmp_path, synthetic_cache, store):
    from debench.report.aggregate import aggregate

    srv = None
    if store == "server":
        (tmp_path / "mlflow").mkdir()
        srv = Server(tmp_path / "mlflow").start()
    try:
        uri = srv.uri if srv else default_tracking_uri(tmp_path)
        ids = init_store(uri, ["crowd"])
        runs = tmp_path / "runs"
        n = 8
        expected = [{"experiment": "crowd", "dataset": "cifar10", "model": "resnet20", "seed": s} for s in range(n)]
        procs = []
        for seed in range(n):
            spec = make_spec(tmp_path / f"s{seed}", synthetic_cache, experiment="crowd", seed=seed,
                             protocol={"epochs": 2, "batch_size": 128},
                             tracking={"enabled": True, "uri": uri, "experiment_id": ids["crowd"]},
                             paths={"metrics": str(runs / "crowd" / "cifar10" / "resnet20" / f"seed{seed}" / "metrics.json"),
                                    "checkpoints": str(tmp_path / f"s{seed}" / "ckpt")})
            procs.append(_train_proc(spec, tmp_path, f"spec{seed}"))
        # aggregate while the jobs are still writing: no crash, incomplete runs listed
        partial = []
        while any(p.poll() is None for p in procs):
            aggregate(runs, ROOT / "config" / "reference" / "published_results.csv", tmp_path / "agg",
                      expected=expected)
            summary = json.loads((tmp_path / "agg" / "tables" / "summary.json").read_text())
            partial.append(len(summary["incomplete"]))
            assert summary["runs"] + len(summary["incomplete"]) == n and not summary["unreadable"]
            time.sleep(2.0)
        for p in procs:
            out = p.communicate(timeout=600)[0].decode()
            assert p.returncode == 0, out[-2000:]
            assert "tracking is off" not in out, out[-2000:]
        assert partial and partial[0] > 0
        aggregate(runs, ROOT / "config" / "reference" / "published_results.csv", tmp_path / "agg", expected=expected)
        summary = json.loads((tmp_path / "agg" / "tables" / "summary.json").read_text())
        assert summary["runs"] == n and summary["incomplete"] == [] and summary["runs_ok"] == n

        client = mlflow.tracking.MlflowClient(uri)
        tracked = client.search_runs([ids["crowd"]])
        assert len(tracked) == n
        by_seed = {r.data.params["seed"]: r for r in tracked}
        assert sorted(by_seed) == [str(s) for s in range(n)]
        for seed, run in by_seed.items():
            rec = json.loads((runs / "crowd" / "cifar10" / "resnet20" / f"seed{seed}" / "metrics.json").read_text())
            assert run.info.status == "FINISHED" and rec["mlflow_run_id"] == run.info.run_id
            for key, steps in (("test_accuracy", [0]), ("epoch/test_accuracy", [1, 2]), ("epoch/train_loss", [1, 2]),
                               ("epoch/lr", [1, 2])):
                assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == steps, (seed, key)
            assert run.data.metrics["test_accuracy"] == pytest.approx(rec["test_accuracy"])
        # nothing is left for sync to upload
        from debench.track.sync import sync

        assert not sync(runs, uri, min_age_s=0).uploaded
    finally:
        if srv:
            srv.stop()


# ---- security --------------------------------------------------------------------------------

def test_mlflow_ui_and_servers_bind_localhost_by_default():
    make = (ROOT / "Makefile").read_text()
    ui = [line for line in make.splitlines() if "mlflow ui" in line or "mlflow server" in line]
    assert ui and all("--host 127.0.0.1" in line for line in ui)
    import re

    for folder in ("workflow", "profiles", "src", "config"):
        for p in (ROOT / folder).rglob("*"):
            if not (p.is_file() and p.suffix in (".py", ".smk", ".yaml", ".yml", ".sh", "")):
                continue
            if any(part.endswith(".egg-info") for part in p.parts):
                continue  # build metadata: a copy of the README, whose cluster example opts in to 0.0.0.0
            text = p.read_text(errors="ignore")
            # no command line binds all interfaces; a --host option defaults to localhost
            assert not re.search(r"--host[\s\"',=]+0\.0\.0\.0", text), p
            assert not re.search(r"host\s*[:=]\s*[\"']?0\.0\.0\.0", text), p
            for default in re.findall(r"add_argument\(\s*\"--host\"[^)]*default=\"([^\"]+)\"", text):
                assert default == "127.0.0.1", p


def test_credentials_are_redacted_wherever_the_uri_is_written(tmp_path, synthetic_cache, caplog, capsys):
    """Unit level: metrics.json, the tracker's warnings, track init's output, params and tags."""
    from debench.cli import main
    from debench.train.loop import train

    uri = f"http://alice:{SECRET}@127.0.0.1:9"
    for k, v in FAST_FAIL.items():
        os.environ[k] = v
    try:
        rec = train(make_spec(tmp_path, synthetic_cache, protocol={"epochs": 1},
                              tracking={"enabled": True, "uri": uri, "experiment_id": "1"}))
    finally:
        for k in FAST_FAIL:
            del os.environ[k]
    assert rec["tracking_uri"] == "http://***@127.0.0.1:9"
    assert "tracking is off" in caplog.text and SECRET not in caplog.text
    main(["track", "init", "--uri", uri, "--experiments", "x", "--out", str(tmp_path / "ids.json"), "--disabled"])
    assert json.loads((tmp_path / "ids.json").read_text())["tracking_uri"] == "http://***@127.0.0.1:9"
    assert SECRET not in capsys.readouterr().err
    _no_secret_under(tmp_path)
