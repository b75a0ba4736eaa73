"""One self-contained HTML report: summary, provenance, tables by survey section, plots."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from debench.report.aggregate import TABLE_TITLES, VERDICTS
from debench.report.plots import PLOTS, draw_all
from debench.report.render import display_frame
from debench.track.atomic import atomic_write_text

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}td.reproduced{background:#dfd}td.not-reproduced{background:#fdd}
td.not-comparable{color:#777}figure{display:inline-block;margin:8px;max-width:560px}
img{max-width:100%}figcaption{font-size:12px;color:#555}.note{color:#666;font-size:13px}"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table_html(summary: pd.DataFrame, name: str) -> str:
    shown = display_frame(summary)
    if shown.empty:
        return f'<p class="note" data-table="{name}">No runs of this comparison yet (family not run in this preset).</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    rows = []
    for i, row in enumerate(shown.itertuples(index=False)):
        cells = []
        for col, v in zip(shown.columns, row):
            cls = f' class="{v.replace(" ", "-")}"' if col == "verdict" else ""
            if col == "published" and v:
                src = summary.iloc[i]["published_source"]
                v = f'<a href="{html.escape(src)}">{html.escape(v)}</a>' if src else html.escape(v)
                cells.append(f"<td>{v}</td>")
            else:
                cells.append(f"<td{cls}>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table data-table="{name}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def build_report(tables_dir: Path, out: Path, runs_dir: Path | None = None) -> Path:
    """Write ``out/report.html`` (images embedded) and ``out/plots/*.png``.

    Args:
        tables_dir: the aggregate output folder holding ``runs.csv`` and ``tables/``.
        out: report folder.
        runs_dir: run folders (for epoch curves and model artifacts); optional.
    """
    summary_info = json.loads((tables_dir / "tables" / "summary.json").read_text())
    runs_csv = tables_dir / "runs.csv"
    runs = pd.read_csv(runs_csv) if runs_csv.stat().st_size > 1 else pd.DataFrame()
    plots = draw_all(runs, runs_dir, out / "plots")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>debench report</title><style>{CSS}</style></head><body>",
             "<h1>debench: DE-inspired networks, regenerated</h1>",
             '<p class="note">Liu et al., <i>Deep Neural Networks Inspired by Differential Equations</i> '
             "(arXiv 2510.09685): each comparison rebuilt from runs, beside the published numbers.</p>"]
    counts = summary_info["verdicts"]
    parts.append('<h2>Summary</h2><ul id="summary">' + "".join(
        f"<li>{html.escape(v)}: <b>{counts.get(v, 0)}</b></li>" for v in VERDICTS) +
        f"<li>runs: {summary_info['runs']} ({summary_info['runs_ok']} ok, {summary_info['runs_failed']} failed: "
        "diverged or solver failed, counted and never averaged in)</li>"
        f"<li>expected runs without results yet: {len(summary_info['incomplete'])}</li></ul>")
    parts.append(_provenance(runs))
    for name in summary_info["tables"]:
        csv = tables_dir / "tables" / f"{name}.csv"
        summary = pd.read_csv(csv, keep_default_na=True) if csv.stat().st_size > 1 else pd.DataFrame()
        for col in ("published_tag", "published_source"):
            if col in summary:
                summary[col] = summary[col].fillna("")
        parts.append(f"<h2>{html.escape(TABLE_TITLES.get(name, name))}</h2>" + _table_html(summary, name))
    parts.append("<h2>Plots</h2>")
    for name, path in plots.items():
        parts.append(f"<figure>{_img(path)}<figcaption>{html.escape(PLOTS[name])}</figcaption></figure>")
    if runs_dir is not None and not runs.empty and "artifacts" in runs:
        parts.append("<h2>Model artifacts</h2>")
        for _, r in runs.dropna(subset=["artifacts"]).iterrows():
            for rel in json.loads(r["artifacts"]) if str(r["artifacts"]).startswith("[") else []:
                p = runs_dir / r["run_dir"] / rel
                if p.suffix == ".png" and p.exists():
                    parts.append(f"<figure>{_img(p)}<figcaption>{html.escape(r['model'])} on "
                                 f"{html.escape(r['dataset'])}, seed {r['seed']}: {html.escape(p.stem)}</figcaption></figure>")
    parts.append("</body></html>")
    path = out / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path


def _provenance(runs: pd.DataFrame) -> str:
    if runs.empty:
        return "<h2>Provenance</h2><p>No runs.</p>"
    cols = {"preset": "presets", "provenance.git_commit": "git commits", "provenance.torch_version": "torch",
            "provenance.device_name": "devices", "provenance.date_utc": "dates (UTC)"}
    items = []
    for col, label in cols.items():
        if col in runs:
            vals = sorted({str(v) for v in runs[col].dropna()})
            if col == "provenance.date_utc" and vals:
                vals = [f"{vals[0]} … {vals[-1]}"]
            dirty = ""
            if col == "provenance.git_commit" and "provenance.git_dirty" in runs and runs["provenance.git_dirty"].astype(str).eq("True").any():
                dirty = " (some runs from a dirty tree)"
            items.append(f"<li>{label}: {html.escape(', '.join(vals))}{dirty}</li>")
    return "<h2>Provenance</h2><ul>" + "".join(items) + "</ul>"
