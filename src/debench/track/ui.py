"""``mlflow ui --app-name debench``: experiments open on the runs table, with debench's metrics.

MLflow 3.17's UI ignores the ``mlflow.experimentKind`` experiment tag: it picks its view from a
global "GenAI / Model training" switch that the browser keeps in ``localStorage`` under
:data:`WORKFLOW_KEY` (GenAI when unset), and its runs table starts with the columns Source, Models
and Dataset, kept per experiment under :func:`view_state_key`. This MLflow app plugin (entry
point group ``mlflow.app``, the extension point MLflow's own ``basic-auth`` uses) serves the
UI's ``index.html`` with a small script that, before the UI starts, fills those two keys for
debench's experiments (the ones tagged as model training, see
:data:`debench.track.tracker.EXPERIMENT_KIND`): model training, and the runs table with
:data:`METRIC_COLUMNS`, and the Assistant panel left closed (:data:`ASSISTANT_OPENED_KEY`). It
writes a key only when the browser has none, so a choice the user made
(the switch, the "Columns" button) always wins. The key names are read from MLflow 3.17.2's UI
bundle (``mlflow/server/js/build/static/js``); ``tests/test_mlflow_ui.py`` checks the result in
headless Chromium. On an MLflow outside :data:`TESTED_MLFLOW` the plugin is not loaded: the plain
UI starts, with a one-line warning (:func:`plugin_supported`).

``python -m debench.track.ui --store results/<preset> [--port N]`` (``make mlflow-ui``) starts
``mlflow ui`` on a results folder's store with the plugin; the port comes from ``--port``, else
``$MLFLOW_PORT``, else 5000 (0: a free one), and a port in use is named before MLflow starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from debench.track.tracker import EXPERIMENT_KIND

log = logging.getLogger("debench.track")

WORKFLOW_KEY = "mlflow.workflowType_v1"
WORKFLOW = "machine_learning"
# MLflow 3.17's "MLflow Assistant" panel opens by itself on a browser's first visit, over a
# quarter of the runs table, unless this flag says it did so once already; its button still opens it
ASSISTANT_OPENED_KEY = "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1"
# the run-level numbers the survey compares, as debench.track.tracker logs them: the model's
# activation memory (autograd's saved bytes of one step), then the device's and the process's peaks
# under names that say what they are (debench.track.tracker.memory_metrics; CUDA's is empty on CPU)
METRIC_COLUMNS = ("test_accuracy", "nfe_forward", "activation_memory_mb", "cuda_peak_memory_mb",
                  "process_peak_rss_mb")
# then what the runs are grouped and filtered by (debench.track.tracker.GROUP_KEYS; the run name
# already names model, dataset and seed)
PARAM_COLUMNS = ("family", "table", "mode")
# the MLflow releases the plugin was tested with ([low, high)): the localStorage keys and the
# "serve" view are MLflow's internals, read from 3.17.2; pyproject.toml pins the same range
TESTED_MLFLOW = ((3, 17, 2), (3, 18))
INDEX_ENDPOINT = "serve"  # mlflow.server's view that returns the UI's index.html

_SCRIPT = """<script>(function(){try{var s=window.localStorage,seed=%s;
for(var k in seed){if(s.getItem(k)===null){s.setItem(k,JSON.stringify(seed[k]));}}}catch(e){}})();</script>"""


def view_state_key(experiment_id: str) -> str:
    """The ``localStorage`` key under which MLflow's UI keeps one experiment's runs-table state."""
    return f"MLflowLocalStorage-1.1-ExperimentPage-{json.dumps([str(experiment_id)])}-ReactComponentState"


def seed(experiment_ids: Iterable[str]) -> dict[str, Any]:
    """What the UI should find in ``localStorage`` when the user has chosen nothing yet.

    Args:
        experiment_ids: experiments whose runs table should show :data:`METRIC_COLUMNS` and
            :data:`PARAM_COLUMNS`.

    Returns:
        ``{localStorage key: value}``; values are stored JSON-encoded, as MLflow's UI does.
    """
    columns = [f"metrics.`{m}`" for m in METRIC_COLUMNS] + [f"params.`{p}`" for p in PARAM_COLUMNS]
    state = {view_state_key(e): {"selectedColumns": columns} for e in experiment_ids}
    return {WORKFLOW_KEY: WORKFLOW, ASSISTANT_OPENED_KEY: True, **state}


def seed_script(values: dict[str, Any]) -> str:
    """An inline ``<script>`` that stores each of ``values`` the browser does not hold yet."""
    return _SCRIPT % json.dumps(values).replace("</", "<\\/")


def inject(html: str, script: str) -> str:
    """``html`` with ``script`` before its first script, so it runs before the UI's own code.

    Raises:
        ValueError: ``html`` has no ``<script`` nor ``</head>`` (MLflow's index.html changed shape).
    """
    at = next((i for i in (html.find("<script"), html.find("</head>")) if i >= 0), -1)
    if at < 0:
        raise ValueError("MLflow's index.html has neither <script nor </head>: "
                         "the debench UI plugin cannot add its script")
    return html[:at] + script + html[at:]


def model_training_experiments() -> list[str]:
    """Ids of the active experiments in the server's store tagged as model training."""
    from mlflow.entities import ViewType
    from mlflow.server.handlers import _get_tracking_store

    store, ids, token = _get_tracking_store(), [], None
    query = f"tags.`{EXPERIMENT_KIND[0]}` = '{EXPERIMENT_KIND[1]}'"
    while True:
        page = store.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                        filter_string=query, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def install(app: Any, experiments: Callable[[], list[str]] = model_training_experiments) -> Any:
    """Make ``app`` (MLflow's Flask app) serve index.html with :func:`seed_script` in it.

    The page is built from the file on each request, without validators, so a browser never
    revalidates into a copy cached without the script. If the store cannot be read, the page still
    opens on model training (a warning names the error).

    Args:
        app: the Flask app whose :data:`INDEX_ENDPOINT` view serves ``index.html``.
        experiments: returns the ids whose runs table gets :data:`METRIC_COLUMNS`.

    Returns:
        ``app``.

    Raises:
        RuntimeError: ``app`` has no :data:`INDEX_ENDPOINT` view (MLflow changed).
    """
    from flask import Response

    original = app.view_functions.get(INDEX_ENDPOINT)
    if original is None:
        raise RuntimeError(f"MLflow's server has no {INDEX_ENDPOINT!r} view: the debench UI plugin "
                           "needs the MLflow version it was written for (3.17)")
    if getattr(original, "debench_seeded", False):
        return app

    def serve_index():
        index = Path(app.static_folder) / "index.html"
        if not index.is_file():
            return original()
        try:
            ids = experiments()
        except Exception as err:  # the UI must open even when the store is unreadable
            log.warning("debench UI plugin: cannot list experiments (%s); runs tables keep "
                        "MLflow's default columns", err)
            ids = []
        html = inject(index.read_text(encoding="utf-8"), seed_script(seed(ids)))
        return Response(html, mimetype="text/html", headers={"Cache-Control": "no-cache"})

    serve_index.debench_seeded = True
    app.view_functions[INDEX_ENDPOINT] = serve_index
    return app


def _release(version: str) -> tuple[int, ...]:
    """``"3.17.2rc1"`` -> ``(3, 17, 2)``; ``()`` for text that is no version."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


def mlflow_version() -> str:
    """The installed MLflow's version ('' when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlflow")
    except PackageNotFoundError:
        return ""


def plugin_supported(version: str | None = None) -> bool:
    """Whether MLflow ``version`` (default: the installed one) is in :data:`TESTED_MLFLOW`; if
    not, a one-line warning says that the plain UI starts instead."""
    version = mlflow_version() if version is None else version
    low, high = TESTED_MLFLOW
    release = _release(version)
    if release and low <= release < high:
        return True
    log.warning("debench's MLflow UI plugin was tested with mlflow>=%s,<%s, not %s: starting the plain "
                "MLflow UI (its GenAI view first; /#/experiments?workflowType=machine_learning opens the runs)",
                ".".join(map(str, low)), ".".join(map(str, high)), version or "none")
    return False


def create_app() -> Any:
    """Entry point ``mlflow.app: debench``: MLflow's server app with :func:`install` applied
    (not on an MLflow outside :data:`TESTED_MLFLOW`: the plain app, and a warning).

    Returns:
        The ASGI app when MLflow runs uvicorn (its default), else the Flask (WSGI) app, as
        MLflow's ``basic-auth`` app does.
    """
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app

    if plugin_supported():
        install(app)
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app


APP_NAME = "debench"  # the name under [project.entry-points."mlflow.app"] in pyproject.toml


def server_args() -> list[str]:
    """``mlflow server``/``mlflow ui`` arguments that load this plugin.

    Returns:
        ``["--app-name", "debench"]`` when the entry point is installed and MLflow is a version
        the plugin was tested with (:func:`plugin_supported`); else ``[]`` and a one-line warning
        (the UI then opens on MLflow's GenAI view; ``pip install -e .`` registers it).
    """
    from importlib.metadata import entry_points

    if not plugin_supported():
        return []
    if any(e.name == APP_NAME for e in entry_points(group="mlflow.app")):
        return ["--app-name", APP_NAME]
    log.warning("the mlflow.app entry point %r is not installed (pip install -e .): the MLflow UI "
                "will open experiments on its GenAI view", APP_NAME)
    return []


PORT_ENV = "MLFLOW_PORT"  # also read by `make mlflow-ui` and `make mlflow-server`
DEFAULT_PORT = 5000


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (a bind there fails)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ui_command(store: Path, host: str, port: int) -> list[str]:
    """``mlflow ui`` on the store of results folder ``store`` (``mlflow.db``, ``mlartifacts/``)."""
    return [sys.executable, "-m", "mlflow", "ui", *server_args(), "--host", host, "--port", str(port),
            "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination", str(store / "mlartifacts")]


def main(argv: list[str] | None = None) -> int:
    """``python -m debench.track.ui``: the MLflow UI of one results folder, with the plugin.

    Returns:
        1 when the store is missing or the port is taken (nothing started); otherwise the
        process becomes ``mlflow ui`` and does not return.
    """
    ap = argparse.ArgumentParser(prog="python -m debench.track.ui",
                                 description="MLflow UI of a results folder's store, runs table first")
    ap.add_argument("--store", default="results/smoke", help="results folder holding mlflow.db (default results/smoke)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=None,
                    help=f"default ${PORT_ENV}, else {DEFAULT_PORT}; 0 picks a free port")
    a = ap.parse_args(argv)
    port = a.port if a.port is not None else int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
    store = Path(a.store).resolve()
    if not (store / "mlflow.db").is_file():
        print(f"debench: no MLflow store {store / 'mlflow.db'} (train first, or choose the results folder: "
              "--store results/<preset>, make mlflow-ui PRESET=<preset>)", file=sys.stderr)
        return 1
    if port == 0:
        port = free_port(a.host)
    elif port_in_use(a.host, port):
        print(f"debench: port {port} on {a.host} is in use (another MLflow UI?): choose one with --port N or "
              f"{PORT_ENV}=N (make mlflow-ui MLFLOW_PORT=N; 0 picks a free port)", file=sys.stderr)
        return 1
    cmd = ui_command(store, a.host, port)
    print(f"open http://{a.host}:{port}", file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
