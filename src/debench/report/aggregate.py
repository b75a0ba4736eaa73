"""Run rows into one table per survey comparison: read rows -> check -> summarize -> write.

Each table row is one (experiment, dataset, model, config hash): the primary metric's mean ±
std, n and a 95% Student-t confidence interval over the seeds that finished with status ``ok``;
failed runs (``diverged``, ``solver_failed``) are counted, never averaged in. Its verdict is the
equivalence verdict of :mod:`debench.report.equivalence` (reproduced only when the whole CI lies
inside published ± tolerance). ``summary.json`` counts three kinds of evidence apart
(``evidence``): trained results, measurements and architecture checks (:data:`EVIDENCE`). Runs of the same
model with different config hashes are never averaged together: each hash is its own row, and
its ``config`` cell says what differs (:mod:`debench.report.compare`). The rows come from
``metrics.json`` files (:func:`aggregate`) or a stored ``runs.csv`` (:func:`aggregate_rows`),
both checked against the run-record schema (:mod:`debench.report.schema`) before anything is
written; the outputs are byte-identical for the same rows.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from debench.report.baselines import baseline_comparisons
from debench.report.compare import config_labels, time_savings
from debench.report.equivalence import INCONCLUSIVE, measured_verdict, trained_verdict
from debench.report.expected import devices, identity_from_path, not_yet_run, select_expected
from debench.report.published import load_published, match
from debench.report.measurements import (ARCHITECTURE, DIFFERENT, MEASUREMENT, measurement_table, split_measurements,
                                         trained_architecture_rows, write_measurement_table)
from debench.report.render import TIME_COLUMNS, write_table
from debench.report.runs import adjoint_flag, canonical, machines, read_run_dirs
from debench.report.tables import TABLE_NAMES, TABLE_TITLES, row_order, side_keys
from debench.report.tolerance import Tolerance, parse_tolerances
from debench.track.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger("debench.report")
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "no published number", "not comparable")
# The three kinds of evidence, each with its own verdicts, counted apart (summary.json "evidence").
EVIDENCE = {
    "trained": ("Trained results", VERDICTS),
    "measurements": ("Measurements", ("reproduced", "not reproduced", DIFFERENT, "no published number",
                                      "not comparable")),
    "architecture": ("Architecture checks", ("matches", "differs", "no published number", "not comparable")),
}
DEFAULT_TOLERANCES = {"test_error": 0.5, "bits_per_dim": 0.02}
ROW_KEY = ["table", "experiment", "mode", "dataset", "model", "settings_hash"]
__all__ = ["TABLE_TITLES", "VERDICTS", "aggregate", "aggregate_rows", "read_runs", "summarize", "t_interval"]
read_runs = read_run_dirs


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% Student-t confidence interval of the mean (NaN for fewer than two values)."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    from scipy import stats

    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return (values.mean() - half, values.mean() + half)


def _first(g: pd.DataFrame, col: str) -> Any:
    return g[col].iloc[0] if col in g else None


def summarize(runs: pd.DataFrame, published: pd.DataFrame, tolerances: dict[str, Tolerance]) -> pd.DataFrame:
    """One row per (table, experiment, mode, dataset, model, config hash): statistics, side metrics, verdict."""
    out = []
    for key, g in runs.groupby(ROW_KEY, sort=True, dropna=False):
        row: dict[str, Any] = dict(zip(ROW_KEY, key))
        metric = g["metric"].iloc[0]
        ok = g[g["status"] == "ok"]
        vals = pd.to_numeric(ok[metric], errors="coerce").dropna().to_numpy(dtype=float) if metric in ok else np.array([])
        lo, hi = t_interval(vals)
        row.update(family=g["family"].iloc[0], metric=metric, n=len(vals),
                   n_failed=int((g["status"] != "ok").sum()),
                   failed_statuses=";".join(sorted(set(g.loc[g["status"] != "ok", "status"]))),
                   mean=vals.mean() if len(vals) else math.nan,
                   std=vals.std(ddof=1) if len(vals) > 1 else math.nan, ci95_low=lo, ci95_high=hi)
        selectors = json.loads(g["model_meta.reference"].iloc[0])
        row["adjoint"] = adjoint_flag(_first(g, "model_args.adjoint"))
        for m in side_keys(row["table"], runs.columns) if row["table"] in TABLE_TITLES else []:
            if m.startswith("published_") and m not in _DERIVED:
                other = match(published, selectors, row["dataset"], m.removeprefix("published_"))
                row[m] = other["value"] if other else math.nan
            if m not in ok or m in row:
                continue
            num = pd.to_numeric(ok[m], errors="coerce")
            if num.notna().any():
                row[m] = float(num.mean())
            elif ok[m].notna().any():
                row[m] = str(ok[m].dropna().iloc[0])
        row.update(_times_on_one_machine(row, ok), compiled=str(_first(g, "model_meta.compiled")),
                   twin=_text(_first(g, "model_meta.constant_depth_twin")),
                   depth=_first(g, "model_meta.depth"), selectors=selectors)
        pub = match(published, selectors, row["dataset"], metric)
        row.update(published=pub["value"] if pub else math.nan,
                   published_tag=pub["tag"] if pub else "", published_source=pub["source_url"] if pub else "",
                   published_table=pub["table_id"] if pub else "",
                   published_read_from=pub["read_from"] if pub else "", published_paper_url=pub["paper_url"] if pub else "",
                   published_params_m=pub["params_m"] if pub else math.nan)
        row["difference"] = row["mean"] - row["published"] if pub else math.nan
        comparable = bool(g["comparable"].fillna(False).astype(bool).all()) and row["mode"] != "common"
        tol = tolerances.get(metric)
        row["tolerance"] = tol.label() if tol else ""
        precisions = sorted(set(ok["precision.train"].dropna().astype(str))) if "precision.train" in ok else []
        row["verdict"], row["verdict_reason"], row["seeds_needed"] = _verdict(row, vals, comparable, tol, precisions)
        row["params_verdict"] = _params_verdict(ok, row["published_params_m"], tolerances.get("params_m"))
        row["params_tolerance"] = tolerances["params_m"].label() if "params_m" in tolerances else ""
        out.append(row)
    summary = pd.DataFrame(out)
    if summary.empty:
        return summary
    summary["config"] = config_labels(summary, runs)
    return time_savings(summary, published).drop(columns=["selectors", "twin", "depth", "compiled"])


_DERIVED = {"published_params_m", "published_time_saving_pct"}


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _times_on_one_machine(row: dict[str, Any], ok: pd.DataFrame) -> dict[str, Any]:
    """The row's times, averaged only over runs on one machine (:func:`debench.report.runs.machine`).

    Runs of one row on several machines (seeds on two CPUs, or on an H100 and an A100) leave the
    row's times empty, with ``n_machines`` and a ``time_note`` saying why: a mean of two machines'
    seconds is no machine's time. The report's time-per-run table still gives each run's. ``_machine``
    (the one machine, else "") keeps a time saving from comparing a row with a twin timed elsewhere.
    """
    ms = machines(ok) if not ok.empty else []
    if len(ms) <= 1:
        return {**_epoch_time(ok), "n_machines": len(ms), "_machine": ms[0] if ms else ""}
    for key in TIME_COLUMNS:  # seconds: they mean something on one machine only
        if key in row:
            row[key] = math.nan
    return {"_epoch_time": math.nan, "n_machines": len(ms), "_machine": "",
            "time_note": f"times not averaged: the {len(ok)} runs ran on {len(ms)} machines ({'; '.join(ms)})"}


def _epoch_time(ok: pd.DataFrame) -> dict[str, Any]:
    """Seconds per epoch for the time saving: the recorded median after the first epoch, else the mean (noted)."""
    for col, note in (("epoch_time_median_s", ""),
                      ("epoch_time_s", "epoch_time_median_s absent: mean epoch time, first epoch included")):
        v = pd.to_numeric(ok[col], errors="coerce").dropna() if col in ok else pd.Series(dtype=float)
        if not v.empty:
            return {"_epoch_time": float(v.mean()), "time_note": note}
    return {"_epoch_time": math.nan, "time_note": ""}


def _params_verdict(ok: pd.DataFrame, published_m: float, tol: Tolerance | None) -> str:
    """The parameter count against the published one (millions), within ``report.tolerances.params_m``."""
    params = pd.to_numeric(ok["params"], errors="coerce").dropna() if "params" in ok else pd.Series(dtype=float)
    if tol is None or params.empty or math.isnan(published_m):
        return ""
    eq = measured_verdict(float(params.mean()) / 1e6, published_m, tol)
    return "matches" if eq.verdict == "reproduced" else "differs"


# The precision a trained row must have to stand beside a published number: fp32, the precision
# of the authors' codes read so far (those named in debench.train.runtime's docstring; the ResNet
# papers of 2015-2016 predate mixed-precision training). A bf16 or TF32 run changes the arithmetic
# the published number came from, so it is a variant: shown with its numbers, never judged.
PUBLISHED_PRECISION = "fp32"


def _verdict(row: dict[str, Any], values: np.ndarray, comparable: bool,
             tolerance: Tolerance | None, precisions: list[str] | None = None) -> tuple[str, str, float]:
    """``(verdict, reason, seeds needed)``: the equivalence verdict of the row's finished seeds.

    ``precisions``: the ``precision.train`` values of those seeds; any other than fp32 makes the
    row not comparable (:data:`PUBLISHED_PRECISION`).
    """
    if not comparable:
        return "not comparable", "reduced preset or common mode: never compared with a paper", math.nan
    if math.isnan(row["published"]):
        return "no published number", "", math.nan
    other = [p for p in precisions or [] if p != PUBLISHED_PRECISION]
    if other:
        return ("not comparable", f"trained in {', '.join(other)} (precision.train); the published numbers are "
                f"{PUBLISHED_PRECISION} runs: set runtime.amp: off to compare", math.nan)
    if tolerance is None:
        return INCONCLUSIVE, f"no tolerance for {row['metric']} in report.tolerances", math.nan
    eq = trained_verdict(values, row["published"], tolerance)
    return eq.verdict, eq.reason, math.nan if eq.seeds_needed is None else float(eq.seeds_needed)


def aggregate_rows(runs: pd.DataFrame, published_csv: Path, out_dir: Path, tolerances: dict[str, Any] | None = None,
                   expected: list[dict[str, Any]] | None = None, tables: list[str] | None = None,
                   problems: list[str] | None = None, stale: list[Any] | None = None) -> pd.DataFrame:
    """Write ``runs.csv``, ``tables/<table>.{csv,md,tex}`` and ``tables/summary.json`` from run rows.

    Everything is computed first and written last, so bad input leaves the outputs as they were.

    Args:
        runs: one row per run (:func:`debench.report.runs.read_run_dirs` or ``read_runs_csv``).
        published_csv: the vendored published numbers.
        out_dir: destination; every file is written atomically.
        tolerances: ``report.tolerances``: per metric, absolute (number) or relative (``"2%"``);
            ``params_m`` (parameter count, millions) defaults to ``"2%"``.
        expected: the runs the configuration asks for (dicts with experiment, dataset, model,
            seed): exactly these are counted; those without a row are listed as ``missing``,
            rows not asked for are left out and listed as ``stale``.
        tables: tables to write even without runs (shown as not yet run); default: all eight.
        problems: records shown as unreadable (``--unreadable show``), listed in ``summary.json``.
        stale: stale inputs found by the caller (e.g. run folders the config no longer asks for).

    Returns:
        The summary table.

    Raises:
        ReportInputError: a bad tolerance, reference selector or published CSV (named).
    """
    problems = list(problems or [])
    tols = parse_tolerances(tolerances)
    published = load_published(published_csv)
    runs, missing, stale_rows = select_expected(runs, expected)
    stale = list(stale or []) + stale_rows
    runs, text = canonical(runs)
    measured, trained = split_measurements(runs)
    summary = summarize(trained, published, tols) if not trained.empty else pd.DataFrame()
    measurements = trained_architecture_rows(summary, measurement_table(measured, published, tols))
    baselines = baseline_comparisons(summary, trained)
    names = list(TABLE_NAMES if tables is None else tables)
    names += sorted(set(summary["table"]) - set(names)) if not summary.empty else []
    info = {
        "evidence": evidence_counts(summary, measurements), "runs": len(runs),
        "runs_ok": int((runs["status"] == "ok").sum()) if not runs.empty else 0,
        "runs_failed": int((runs["status"] != "ok").sum()) if not runs.empty else 0,
        "comparable": bool(runs["comparable"].fillna(False).astype(bool).all()) if not runs.empty else None,
        "presets": sorted(set(runs["preset"].dropna())) if "preset" in runs else [],
        "tables_run": sorted(set(summary["table"])) if not summary.empty else [],
        "missing": missing, "incomplete": missing, "not_yet_run_rows": not_yet_run(missing, summary),
        "stale": stale, "unreadable": problems, "tables": names,
        "devices": devices(runs), "tolerances": {k: t.label() for k, t in tols.items()},
    }
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "runs.csv", text)
    for name in names:
        part = summary[summary["table"] == name] if not summary.empty else pd.DataFrame()
        write_table(row_order(part), out_dir / "tables", name)
    write_measurement_table(measurements, out_dir)
    atomic_write_text(out_dir / "tables" / "baselines.csv", baselines.to_csv(index=False, float_format="%.6g"))
    atomic_write_json(out_dir / "tables" / "summary.json", info)
    for p in problems:
        log.warning(p)
    if missing:
        log.warning("%d expected run(s) have no metrics.json yet", len(missing))
    if stale:
        log.warning("%d stale run(s) the config no longer asks for were left out", len(stale))
    return summary


def evidence_counts(summary: pd.DataFrame, measurements: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Rows and verdicts per kind of evidence (:data:`EVIDENCE`); every row is counted exactly once.

    Args:
        summary: the trained rows (one per experiment, dataset, model, config hash).
        measurements: the measurement and architecture rows (``kind`` column), trained runs'
            parameter counts already merged in (:func:`debench.report.measurements.trained_architecture_rows`).

    Returns:
        ``{kind: {"rows": n, "verdicts": {verdict: count}}}``, every verdict of the kind listed.
    """
    frames = {"trained": summary,
              "measurements": measurements[measurements["kind"] == MEASUREMENT] if not measurements.empty else measurements,
              "architecture": measurements[measurements["kind"] == ARCHITECTURE] if not measurements.empty else measurements}
    out = {}
    for kind, (_, verdicts) in EVIDENCE.items():
        f = frames[kind]
        got = f["verdict"].value_counts().to_dict() if not f.empty else {}
        unknown = set(got) - set(verdicts)
        if unknown:
            raise ValueError(f"{kind}: verdict(s) {sorted(unknown)} outside {verdicts}")
        out[kind] = {"rows": int(len(f)), "verdicts": {v: int(got.get(v, 0)) for v in verdicts}}
    return out


def aggregate(runs_dir: Path, published_csv: Path, out_dir: Path, tolerances: dict[str, Any] | None = None,
              expected: list[dict[str, Any]] | None = None, tables: list[str] | None = None,
              metrics: list[Path] | None = None, unreadable: str = "fail") -> pd.DataFrame:
    """:func:`aggregate_rows` over the ``metrics.json`` files of ``runs_dir``.

    Args:
        metrics: exactly the records the configuration asks for (the workflow passes them):
            absent ones are listed as missing, other records under ``runs_dir`` as stale.
        unreadable: ``fail`` (default: a bad record stops the aggregate, naming the file) or
            ``show`` (it is listed in the report as unreadable).
        Others: as :func:`aggregate_rows`.

    Raises:
        RunRecordError: a bad record under ``unreadable="fail"``.
    """
    runs_dir = Path(runs_dir)
    stale: list[Any] = []
    if metrics is not None:
        wanted = [Path(m) for m in metrics]
        present = [p for p in wanted if p.is_file()]
        known = {p.resolve() for p in wanted}
        stale = [str(p) for p in sorted(runs_dir.rglob("metrics.json")) if p.resolve() not in known]
        if expected is None:
            expected = [identity_from_path(p) for p in wanted]
        runs, problems = read_run_dirs(runs_dir, present, unreadable)
    else:
        runs, problems = read_run_dirs(runs_dir, None, unreadable)
    return aggregate_rows(runs, published_csv, out_dir, tolerances, expected, tables, problems, stale)


