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


def _fail(keys: list, msg: str, locate) -> None:
    from debench.config import key_message

    raise ConfigError(key_message(keys, msg, locate))


def patterns(only: Any, locate=None) -> list[str]:
    """The ``only`` value as a list of four-part patterns (None or empty: no selection).

    Raises:
        ConfigError: a pattern is not a string, is empty, or has more than four parts.
    """
    if only is None or only == "" or only == []:
        return []
    items = [only] if isinstance(only, str) else only
    if not isinstance(items, list):
        _fail(["only"], f"a pattern or a list of patterns, got {type(only).__name__}", locate)
    out = []
    for i, p in enumerate(items):
        if not isinstance(p, str) or not p.strip("/ "):
            _fail(["only", i], f"a pattern such as 'resnet_he2016/*/resnet20/seed0', got {p!r}", locate)
        parts = p.strip("/").split("/")
        if len(parts) > 4:
            _fail(["only", i], f"{p!r} has {len(parts)} parts; a run path has 4: experiment/dataset/model/seed<k>",
                  locate)
        out.append("/".join(parts + ["*"] * (4 - len(parts))))
    return out


def select_runs(runs: list[dict[str, Any]], only: Any, locate=None) -> list[dict[str, Any]]:
    """The runs whose path matches one of ``only``'s patterns (all runs when ``only`` is empty).
    ``locate`` (:func:`debench.config.config_locator`) puts the file and line in an error.

    Raises:
        ConfigError: a pattern matches no run (the message names the closest run paths).
    """
    pats = patterns(only, locate)
    if not pats:
        return runs
    paths = [run_path(r) for r in runs]
    for p in pats:
        if not any(fnmatch.fnmatchcase(x, p) for x in paths):
            close = difflib.get_close_matches(p, paths, n=3, cutoff=0.3)
            hint = f"; closest run paths: {', '.join(close)}" if close else ""
            _fail(["only"], f"{p!r} matches none of the config's {len(paths)} runs{hint}", locate)
    return [r for r, x in zip(runs, paths) if any(fnmatch.fnmatchcase(x, p) for p in pats)]
