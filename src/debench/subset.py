"""Run a subset of a config's runs: ``only`` patterns over run paths.

Every run of a config has a path ``<experiment>/<dataset>/<model>/seed<k>``, the same as its
folder under ``results/<preset>/runs/``. The config key ``only`` (a string or a list of strings,
set in the YAML or on the command line with ``snakemake --config only=...``) keeps the runs whose
path matches at least one of its shell-style patterns (``*``, ``?``, ``[...]``):

    only: resnet_he2016/*/resnet20/*          # one model of one experiment, every dataset and seed
    only: ["*/*/*/seed0", "lm_resnet/*"]     # seed 0 everywhere, and all of lm_resnet

A pattern with fewer than four parts matches the leading parts (``resnet_he2016`` is
``resnet_he2016/*/*/*``). A pattern that matches no run is an error naming the closest run paths,
so a typo never silently runs nothing.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any

from debench.errors import ConfigError


def run_path(run: dict[str, Any]) -> str:
    """``experiment/dataset/model/seed<k>`` of one run (its folder under ``runs/``)."""
    return f"{run['experiment']}/{run['dataset']}/{run['model']}/seed{int(run['seed'])}"


def patterns(only: Any) -> list[str]:
    """The ``only`` value as a list of four-part patterns (None or empty: no selection).

    Raises:
        ConfigError: a pattern is not a string, is empty, or has more than four parts.
    """
    if only is None or only == "" or only == []:
        return []
    items = [only] if isinstance(only, str) else only
    if not isinstance(items, list):
        raise ConfigError(f"config key 'only': a pattern or a list of patterns, got {type(only).__name__}")
    out = []
    for i, p in enumerate(items):
        if not isinstance(p, str) or not p.strip("/ "):
            raise ConfigError(f"config key 'only[{i}]': a pattern such as 'resnet_he2016/*/resnet20/seed0', got {p!r}")
        parts = p.strip("/").split("/")
        if len(parts) > 4:
            raise ConfigError(f"config key 'only[{i}]': {p!r} has {len(parts)} parts; a run path has 4: "
                              "experiment/dataset/model/seed<k>")
        out.append("/".join(parts + ["*"] * (4 - len(parts))))
    return out


def select_runs(runs: list[dict[str, Any]], only: Any) -> list[dict[str, Any]]:
    """The runs whose path matches one of ``only``'s patterns (all runs when ``only`` is empty).

    Raises:
        ConfigError: a pattern matches no run (the message names the closest run paths).
    """
    pats = patterns(only)
    if not pats:
        return runs
    paths = [run_path(r) for r in runs]
    for p in pats:
        if not any(fnmatch.fnmatchcase(x, p) for x in paths):
            close = difflib.get_close_matches(p, paths, n=3, cutoff=0.3)
            hint = f"; closest run paths: {', '.join(close)}" if close else ""
            raise ConfigError(f"config key 'only': {p!r} matches none of the config's {len(paths)} runs{hint}")
    return [r for r, x in zip(runs, paths) if any(fnmatch.fnmatchcase(x, p) for p in pats)]
