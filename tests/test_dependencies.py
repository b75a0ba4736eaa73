"""Every third-party package debench imports is declared in pyproject.toml (issue 23.7: scipy was not)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from tests.conftest import ROOT

# imported only where the distribution that needs it brings it along: flask by debench.track.ui,
# the app plugin that runs inside `mlflow ui` (mlflow's server is a Flask app and requires flask)
BROUGHT_BY = {"flask": "mlflow"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_imported_distribution_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(d) for d in project["dependencies"]}
    modules = set()
    for path in (ROOT / "src" / "debench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    dists = packages_distributions()
    undeclared = {}
    for module in sorted(modules - set(sys.stdlib_module_names) - {"debench"}):
        names = {_name(d) for d in dists.get(module, [module])}
        if not names & declared and BROUGHT_BY.get(module) not in declared:
            undeclared[module] = sorted(names)
    assert not undeclared, f"imported but not in [project] dependencies: {undeclared}"
    assert "scipy" in declared  # the statistics (t quantiles) need it
