"""Tables as CSV, Markdown and LaTeX (booktabs), with each table's own columns and rounding."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from debench.report.tables import NOT_RUN, TABLE_SPECS, TAIL, TableSpec, columns, side_keys
from debench.track.atomic import atomic_write_text

STATS = ["table", "experiment", "mode", "dataset", "model", "settings_hash", "config", "family", "metric", "n",
         "n_failed", "failed_statuses", "n_machines", "mean", "std", "ci95_low", "ci95_high"]
TIME_COLUMNS = ("epoch_time_s", "epoch_time_median_s", "train_time_s", "constant_depth_time_s")  # seconds
PUBLISHED = ["published", "published_tag", "published_table", "published_source", "published_read_from",
             "published_paper_url", "difference", "tolerance",
             "verdict", "verdict_reason", "seeds_needed"]
NOT_COMPARABLE = ("Rows marked not comparable come from a reduced preset (config key comparable: false) or from "
                  "common mode; they are never compared with a paper.")


def spec(name: str) -> TableSpec:
    return TABLE_SPECS.get(name, TableSpec(name, "", ()))


def _fmt(v, digits: int = 2) -> str:
    """Numbers with ``digits`` decimals (``-k``: k significant digits), missing values empty, text as is."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return f"{float(v):.{-digits}g}" if digits < 0 else f"{float(v):.{digits}f}"
    return str(v)


def _cols(summary: pd.DataFrame, name: str) -> list[tuple[str, str, int]]:
    if name in TABLE_SPECS:
        return columns(name, summary.columns)
    return columns("discrete", [])[:3] + TAIL


def display_frame(summary: pd.DataFrame, name: str = "discrete") -> pd.DataFrame:
    """The human-facing columns of table ``name``: rounded, CI as an interval, published value with its tag."""
    cols = _cols(summary, name)
    if summary.empty:
        return pd.DataFrame(columns=[label for _, label, _ in cols])
    s = summary.copy()
    if "params" in s:
        s["params"] = pd.to_numeric(s["params"], errors="coerce") / 1e6
    s["result"] = [f"{_fmt(m)} ± {_fmt(sd)}" if not math.isnan(sd) else _fmt(m) for m, sd in zip(s["mean"], s["std"])]
    s["ci95"] = [f"[{_fmt(lo)}, {_fmt(hi)}]" if not math.isnan(lo) else "" for lo, hi in zip(s["ci95_low"], s["ci95_high"])]
    tags = s["published_tag"].fillna("") if "published_tag" in s else [""] * len(s)
    s["published_cell"] = [f"{_fmt(v)} {tag and '[' + tag + ']'}".strip() if not math.isnan(v) else ""
                           for v, tag in zip(s["published"], tags)]
    if "difference" in s and "verdict" in s:  # a row never compared with a paper has no difference to show
        s["difference"] = s["difference"].where(s["verdict"].ne("not comparable"))
    n_machines = pd.to_numeric(s.get("n_machines", pd.Series(0, index=s.index)), errors="coerce").fillna(0)
    out = {}
    for c, label, digits in cols:
        vals = s[c] if c in s else [None] * len(s)
        out[label] = [_fmt(v, digits) for v in vals]
        if c in TIME_COLUMNS:  # an empty time of a row whose runs ran on several machines says why
            out[label] = [f"not averaged: {int(n)} machines" if n > 1 and not cell else cell
                          for cell, n in zip(out[label], n_machines)]
    return pd.DataFrame(out)


def to_markdown(df: pd.DataFrame) -> str:
    esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, caption: str) -> str:
    def tex(x: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                     ("±", r"$\pm$"), ("σ", r"$\sigma$"), ("²", r"$^2$"), ("−", "-")):
            x = x.replace(a, b)
        return x

    cols = "l" * max(len(df.columns), 1)
    body = [" & ".join(tex(str(v)) for v in row) + r" \\" for row in df.itertuples(index=False)]
    if not body:
        body = [rf"\multicolumn{{{len(df.columns)}}}{{l}}{{{tex(NOT_RUN)}}} \\"]
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{tex(caption)}}}",
                      r"\resizebox{\textwidth}{!}{%", f"\\begin{{tabular}}{{{cols}}}",
                      r"\toprule", " & ".join(tex(c) for c in df.columns) + r" \\", r"\midrule", *body,
                      r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""])


def csv_frame(summary: pd.DataFrame, name: str) -> pd.DataFrame:
    """The statistics columns of table ``name`` at full precision (its side metrics included)."""
    side = side_keys(name, summary.columns) if name in TABLE_SPECS else []
    keep = STATS + [c for c in side if c not in STATS] + PUBLISHED
    if summary.empty:
        return pd.DataFrame(columns=keep)
    return summary[[c for c in keep if c in summary]]


def write_table(summary: pd.DataFrame, folder: Path, name: str) -> None:
    """``<name>.csv`` (all statistics, full precision), ``<name>.md`` and ``<name>.tex``."""
    sp = spec(name)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{name}.csv", csv_frame(summary, name).to_csv(index=False, float_format="%.6g"))
    shown = display_frame(summary, name)
    notes = [sp.note] if sp.note else []
    if summary.empty:
        notes.append(f"**{NOT_RUN}**")
    elif (summary["verdict"] == "not comparable").any():
        notes.append(f"*{NOT_COMPARABLE}*")
    atomic_write_text(folder / f"{name}.md", f"## {sp.title}\n\n" + "".join(n + "\n\n" for n in notes) + to_markdown(shown))
    atomic_write_text(folder / f"{name}.tex", to_latex(shown, sp.title))
