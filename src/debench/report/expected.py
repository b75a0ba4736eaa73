"""Which runs count: exactly those the configuration asks for; the rest are missing or stale.

The workflow hands the aggregate the expected ``metrics.json`` paths; a stored ``runs.csv`` can be
checked against expected identities. Rows not asked for (a seed or model the config no longer
lists, an older lr) are left out and listed as stale, never averaged in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from debench.report.runs import IDENTITY
from debench.report.schema import ReportInputError


def select_expected(runs: pd.DataFrame, expected: list[dict[str, Any]] | None) -> tuple[pd.DataFrame, list, list]:
    """Keep exactly the expected runs.

    Args:
        runs: run rows.
        expected: dicts with experiment, dataset, model, seed; ``None`` keeps every row.

    Returns:
        ``(kept rows, expected runs without a row, stale rows as identity + config_hash dicts)``.
    """
    if expected is None:
        return runs, [], []
    want = {(str(e["experiment"]), str(e["dataset"]), str(e["model"]), int(e["seed"])) for e in expected}
    have = [] if runs.empty else list(zip(runs.experiment, runs.dataset, runs.model, runs.seed.astype(int)))
    keep = np.array([k in want for k in have], dtype=bool)
    stale = [] if runs.empty else [dict(zip(IDENTITY + ["config_hash"], (*k, h)))
                                   for k, h, kept in zip(have, runs["config_hash"], keep) if not kept]
    missing = [e for e in expected
               if (str(e["experiment"]), str(e["dataset"]), str(e["model"]), int(e["seed"])) not in set(have)]
    return (runs[keep].reset_index(drop=True) if not runs.empty else runs), missing, stale


def not_yet_run(missing: list[dict[str, Any]], summary: pd.DataFrame) -> int:
    """Table rows (experiment, dataset, model) expected but without any run yet."""
    have = set() if summary.empty else set(zip(summary.experiment, summary.dataset, summary.model))
    keys = {(e.get("experiment"), e.get("dataset"), e.get("model")) for e in missing}
    return len(keys - have)


def devices(runs: pd.DataFrame) -> dict[str, int]:
    """Runs per device: ``CPU`` for a run whose ``runtime.device_type`` is cpu (its
    ``provenance.device_name`` is only the machine architecture, ``x86_64``), else the device
    name (the GPU's), else the device type."""
    if runs.empty:
        return {}
    kind = runs["runtime.device_type"].astype(str).str.lower() if "runtime.device_type" in runs \
        else pd.Series("", index=runs.index)
    name = runs["provenance.device_name"] if "provenance.device_name" in runs else pd.Series(None, index=runs.index)
    labels = []
    for k, n in zip(kind, name):
        if k == "cpu":
            labels.append("CPU")
        elif isinstance(n, str) and n.strip():
            labels.append(n)
        elif k and k != "nan":
            labels.append(k)
    return {str(k): int(v) for k, v in pd.Series(labels, dtype=object).value_counts().sort_index().items()}


_LAYOUT = re.compile(r"(?P<experiment>[^/]+)/(?P<dataset>[^/]+)/(?P<model>[^/]+)/seed(?P<seed>\d+)/metrics\.json$")


def identity_from_path(path: Path) -> dict[str, Any]:
    """``{experiment, dataset, model, seed, path}`` from ``.../<experiment>/<dataset>/<model>/seed<N>/metrics.json``.

    Raises:
        ReportInputError: the path does not follow the workflow's layout.
    """
    m = _LAYOUT.search(Path(path).as_posix())
    if not m:
        raise ReportInputError(f"{path}: not a run record path <experiment>/<dataset>/<model>/seed<N>/metrics.json")
    return {**m.groupdict(), "seed": int(m["seed"]), "path": str(path)}
