"""MLflow as a user meets it (issue 18.2, 18.3): artifacts beside the store, runs table first."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from debench.track import ui
from debench.track.tracker import EXPERIMENT_KIND, MlflowTracker, init_store

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




# --- the UI plugin (`mlflow ui --app-name debench`, debench.track.ui) ---------------------------

NODE = shutil.which("node")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
# MLflow 3.17.2's UI bundle keeps experiment 7's runs-table state under this key (its
# ExperimentPage component state, keyed by the JSON list of experiment ids): written out, not computed
ML_VIEW = 'MLflowLocalStorage-1.1-ExperimentPage-["7"]-ReactComponentState'


def _view_key(experiment_id: str) -> str:
    return f'MLflowLocalStorage-1.1-ExperimentPage-["{experiment_id}"]-ReactComponentState'


def run_seed_script(stored: dict[str, str]) -> dict[str, str]:
    """localStorage after the injected script ran in node on a browser that held ``stored``."""
    script = ui.seed_script(ui.seed(["7"]))
    body = script.removeprefix("<script>").removesuffix("</script>")
    harness = ("const m=new Map(Object.entries(%s));globalThis.window={localStorage:{getItem:k=>m.has(k)?m.get(k):null,"
               "setItem:(k,v)=>m.set(k,String(v))}};%s;console.log(JSON.stringify(Object.fromEntries(m)));")
    out = subprocess.run([NODE, "-e", harness % (json.dumps(stored), body)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_view_state_key_is_the_one_mlflows_ui_reads():
    assert ui.view_state_key("7") == ML_VIEW and ui.view_state_key(12) == _view_key("12")
    assert ui.WORKFLOW_KEY == "mlflow.workflowType_v1"


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_fresh_browser_gets_model_training_and_the_metric_columns():
    storage = run_seed_script({})
    assert json.loads(storage[ui.WORKFLOW_KEY]) == "machine_learning"
    assert json.loads(storage[ML_VIEW])["selectedColumns"] == [
        "metrics.`test_accuracy`", "metrics.`nfe_forward`", "metrics.`peak_memory_mb`"]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_users_own_choices_are_not_overwritten():
    mine = {ui.WORKFLOW_KEY: json.dumps("genai"), ML_VIEW: json.dumps({"selectedColumns": ["params.`lr`"]})}
    assert run_seed_script(mine) == mine


def index_app(tmp_path: Path):
    """A Flask app shaped like MLflow's: its ``serve`` view sends static/index.html."""
    from flask import Flask, send_from_directory

    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text('<html><head><title>MLflow</title><script defer src="main.js"></script>'
                                       "</head><body></body></html>")
    app = Flask("mlflow_like", static_folder=str(static))
    app.add_url_rule("/", "serve", lambda: send_from_directory(app.static_folder, "index.html"))
    return app


def test_the_plugin_serves_index_html_with_the_script_before_mlflows_own(tmp_path):
    app = ui.install(index_app(tmp_path), experiments=lambda: ["7"])
    client = app.test_client()
    plain = client.get("/")
    html = plain.get_data(as_text=True)
    assert plain.status_code == 200 and plain.mimetype == "text/html"
    assert html.index(ui.WORKFLOW_KEY) < html.index('src="main.js"') and json.dumps(ML_VIEW) in html
    # no validators: a browser that cached MLflow's plain page cannot revalidate into it
    assert plain.headers.get("ETag") is None and plain.headers.get("Last-Modified") is None
    revalidated = client.get("/", headers={"If-None-Match": "*",
                                           "If-Modified-Since": "Sun, 29 Nov 2099 00:00:00 GMT"})
    assert revalidated.status_code == 200 and ui.WORKFLOW_KEY in revalidated.get_data(as_text=True)
    assert ui.install(app) is app and client.get("/").get_data(as_text=True).count(ui.WORKFLOW_KEY) == 1


def test_an_unreadable_store_still_opens_on_model_training(tmp_path, caplog):
    def broken():
        raise OSError("store is down")

    html = ui.install(index_app(tmp_path), experiments=broken).test_client().get("/").get_data(as_text=True)
    assert ui.WORKFLOW_KEY in html and "ExperimentPage" not in html
    assert "store is down" in caplog.text


def test_an_mlflow_without_the_index_view_is_named():
    from flask import Flask

    with pytest.raises(RuntimeError, match="'serve' view"):
        ui.install(Flask("other"))


def test_debench_mlflow_server_loads_the_plugin(tmp_path, monkeypatch):
    from debench import cli

    started = []
    monkeypatch.setattr(subprocess, "Popen",
                        lambda cmd, **kw: started.append(cmd) or SimpleNamespace(pid=-1, wait=lambda: 0))
    monkeypatch.setattr(os, "killpg", lambda *a: None)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    assert cli.main(["mlflow-server", "--root", str(tmp_path), "--port", "5999"]) == 0
    assert "--app-name" in started[0], "the mlflow.app entry point is not installed (pip install -e .)"
    assert started[0][started[0].index("--app-name") + 1] == "debench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dump_experiment_page(tmp_path: Path, uri: str, exp_id: str, app_args: list[str]) -> tuple[str, str]:
    """The served index.html, and the DOM of ``/#/experiments/<id>`` (no query) in a fresh headless
    Chromium, with the UI started as `make mlflow-ui` starts it."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", *app_args, "--host", "127.0.0.1",
                               "--port", str(port), "--backend-store-uri", uri, "--workers", "1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                index = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "mlflow ui did not start"
                time.sleep(0.5)
        out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000",
                              "--window-size=1600,1000", "--dump-dom",
                              f"http://127.0.0.1:{port}/#/experiments/{exp_id}"],
                             capture_output=True, text=True, timeout=90)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert out.returncode == 0, out.stderr[-1500:]
    return index, out.stdout


@pytest.mark.slow  # store, server start and a browser: ~25 s on the shared 2-core machine
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_mlflow_ui_opens_an_experiment_on_its_runs_table_with_the_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ui.server_args() == ["--app-name", "debench"], "pip install -e . registers the mlflow.app entry point"
    from mlflow.tracking import MlflowClient

    uri, exp_id, _ = tracked_run(tmp_path)
    untagged = MlflowClient(uri).create_experiment("not-debench")
    index, dom = dump_experiment_page(tmp_path, uri, exp_id, ui.server_args())
    assert json.dumps(_view_key(exp_id)) in index and json.dumps(_view_key(untagged)) not in index
    assert "<title>Runs - Experiment" in dom and "resnet20-seed0" in dom, dom[-3000:]
    for metric, value in METRICS.items():
        assert f'data-testid="sort-header-{metric}"' in dom, f"no {metric} column: {dom[-3000:]}"
        assert re.search(rf'id="cell-metrics.`{metric}`-\d+"[^>]*>{value:g}<', dom), f"{metric} = {value:g} not shown"
    assert "Token Usage" not in dom and "Latency" not in dom  # MLflow's GenAI overview
