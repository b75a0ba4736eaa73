"""One self-contained HTML report: summary, provenance, then each survey section's table and plots.

Images are embedded as data URIs, so the file opens offline; a small inline script marks an
image that failed to decode with ``data-broken`` (the headless-browser test reads it).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from debench.report.aggregate import VERDICTS
from debench.report.plots import PLOTS, draw_all
from debench.report.render import NOT_COMPARABLE, display_frame, spec
from debench.report.runs import read_runs_csv
from debench.report.tables import NOT_RUN, TABLE_NAMES
from debench.track.atomic import atomic_write_text

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1280px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}td.reproduced{background:#dfd}td.not-reproduced{background:#fdd}
td.not-comparable{color:#777}figure{display:inline-block;margin:8px;max-width:600px;vertical-align:top}
img{max-width:100%}figcaption{font-size:12px;color:#555}.note{color:#666;font-size:13px}
.banner{background:#fff4d6;border:1px solid #e0b84c;padding:8px 12px}section{margin-top:2em}"""
CHECK_IMAGES = """<script>
function debenchCheckImages(){var imgs=document.images,bad=0;for(var i=0;i<imgs.length;i++){
var ok=imgs[i].complete&&imgs[i].naturalWidth>0;if(!ok){imgs[i].setAttribute('data-broken','1');bad++;}}
document.body.setAttribute('data-images-checked',String(imgs.length));
document.body.setAttribute('data-images-broken',String(bad));}
window.addEventListener('load',debenchCheckImages);
</script>"""
ARTIFACT_PLOTS = {"flow_samples", "latent_sde_paths", "generative_samples"}


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _figure(path: Path, caption: str) -> str:
    return f"<figure>{_img(path)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _table_html(summary: pd.DataFrame, name: str) -> str:
    shown = display_frame(summary, name)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    if shown.empty:
        body = f'<tr><td class="not-run" colspan="{len(shown.columns)}">{html.escape(NOT_RUN)}</td></tr>'
        return f'<table data-table="{name}" data-rows="0"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    rows = []
    for i, row in enumerate(shown.itertuples(index=False)):
        cells = []
        for col, v in zip(shown.columns, row):
            if col == "published" and v:
                src = str(summary.iloc[i].get("published_source") or "")
                cells.append(f'<td><a href="{html.escape(src)}">{html.escape(v)}</a></td>' if src
                             else f"<td>{html.escape(v)}</td>")
            elif col == "verdict":
                cells.append(f'<td class="{html.escape(v.replace(" ", "-"))}">{html.escape(v)}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table data-table="{name}" data-rows="{len(rows)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _read_table(csv: Path) -> pd.DataFrame:
    if not csv.exists():
        return pd.DataFrame()
    text = ("model", "dataset", "settings_hash", "published_tag", "published_source", "adjoint", "constant_depth_model",
            "fid_not_computed", "config", "tolerance", "params_verdict", "time_note")
    summary = pd.read_csv(csv, dtype={c: str for c in text})
    for col in text[2:]:
        if col in summary:
            summary[col] = summary[col].fillna("")
    return summary


def _artifacts(runs: pd.DataFrame, runs_dir: Path | None, table: str) -> list[str]:
    from debench.report.figures import artifact_images

    ok = runs[runs["status"] == "ok"] if not runs.empty else runs
    return [_figure(p, title) for title, p in artifact_images(ok, runs_dir, table)]


def build_report(tables_dir: Path, out: Path, runs_dir: Path | None = None) -> Path:
    """Write ``out/report.html`` (images embedded) and ``out/plots/*.png``.

    Args:
        tables_dir: the aggregate output folder holding ``runs.csv`` and ``tables/``.
        out: report folder.
        runs_dir: run folders (model artifacts, epoch logs of old rows); ``None`` rebuilds from
            ``runs.csv`` alone.

    Returns:
        The path of ``report.html``.
    """
    info = json.loads((tables_dir / "tables" / "summary.json").read_text())
    runs = read_runs_csv(tables_dir / "runs.csv")
    runs_dir = runs_dir if runs_dir is not None and Path(runs_dir).is_dir() else None
    plots = draw_all(runs, runs_dir, out / "plots")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>debench report</title><style>{CSS}</style>"
             f"{CHECK_IMAGES}</head><body>",
             "<h1>debench: DE-inspired networks, regenerated</h1>",
             '<p class="note">Liu et al., <i>Deep Neural Networks Inspired by Differential Equations</i> '
             "(arXiv 2510.09685): each comparison rebuilt from runs, beside the published numbers.</p>"]
    if info.get("comparable") is False:
        parts.append(f'<p class="banner" id="not-comparable"><b>Not comparable.</b> These results come from the '
                     f'reduced preset(s) {html.escape(", ".join(info.get("presets", [])))} (comparable: false): '
                     "every row is marked not comparable and no number here may be read against a paper.</p>")
    counts = info["verdicts"]
    run_tables = set(info.get("tables_run", []))
    parts.append(banner(info))
    parts.append('<h2>Summary</h2><ul id="summary">' + "".join(
        f'<li data-verdict="{html.escape(v)}">{html.escape(v)}: <b>{counts.get(v, 0)}</b></li>' for v in VERDICTS) +
        f"<li>runs: {info['runs']} ({info['runs_ok']} ok, {info['runs_failed']} failed: diverged or solver "
        "failed, counted and never averaged in)</li>"
        f"<li>expected runs without results yet: {len(info['incomplete'])}</li>"
        f"<li>stale runs the config no longer asks for (left out): {len(info.get('stale', []))}</li>"
        f"<li>tables not yet run: {html.escape(', '.join(t for t in info['tables'] if t not in run_tables) or 'none')}</li>"
        "</ul>")
    if info.get("stale"):
        parts.append('<h2>Stale runs (left out)</h2><ul id="stale">' + "".join(
            f"<li>{html.escape(s if isinstance(s, str) else json.dumps(s, sort_keys=True))}</li>"
            for s in info["stale"]) + "</ul>")
    if info.get("unreadable"):
        parts.append('<h2>Unreadable runs</h2><ul id="unreadable">' + "".join(
            f"<li>{html.escape(p)}</li>" for p in info["unreadable"]) + "</ul>")
    parts.append(_provenance(runs))
    sections = list(info["tables"]) + [t for t in TABLE_NAMES if t not in info["tables"]]
    for name in sections:
        sp = spec(name)
        summary = _read_table(tables_dir / "tables" / f"{name}.csv")
        part = [f'<section id="sec-{name}"><h2>{html.escape(sp.title)}</h2>', f'<p class="note">{html.escape(sp.note)}</p>']
        if not summary.empty and (summary["verdict"] == "not comparable").any():
            part.append(f'<p class="note"><i>{html.escape(NOT_COMPARABLE)}</i></p>')
        part.append(_table_html(summary, name))
        artifacts = _artifacts(runs, runs_dir, name)
        for plot, ps in PLOTS.items():
            if ps.section == name and not (plot in ARTIFACT_PLOTS and artifacts):
                part.append(_figure(plots[plot], ps.caption))
        if artifacts:
            part.append("<h3>Model artifacts</h3>" + "".join(artifacts))
        parts.append("".join(part) + "</section>")
    parts.append(_measurements(tables_dir / "tables" / "measurements.csv"))
    parts.append('<section id="sec-overview"><h2>Across the survey</h2>' + "".join(
        _figure(plots[p], ps.caption) for p, ps in PLOTS.items() if ps.section == "overview") + "</section>")
    parts.append("</body></html>")
    path = out / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path


PROVENANCE = {"preset": "presets", "comparable": "comparable", "provenance.git_commit": "git commits",
              "provenance.torch_version": "torch", "provenance.torchdiffeq_version": "torchdiffeq",
              "provenance.torchsde_version": "torchsde", "provenance.torchvision_version": "torchvision",
              "provenance.numpy_version": "numpy", "provenance.python": "python", "provenance.cuda_version": "CUDA",
              "provenance.device_name": "devices", "runtime.device_type": "device types",
              "provenance.hostname": "hosts", "data.source": "data sources", "provenance.date_utc": "dates (UTC)"}


def banner(info: dict) -> str:
    """The verdict banner: rows reproduced, not reproduced and not yet run, the devices, families not run.

    Args:
        info: the aggregate's ``summary.json``.

    Returns:
        One HTML paragraph (``id="verdict-banner"``).
    """
    counts = {v: info["verdicts"].get(v, 0) + info.get("measurement_verdicts", {}).get(v, 0)
              for v in ("reproduced", "not reproduced")}
    devices = info.get("devices") or {}
    where = ", ".join(f"{d} ({n} run{'s' if n != 1 else ''})" for d, n in devices.items()) or "no device recorded"
    not_run = [t for t in info["tables"] if t not in set(info.get("tables_run", []))]
    return (f'<p class="banner" id="verdict-banner"><b>{counts.get("reproduced", 0)}</b> row(s) reproduced, '
            f'<b>{counts.get("not reproduced", 0)}</b> not reproduced, '
            f'<b>{info.get("not_yet_run_rows", 0)}</b> not yet run; measured on {html.escape(where)}. '
            f'Families not yet run: {html.escape(", ".join(not_run) or "none")}.</p>')


MEASUREMENT_COLUMNS = ["quantity", "ratio", "model", "against", "dataset", "n", "batch_size", "measured",
                       "published", "tolerance", "verdict", "published_row"]


def _measurements(csv: Path) -> str:
    """The measurement table (parameter counts, activation memory, memory and time ratios)."""
    table = _read_table(csv) if csv.is_file() else pd.DataFrame()
    if table.empty:
        return ""
    cols = [c for c in MEASUREMENT_COLUMNS if c in table]

    def cell(v) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.4g}"
        return html.escape(str(v))

    rows = "".join(f'<tr data-verdict="{html.escape(str(r["verdict"]))}">' + "".join(f"<td>{cell(r[c])}</td>" for c in cols)
                   + "</tr>" for _, r in table.iterrows())
    return ('<section id="sec-measurements"><h2>Measurements beside the published numbers</h2>'
            '<p class="note">Measured without training to convergence (kind: measure): parameter counts, '
            "fp32 activation memory of one training step at the source's batch, and ratios measured side "
            "by side in one process (ratio = yes). Each verdict uses its quantity's tolerance "
            "(report.tolerances).</p><table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) +
            f"</tr>{rows}</table></section>")


def _provenance(runs: pd.DataFrame) -> str:
    if runs.empty:
        return '<h2>Provenance</h2><ul id="provenance"><li>No runs.</li></ul>'
    items = []
    for col, label in PROVENANCE.items():
        if col not in runs:
            continue
        vals = sorted({str(v) for v in runs[col].dropna()})
        if col == "provenance.date_utc" and vals:
            vals = [f"{vals[0]} … {vals[-1]}"]
        dirty = ""
        if col == "provenance.git_commit" and "provenance.git_dirty" in runs and \
                runs["provenance.git_dirty"].astype(str).eq("True").any():
            dirty = " (some runs from a dirty tree)"
        items.append(f"<li>{label}: {html.escape(', '.join(vals))}{dirty}</li>")
    return '<h2>Provenance</h2><ul id="provenance">' + "".join(items) + "</ul>"
