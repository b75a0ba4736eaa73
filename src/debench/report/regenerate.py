"""Rebuild every table, plot and the HTML report from a stored ``runs.csv``, with no training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from debench.report.aggregate import DEFAULT_TOLERANCES, aggregate_rows
from debench.report.html import build_report
from debench.report.runs import read_runs_csv


def regenerate(runs_csv: Path, out: Path, published_csv: Path, tolerances: dict[str, float] | None = None,
               runs_dir: Path | None = None) -> pd.DataFrame:
    """``out/runs.csv``, ``out/tables/*`` and ``out/report/`` from ``runs_csv`` alone.

    Args:
        runs_csv: one row per run, as written by ``debench aggregate`` or ``debench merge-runs``.
        out: destination folder (created).
        published_csv: the vendored published numbers.
        tolerances: absolute tolerance per metric for the reproduced verdict (default: the
            survey protocol's, :data:`debench.report.aggregate.DEFAULT_TOLERANCES`).
        runs_dir: run folders holding model artifacts (default: ``runs/`` beside ``runs_csv``,
            where ``debench merge-runs --copy-artifacts`` puts them, when it exists).

    Returns:
        The summary table. The same ``runs_csv`` always gives byte-identical tables.
    """
    runs = read_runs_csv(Path(runs_csv))
    if runs_dir is None and (Path(runs_csv).parent / "runs").is_dir():
        runs_dir = Path(runs_csv).parent / "runs"
    out = Path(out)
    summary = aggregate_rows(runs, Path(published_csv), out, DEFAULT_TOLERANCES if tolerances is None else tolerances)
    build_report(out, out / "report", runs_dir=runs_dir)
    return summary
