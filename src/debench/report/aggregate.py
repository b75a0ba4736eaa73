"""Collect every ``metrics.json`` into ``runs.csv`` and one table per survey comparison.

Each table row is one (experiment, dataset, model): the primary metric's mean ± std, n and a
95% Student-t confidence interval over the seeds that finished with status ``ok``; failed runs
(``diverged``, ``solver_failed``) are counted, never averaged in; the published number with its
provenance tag and source; the difference; and a verdict.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from debench.report.published import load_published, match
from debench.report.render import write_table
from debench.track.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger("debench.report")
VERDICTS = ("reproduced", "not reproduced", "no published number", "not comparable")
SIDE_METRICS = ("params", "evals_per_forward", "nfe_forward", "nfe_backward", "activation_memory_mb",
                "peak_memory_mb", "epoch_time_s", "throughput_img_s")
TABLE_TITLES = {
    "discrete": "Discrete DE-inspired architectures",
    "neural_ode": "Neural ODEs",
    "anode": "ANODE vs NODE",
    "flows": "Continuous normalizing flows",
    "stochastic": "Stochastic regularization",
    "neural_sde": "Neural SDE robustness",
    "latent_sde": "Latent SDEs",
    "generative": "Generative SDEs",
}


def read_runs(runs_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """All readable ``metrics.json`` under ``runs_dir`` as rows; unreadable ones are reported."""
    rows, problems = [], []
    for path in sorted(runs_dir.rglob("metrics.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(f"{path}: unreadable ({exc})")
            continue
        flat = {k: v for k, v in rec.items() if not isinstance(v, (dict, list))}
        for group in ("protocol", "runtime", "provenance", "data"):
            flat.update({f"{group}.{k}": json.dumps(v) if isinstance(v, list) else v
                         for k, v in (rec.get(group) or {}).items()})
        if rec.get("artifacts"):
            flat["artifacts"] = json.dumps(rec["artifacts"])
        flat["model_args"] = json.dumps(rec.get("model_args") or {}, sort_keys=True)
        flat["run_dir"] = str(path.parent.relative_to(runs_dir))
        rows.append(flat)
    return pd.DataFrame(rows), problems


def t_interval(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    from scipy import stats

    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return (values.mean() - half, values.mean() + half)


def summarize(runs: pd.DataFrame, published: pd.DataFrame, tolerances: dict[str, float]) -> pd.DataFrame:
    """One row per (table, experiment, dataset, model) with statistics, published value, verdict."""
    out = []
    keys = ["table", "experiment", "mode", "dataset", "model"]
    for key, g in runs.groupby(keys, sort=True, dropna=False):
        row: dict[str, Any] = dict(zip(keys, key))
        metric = g["metric"].iloc[0]
        ok = g[g["status"] == "ok"]
        vals = pd.to_numeric(ok.get(metric), errors="coerce").dropna().to_numpy(dtype=float) \
            if metric in ok else np.array([])
        lo, hi = t_interval(vals)
        row.update(family=g["family"].iloc[0], metric=metric, n=len(vals),
                   n_failed=int((g["status"] != "ok").sum()),
                   failed_statuses=";".join(sorted(set(g.loc[g["status"] != "ok", "status"])) or []),
                   mean=vals.mean() if len(vals) else math.nan,
                   std=vals.std(ddof=1) if len(vals) > 1 else math.nan, ci95_low=lo, ci95_high=hi)
        for m in SIDE_METRICS:
            if m in ok and pd.to_numeric(ok[m], errors="coerce").notna().any():
                row[m] = pd.to_numeric(ok[m], errors="coerce").mean()
        pub = match(published, row["model"], row["dataset"], metric)
        row.update(published=pub["value"] if pub else math.nan,
                   published_tag=pub["tag"] if pub else "", published_source=pub["source_url"] if pub else "",
                   published_table=pub["table_id"] if pub else "")
        row["difference"] = row["mean"] - row["published"] if pub else math.nan
        comparable = bool(g["comparable"].fillna(False).astype(bool).all()) and row["mode"] != "common"
        row["verdict"] = _verdict(row, comparable, tolerances.get(metric))
        out.append(row)
    return pd.DataFrame(out)


def _verdict(row: dict[str, Any], comparable: bool, tolerance: float | None) -> str:
    if not comparable:
        return "not comparable"
    if math.isnan(row["published"]):
        return "no published number"
    if row["n"] == 0:
        return "not reproduced"
    inside = row["ci95_low"] <= row["published"] <= row["ci95_high"] if row["n"] > 1 else False
    close = tolerance is not None and abs(row["difference"]) <= tolerance
    return "reproduced" if inside or close else "not reproduced"


def aggregate(runs_dir: Path, published_csv: Path, out_dir: Path, tolerances: dict[str, float] | None = None,
              expected: list[dict[str, Any]] | None = None, tables: list[str] | None = None) -> pd.DataFrame:
    """Write ``runs.csv``, ``tables/<table>.{csv,md,tex}``, ``tables/summary.json``.

    Args:
        runs_dir: folder searched recursively for ``metrics.json``.
        published_csv: the vendored published numbers.
        out_dir: destination; files are written atomically.
        tolerances: absolute tolerance per metric for the ``reproduced`` verdict.
        expected: runs the configuration asks for (dicts with experiment, dataset, model, seed);
            those without a ``metrics.json`` are listed as incomplete instead of failing.
        tables: table names to write even when they have no runs yet (shown as not yet run).

    Returns:
        The summary table.
    """
    runs, problems = read_runs(runs_dir)
    published = load_published(published_csv)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not runs.empty:
        runs = runs.sort_values(["experiment", "dataset", "model", "seed"], kind="stable")
    atomic_write_text(out_dir / "runs.csv", runs.to_csv(index=False))
    summary = summarize(runs, published, tolerances or {}) if not runs.empty else pd.DataFrame()
    incomplete = []
    if expected is not None:
        have = set() if runs.empty else set(zip(runs.experiment, runs.dataset, runs.model, runs.seed.astype(int)))
        incomplete = [e for e in expected if (e["experiment"], e["dataset"], e["model"], int(e["seed"])) not in have]
    tables_dir = out_dir / "tables"
    names = sorted(set(tables or []) | (set(summary["table"]) if not summary.empty else set()))
    for name in names:
        part = summary[summary["table"] == name] if not summary.empty else pd.DataFrame()
        write_table(part, tables_dir, name, TABLE_TITLES.get(name, name))
    counts = {v: int((summary["verdict"] == v).sum()) if not summary.empty else 0 for v in VERDICTS}
    atomic_write_json(tables_dir / "summary.json", {
        "verdicts": counts, "runs": int(len(runs)),
        "runs_ok": int((runs["status"] == "ok").sum()) if not runs.empty else 0,
        "runs_failed": int((runs["status"] != "ok").sum()) if not runs.empty else 0,
        "incomplete": incomplete, "unreadable": problems, "tables": names,
    })
    for p in problems:
        log.warning(p)
    if incomplete:
        log.warning("%d expected run(s) have no metrics.json yet", len(incomplete))
    return summary
