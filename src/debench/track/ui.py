"""``mlflow ui --app-name debench``: experiments open on the runs table, with debench's metrics.

MLflow 3.17's UI ignores the ``mlflow.experimentKind`` experiment tag: it picks its view from a
global "GenAI / Model training" switch that the browser keeps in ``localStorage`` under
:data:`WORKFLOW_KEY` (GenAI when unset), and its runs table starts with the columns Source, Models
and Dataset, kept per experiment under :func:`view_state_key`. This MLflow app plugin (entry
point group ``mlflow.app``, the extension point MLflow's own ``basic-auth`` uses) serves the
UI's ``index.html`` with a small script that, before the UI starts, fills those two keys for
debench's experiments (the ones tagged as model training, see
:data:`debench.track.tracker.EXPERIMENT_KIND`): model training, and the runs table with
:data:`METRIC_COLUMNS`. It writes a key only when the browser has none, so a choice the user made
(the switch, the "Columns" button) always wins. The key names are read from MLflow 3.17.2's UI
bundle (``mlflow/server/js/build/static/js``); ``tests/test_mlflow_ui.py`` checks the result in
headless Chromium.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable

from debench.track.tracker import EXPERIMENT_KIND

log = logging.getLogger("debench.track")

WORKFLOW_KEY = "mlflow.workflowType_v1"
WORKFLOW = "machine_learning"
# the run-level numbers the survey compares; keys as logged from debench.record_format.FINAL_KEYS
METRIC_COLUMNS = ("test_accuracy", "nfe_forward", "peak_memory_mb")
INDEX_ENDPOINT = "serve"  # mlflow.server's view that returns the UI's index.html

_SCRIPT = """<script>(function(){try{var s=window.localStorage,seed=%s;
for(var k in seed){if(s.getItem(k)===null){s.setItem(k,JSON.stringify(seed[k]));}}}catch(e){}})();</script>"""


def view_state_key(experiment_id: str) -> str:
    """The ``localStorage`` key under which MLflow's UI keeps one experiment's runs-table state."""
    return f"MLflowLocalStorage-1.1-ExperimentPage-{json.dumps([str(experiment_id)])}-ReactComponentState"


def seed(experiment_ids: Iterable[str]) -> dict[str, Any]:
    """What the UI should find in ``localStorage`` when the user has chosen nothing yet.

    Args:
        experiment_ids: experiments whose runs table should show :data:`METRIC_COLUMNS`.

    Returns:
        ``{localStorage key: value}``; values are stored JSON-encoded, as MLflow's UI does.
    """
    columns = [f"metrics.`{m}`" for m in METRIC_COLUMNS]
    state = {view_state_key(e): {"selectedColumns": columns} for e in experiment_ids}
    return {WORKFLOW_KEY: WORKFLOW, **state}


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


def create_app() -> Any:
    """Entry point ``mlflow.app: debench``: MLflow's server app with :func:`install` applied.

    Returns:
        The ASGI app when MLflow runs uvicorn (its default), else the Flask (WSGI) app, as
        MLflow's ``basic-auth`` app does.
    """
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app

    install(app)
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app


APP_NAME = "debench"  # the name under [project.entry-points."mlflow.app"] in pyproject.toml


def server_args() -> list[str]:
    """``mlflow server``/``mlflow ui`` arguments that load this plugin.

    Returns:
        ``["--app-name", "debench"]`` when the entry point is installed; else ``[]`` and a warning
        (the UI then opens on MLflow's GenAI view; ``pip install -e .`` registers it).
    """
    from importlib.metadata import entry_points

    if any(e.name == APP_NAME for e in entry_points(group="mlflow.app")):
        return ["--app-name", APP_NAME]
    log.warning("the mlflow.app entry point %r is not installed (pip install -e .): the MLflow UI "
                "will open experiments on its GenAI view", APP_NAME)
    return []
