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
from tests.conftest import skip_missing

# what the trainer hands the tracker (a GPU run: peak_memory_mb is CUDA's), and the record's
# process figure; the runs table shows them under the names of debench.track.tracker.memory_metrics
METRICS = {"test_accuracy": 91.5, "nfe_forward": 26.0, "activation_memory_mb": 12.5, "peak_memory_mb": 301.0}
RECORD = {"provenance": {"process_peak_rss_mb": 812.0}}
COLUMNS = {"test_accuracy": 91.5, "nfe_forward": 26.0, "activation_memory_mb": 12.5, "cuda_peak_memory_mb": 301.0,
           "process_peak_rss_mb": 812.0}


def tracked_run(tmp: Path) -> tuple[str, str, Path]:
    """A store under tmp/results/p with one finished run that logged an artifact; cwd is tmp."""
    results = tmp / "results" / "p"
    results.mkdir(parents=True)
    uri = f"sqlite:///{results / 'mlflow.db'}"
    exp_id = init_store(uri, ["disc"])["disc"]
    tracker = MlflowTracker(uri, exp_id, "disc")
    tracker.start("resnet20-seed0", {"lr": 0.1, "model": "resnet20"}, {"debench.preset": "p"})
    artifact = tmp / "metrics.json"
    artifact.write_text(json.dumps({**RECORD, "table": "discrete", "mode": "paper"}))
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


def test_a_fresh_browser_gets_model_training_and_the_metric_columns():
    if NODE is None:
        skip_missing("node (apt-get install nodejs)")
    storage = run_seed_script({})
    assert json.loads(storage[ui.WORKFLOW_KEY]) == "machine_learning"
    # the model's activation memory, and the peaks named for what they measure (issue 28.6: the
    # CPU "peak_memory_mb" was the process's RSS)
    assert json.loads(storage[ML_VIEW])["selectedColumns"] == [
        "metrics.`test_accuracy`", "metrics.`nfe_forward`", "metrics.`activation_memory_mb`",
        "metrics.`cuda_peak_memory_mb`", "metrics.`process_peak_rss_mb`",
        "params.`family`", "params.`table`", "params.`mode`"]  # what runs are grouped by


def test_the_users_own_choices_are_not_overwritten():
    if NODE is None:
        skip_missing("node (apt-get install nodejs)")
    mine = {ui.WORKFLOW_KEY: json.dumps("genai"), ML_VIEW: json.dumps({"selectedColumns": ["params.`lr`"]}),
            ui.ASSISTANT_OPENED_KEY: json.dumps(False)}
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


def dump_experiment_page(tmp_path: Path, store: Path, exp_id: str) -> tuple[str, str]:
    """The served index.html, and the DOM of ``/#/experiments/<id>`` (no query) in a fresh headless
    Chromium, with the UI started as `make mlflow-ui` starts it (on a port of its own)."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "debench.track.ui", "--store", str(store)], cwd=tmp_path,
                              env={**os.environ, ui.PORT_ENV: str(port)},
                              stdout=open(tmp_path / "ui.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180  # a loaded 2-core machine: over 60 s seen
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                index = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, \
                    f"mlflow ui did not start: {(tmp_path / 'ui.log').read_text()[-2000:]}"
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
def test_mlflow_ui_opens_an_experiment_on_its_runs_table_with_the_metrics(tmp_path, monkeypatch):
    if CHROMIUM is None:
        skip_missing("chromium (apt-get install chromium)")
    monkeypatch.chdir(tmp_path)
    assert ui.server_args() == ["--app-name", "debench"], "pip install -e . registers the mlflow.app entry point"
    from mlflow.tracking import MlflowClient

    uri, exp_id, results = tracked_run(tmp_path)
    untagged = MlflowClient(uri).create_experiment("not-debench")
    index, dom = dump_experiment_page(tmp_path, results, exp_id)
    assert json.dumps(_view_key(exp_id)) in index and json.dumps(_view_key(untagged)) not in index
    assert "<title>Runs - Experiment" in dom and "resnet20-seed0" in dom, dom[-3000:]
    for metric, value in COLUMNS.items():
        assert f'data-testid="sort-header-{metric}"' in dom, f"no {metric} column: {dom[-3000:]}"
        assert re.search(rf'id="cell-metrics.`{metric}`-\d+"[^>]*>{value:g}<', dom), f"{metric} = {value:g} not shown"
    for param, value in {"family": "discrete", "table": "discrete", "mode": "paper"}.items():
        assert re.search(rf'id="cell-params.`{param}`-\d+"[^>]*>{value}<', dom), f"param {param} = {value} not shown"
    assert "Token Usage" not in dom and "Latency" not in dom  # MLflow's GenAI overview
    # the Assistant panel did not open over the table (MLflow opens it on a browser's first visit)
    assert "Ask questions about your" not in dom


# --- the MLflow version the plugin was tested with, and the launcher (`make mlflow-ui`) ----------

def test_the_installed_mlflow_is_the_one_the_plugin_was_tested_with():
    import tomllib

    from tests.conftest import ROOT

    assert ui.plugin_supported(), ui.mlflow_version()
    low, high = (".".join(map(str, v)) for v in ui.TESTED_MLFLOW)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"mlflow>={low},<{high}" in deps  # pyproject pins the same range


@pytest.mark.parametrize("version", ["3.18.0", "3.17.1", "2.12.2", "4.0.0rc1", ""])
def test_an_untested_mlflow_starts_the_plain_ui_with_a_one_line_warning(version, monkeypatch, caplog):
    monkeypatch.setattr(ui, "mlflow_version", lambda: version)
    assert ui.server_args() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "plain MLflow UI" in warnings[0], warnings


def test_the_plugin_itself_leaves_an_untested_mlflows_app_alone(monkeypatch, caplog):
    from mlflow.server import app

    monkeypatch.setattr(ui, "mlflow_version", lambda: "3.18.0")
    monkeypatch.setattr(ui, "install", lambda *a, **k: pytest.fail("installed on an untested MLflow"))
    ui.create_app()  # what `mlflow ui --app-name debench` calls
    assert "3.18.0" in caplog.text and not getattr(app.view_functions[ui.INDEX_ENDPOINT], "debench_seeded", False)


def launched(monkeypatch, tmp_path: Path, argv: list[str], env_port: str | None = None) -> list[str]:
    """The command the launcher would exec (nothing is started)."""
    (tmp_path / "mlflow.db").touch()
    started = []
    monkeypatch.setattr(os, "execv", lambda path, cmd: started.append(cmd))
    if env_port is None:
        monkeypatch.delenv(ui.PORT_ENV, raising=False)
    else:
        monkeypatch.setenv(ui.PORT_ENV, env_port)
    assert ui.main(["--store", str(tmp_path), *argv]) == 0
    return started[0]


def _port_of(cmd: list[str]) -> int:
    return int(cmd[cmd.index("--port") + 1])


def test_the_ui_port_comes_from_the_option_then_the_environment(tmp_path, monkeypatch):
    ports = [_free_port() for _ in range(2)]
    assert _port_of(launched(monkeypatch, tmp_path, ["--port", str(ports[0])], env_port=str(ports[1]))) == ports[0]
    assert _port_of(launched(monkeypatch, tmp_path, [], env_port=str(ports[1]))) == ports[1]
    assert _port_of(launched(monkeypatch, tmp_path, ["--port", "0"])) > 0  # a free one
    cmd = launched(monkeypatch, tmp_path, ["--port", str(ports[0])])
    assert cmd[cmd.index("--app-name") + 1] == "debench"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_the_ui_port_defaults_to_5000(tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "port_in_use", lambda host, port: False)
    assert _port_of(launched(monkeypatch, tmp_path, [])) == 5000


def test_a_port_in_use_is_named_before_mlflow_starts(tmp_path, monkeypatch, capsys):
    (tmp_path / "mlflow.db").touch()
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("mlflow ui started on a busy port"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert ui.main(["--store", str(tmp_path), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"port {port}" in err and "--port" in err and ui.PORT_ENV in err


def test_a_missing_store_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("mlflow ui started without a store"))
    assert ui.main(["--store", str(tmp_path / "nothing"), "--port", "0"]) == 1
    assert "no MLflow store" in capsys.readouterr().err
