"""Rebuild every table, plot and the HTML report from a stored ``runs.csv``, with no training.

Reads rows and the published-numbers CSV only (no model registry, no torch). The output is
built in a temporary folder beside ``out`` and moved in only when complete, so bad input (a
ragged row, a missing column) leaves ``out`` as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from debench.report.aggregate import DEFAULT_TOLERANCES, aggregate_rows
from debench.report.html import build_report
from debench.report.published import default_published_csv
from debench.report.runs import read_runs_csv


def regenerate(runs_csv: Path, out: Path, published_csv: Path | None = None, tolerances: dict | None = None,
               runs_dir: Path | None = None) -> pd.DataFrame:
    """``out/runs.csv``, ``out/tables/*`` and ``out/report/`` from ``runs_csv`` alone.

    Args:
        runs_csv: one row per run, as written by ``debench aggregate`` or ``debench merge-runs``.
        out: destination folder (created).
        published_csv: the vendored published numbers (default:
            :func:`debench.report.published.default_published_csv`).
        tolerances: ``report.tolerances`` for the reproduced verdict (default: the survey
            protocol's, :data:`debench.report.aggregate.DEFAULT_TOLERANCES`).
        runs_dir: run folders holding model artifacts (default: ``runs/`` beside ``runs_csv``,
            where ``debench merge-runs --copy-artifacts`` puts them, when it exists).

    Returns:
        The summary table. The same ``runs_csv`` always gives byte-identical tables.

    Raises:
        RunRecordError: ``runs_csv`` breaks the run-record schema (file, line, column named).
        ReportInputError: a bad tolerance or published CSV.
    """
    runs = read_runs_csv(Path(runs_csv))
    published_csv = Path(published_csv) if published_csv is not None else default_published_csv()
    if runs_dir is None and (Path(runs_csv).parent / "runs").is_dir():
        runs_dir = Path(runs_csv).parent / "runs"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        summary = aggregate_rows(runs, published_csv, work, DEFAULT_TOLERANCES if tolerances is None else tolerances)
        build_report(work, work / "report", runs_dir=runs_dir)
        for src in sorted(p for p in work.rglob("*") if p.is_file()):
            dst = out / src.relative_to(work)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary
