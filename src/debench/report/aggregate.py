"""Run rows into one table per survey comparison: read rows -> summarize -> write.

Each table row is one (experiment, dataset, model): the primary metric's mean ± std, n and a
95% Student-t confidence interval over the seeds that finished with status ``ok``; failed runs
(``diverged``, ``solver_failed``) are counted, never averaged in; the table's own side metrics
(:mod:`debench.report.tables`); the published number with its provenance tag and source; the
difference; and a verdict. The rows come from ``metrics.json`` files (:func:`aggregate`) or a
stored ``runs.csv`` (:func:`aggregate_rows`); the outputs are byte-identical for the same rows.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from debench.report.measurements import write_measurement_table
from debench.report.published import load_published, match, time_saving_pct
from debench.report.render import write_table
from debench.report.runs import adjoint_flag, read_run_dirs, write_runs_csv
from debench.report.tables import TABLE_NAMES, TABLE_TITLES, row_order, side_keys
from debench.track.atomic import atomic_write_json

log = logging.getLogger("debench.report")
VERDICTS = ("reproduced", "not reproduced", "no published number", "not comparable")
DEFAULT_TOLERANCES = {"test_error": 0.5, "bits_per_dim": 0.02}
__all__ = ["aggregate", "aggregate_rows", "summarize", "t_interval", "read_runs", "TABLE_TITLES", "VERDICTS"]
read_runs = read_run_dirs


def t_interval(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    from scipy import stats

    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return (values.mean() - half, values.mean() + half)


def summarize(runs: pd.DataFrame, published: pd.DataFrame, tolerances: dict[str, float]) -> pd.DataFrame:
    """One row per (table, experiment, mode, dataset, model): statistics, side metrics, published value, verdict."""
    out = []
    keys = ["table", "experiment", "mode", "dataset", "model"]
    runs = runs.assign(mode=runs["mode"].fillna("paper") if "mode" in runs else "paper")
    for key, g in runs.groupby(keys, sort=True, dropna=False):
        row: dict[str, Any] = dict(zip(keys, key))
        metric = g["metric"].iloc[0]
        ok = g[g["status"] == "ok"]
        vals = pd.to_numeric(ok[metric], errors="coerce").dropna().to_numpy(dtype=float) if metric in ok else np.array([])
        lo, hi = t_interval(vals)
        row.update(family=g["family"].iloc[0], metric=metric, n=len(vals),
                   n_failed=int((g["status"] != "ok").sum()),
                   failed_statuses=";".join(sorted(set(g.loc[g["status"] != "ok", "status"]))),
                   mean=vals.mean() if len(vals) else math.nan,
                   std=vals.std(ddof=1) if len(vals) > 1 else math.nan, ci95_low=lo, ci95_high=hi)
        row["adjoint"] = adjoint_flag(row["model"], g["model_args"].iloc[0] if "model_args" in g else None)
        for m in side_keys(row["table"], runs.columns) if row["table"] in TABLE_TITLES else []:
            if m.startswith("published_") and m not in _DERIVED:
                other = match(published, row["model"], row["dataset"], m.removeprefix("published_"))
                row[m] = other["value"] if other else math.nan
            if m not in ok or m in row:
                continue
            num = pd.to_numeric(ok[m], errors="coerce")
            if num.notna().any():
                row[m] = float(num.mean())
            elif ok[m].notna().any():
                row[m] = str(ok[m].dropna().iloc[0])
        pub = match(published, row["model"], row["dataset"], metric)
        row.update(published=pub["value"] if pub else math.nan,
                   published_tag=pub["tag"] if pub else "", published_source=pub["source_url"] if pub else "",
                   published_table=pub["table_id"] if pub else "",
                   published_params_m=pub["params_m"] if pub else math.nan)
        row["difference"] = row["mean"] - row["published"] if pub else math.nan
        comparable = bool(g["comparable"].fillna(False).astype(bool).all()) and row["mode"] != "common"
        row["verdict"] = _verdict(row, comparable, tolerances.get(metric))
        out.append(row)
    summary = pd.DataFrame(out)
    return _time_savings(summary, published) if not summary.empty else summary


_DERIVED = {"published_params_m", "published_time_saving_pct"}
_TWIN = re.compile(r"^(?:stochastic_depth_|shakedrop_|dropout_)?(.*?)(?:_sd)?$")


def _time_savings(summary: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Stochastic-table rows: time per epoch saved against the constant-depth twin (same dataset)."""
    if "epoch_time_s" not in summary:
        return summary
    for col in ("constant_depth_model", "constant_depth_time_s", "time_saving_pct", "published_time_saving_pct"):
        summary[col] = "" if col == "constant_depth_model" else math.nan
    for i, r in summary[summary["table"] == "stochastic"].iterrows():
        twin = _TWIN.match(r["model"]).group(1)
        if twin == r["model"]:
            continue
        cand = summary[(summary["model"] == twin) & (summary["dataset"] == r["dataset"])
                       & summary["epoch_time_s"].notna()]
        cand = cand.assign(_same=cand["experiment"] != r["experiment"]).sort_values(["_same", "experiment"])
        if not cand.empty and not math.isnan(r["epoch_time_s"]):
            t = float(cand["epoch_time_s"].iloc[0])
            summary.loc[i, ["constant_depth_model", "constant_depth_time_s", "time_saving_pct"]] = \
                [twin, t, 100.0 * (1.0 - r["epoch_time_s"] / t)]
        if r["model"].startswith("stochastic_depth_resnet"):
            summary.loc[i, "published_time_saving_pct"] = time_saving_pct(
                published, r["dataset"], r["model"].removeprefix("stochastic_depth_resnet"))
    return summary


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


def aggregate_rows(runs: pd.DataFrame, published_csv: Path, out_dir: Path, tolerances: dict[str, float] | None = None,
                   expected: list[dict[str, Any]] | None = None, tables: list[str] | None = None,
                   problems: list[str] | None = None) -> pd.DataFrame:
    """Write ``runs.csv``, ``tables/<table>.{csv,md,tex}`` and ``tables/summary.json`` from run rows.

    Args:
        runs: one row per run (:func:`debench.report.runs.read_run_dirs` or ``read_runs_csv``).
        published_csv: the vendored published numbers.
        out_dir: destination; every file is written atomically.
        tolerances: absolute tolerance per metric for the ``reproduced`` verdict.
        expected: runs the configuration asks for (dicts with experiment, dataset, model, seed);
            those without a row are listed as incomplete instead of failing.
        tables: tables to write even without runs (shown as not yet run); default: all eight.
        problems: unreadable inputs to list in ``summary.json``.

    Returns:
        The summary table.
    """
    problems = list(problems or [])
    published = load_published(published_csv)
    out_dir = Path(out_dir)
    write_runs_csv(runs, out_dir / "runs.csv")
    summary = summarize(write_measurement_table(runs, published, out_dir, tolerances), published,
                        tolerances or {}) if not runs.empty else pd.DataFrame()
    incomplete = []
    if expected is not None:
        have = set() if runs.empty else set(zip(runs.experiment, runs.dataset, runs.model, runs.seed.astype(int)))
        incomplete = [e for e in expected if (e["experiment"], e["dataset"], e["model"], int(e["seed"])) not in have]
    names = list(TABLE_NAMES if tables is None else tables)
    names += sorted(set(summary["table"]) - set(names)) if not summary.empty else []
    for name in names:
        part = summary[summary["table"] == name] if not summary.empty else pd.DataFrame()
        write_table(row_order(part), out_dir / "tables", name)
    counts = {v: int((summary["verdict"] == v).sum()) if not summary.empty else 0 for v in VERDICTS}
    comparable = bool(runs["comparable"].fillna(False).astype(bool).all()) if not runs.empty else None
    atomic_write_json(out_dir / "tables" / "summary.json", {
        "verdicts": counts, "runs": int(len(runs)),
        "runs_ok": int((runs["status"] == "ok").sum()) if not runs.empty else 0,
        "runs_failed": int((runs["status"] != "ok").sum()) if not runs.empty else 0,
        "comparable": comparable, "presets": sorted(set(runs["preset"].dropna())) if "preset" in runs else [],
        "tables_run": sorted(set(summary["table"])) if not summary.empty else [],
        "incomplete": incomplete, "unreadable": problems, "tables": names,
    })
    for p in problems:
        log.warning(p)
    if incomplete:
        log.warning("%d expected run(s) have no metrics.json yet", len(incomplete))
    return summary


def aggregate(runs_dir: Path, published_csv: Path, out_dir: Path, tolerances: dict[str, float] | None = None,
              expected: list[dict[str, Any]] | None = None, tables: list[str] | None = None) -> pd.DataFrame:
    """:func:`aggregate_rows` over every ``metrics.json`` under ``runs_dir``."""
    runs, problems = read_run_dirs(Path(runs_dir))
    return aggregate_rows(runs, published_csv, out_dir, tolerances, expected, tables, problems)
