"""One self-contained HTML report: summary, provenance, then each survey section's table and plots.

Images are embedded as data URIs, so the file opens offline; a small inline script marks an
image that failed to decode with ``data-broken`` (the headless-browser test reads it).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

from debench.report.aggregate import EVIDENCE
from debench.report.measurements import DIFFERENT
from debench.report.expected import devices
from debench.report.published import SOURCE_TAGS
from debench.report.plots import PLOTS, draw_all
from debench.report.render import NOT_COMPARABLE, display_frame, spec
from debench.report.runs import machine, read_runs_csv
from debench.report.tables import HEAD, NOT_RUN, TABLE_NAMES, TAIL
from debench.track.atomic import atomic_write_text

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1340px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px}
td{max-width:16em;overflow-wrap:break-word}td.why{min-width:12em;max-width:24em}
div.scroll table{margin:0}div.scroll td:first-child,div.scroll th:first-child{position:sticky;left:0;z-index:1;
background:#fff;box-shadow:1px 0 0 #ccc}div.scroll th:first-child{background:#f3f3f3}
th{background:#f3f3f3}td.reproduced,td.matches{background:#dfd}td.not-reproduced,td.differs{background:#fdd}
td.inconclusive{background:#fff1c2}td.lower-than-baseline{background:#dfd}td.higher-than-baseline{background:#fdd}td.different-quantity,td.no-published-number{background:#eef0f4;color:#555}
td.not-comparable{color:#777}nav#toc{background:#f7f7f7;border:1px solid #ddd;padding:6px 12px;display:inline-block}
nav#toc ol{margin:4px 0;padding-left:1.4em}#summary th{text-align:left}
div.scroll{overflow-x:auto;max-width:100%;margin:1em 0}ol.notes{font-size:13px;color:#444;max-width:900px}
a.src{font-size:11px;color:#666}figure{display:inline-block;margin:8px;max-width:600px;vertical-align:top}
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


def cell_text(value) -> str:
    """A table cell's text, escaped, with a line-break opportunity after each underscore: a model or
    metric name (``stochastic_depth_resnet110``) wraps between its parts, never inside a word, and a
    wide table stays inside the page (``td{overflow-wrap:break-word}`` keeps every word whole)."""
    return html.escape(str(value)).replace("_", "_<wbr>")


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _figure(path: Path, caption: str) -> str:
    return f"<figure>{_img(path)}<figcaption>{html.escape(caption)}</figcaption></figure>"


KEEP_COLUMNS = {"model", "dataset", "mode", "metric", "mean ± std", "n", "95% CI", "published", "tolerance", "verdict"}


def _table_html(summary: pd.DataFrame, name: str) -> str:
    shown = display_frame(summary, name)
    if not shown.empty:  # a column empty in every row says nothing (no NFE for an MLP)
        shown = shown[[c for c in shown.columns if c in KEEP_COLUMNS or shown[c].astype(str).str.strip().ne("").any()]]
    shown = shown[html_order(list(shown.columns))]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    if shown.empty:
        body = f'<tr><td class="not-run" colspan="{len(shown.columns)}">{html.escape(NOT_RUN)}</td></tr>'
        return f'<table data-table="{name}" data-rows="0"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    rows = []
    for i, row in enumerate(shown.itertuples(index=False)):
        cells = []
        for col, v in zip(shown.columns, row):
            if col == "published" and v:
                r = summary.iloc[i]
                link = _published_link(v, r.get("published_paper_url"), r.get("published_source"),
                                       r.get("published_read_from"))
                cells.append(f"<td>{link}</td>")
            elif col == "verdict":
                cells.append(f'<td class="{html.escape(v.replace(" ", "-"))}">{html.escape(v)}</td>')
            else:
                cells.append(f'<td{" class=why" if col == "why" else ""}>{cell_text(v)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table data-table="{name}" data-rows="{len(rows)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def html_order(labels: list[str]) -> list[str]:
    """The HTML table's column order: what the row is, its result against the paper (published, diff,
    tolerance, verdict) next, then the table's own side metrics, "why" last.

    The Markdown and LaTeX tables keep :func:`debench.report.tables.columns`' order; on screen the
    verdict must not sit beyond the right edge of a wide table (stochastic: constant-depth twin,
    time saved, time note; generative: FID, IS, sampler NFE).
    """
    tail = [label for _, label, _ in TAIL if label in labels and label != "why"]
    head = [label for _, label, _ in HEAD if label in labels]
    side = [c for c in labels if c not in head and c not in tail and c != "why"]
    return head + tail + side + (["why"] if "why" in labels else [])


BASELINE_NOTE = ("Each model against the baseline its record names (model_meta.baseline), trained under the same "
                 "protocol, data and precision: the difference of the means (model − baseline, in the metric's "
                 "units; lower is better) with its Welch 95% CI. A verdict needs the whole CI on one side of 0 "
                 "and 2 or more seeds of each; a baseline trained otherwise is not compared.")


def baseline_table(baselines: pd.DataFrame, table: str) -> str:
    """``<table id="baselines-<table>">`` of :func:`debench.report.baselines.baseline_comparisons`' rows of
    ``table``, or "" when it has none."""
    rows = baselines[baselines["table"] == table] if not baselines.empty and "table" in baselines else baselines.iloc[:0]
    if rows.empty:
        return ""
    head = ["model", "dataset", "n", "mean", "baseline", "baseline n", "baseline mean", "difference", "95% CI",
            "verdict", "why"]

    def num(v, digits=2):
        v = pd.to_numeric(v, errors="coerce")
        return "" if pd.isna(v) else f"{float(v):.{digits}f}"

    body = []
    for _, r in rows.iterrows():
        ci = f"[{num(r['ci95_low'])}, {num(r['ci95_high'])}]" if num(r["ci95_low"]) else ""
        n_b = num(r["baseline_n"], 0)
        cells = [cell_text(r["model"]), cell_text(r["dataset"]), num(r["n"], 0), num(r["mean"]), cell_text(r["baseline"]),
                 n_b, num(r["baseline_mean"]), num(r["difference"]), ci]
        verdict = str(r["verdict"])
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells)
                    + f'<td class="{html.escape(verdict.replace(" ", "-"))}">{html.escape(verdict)}</td>'
                    + f'<td class="why">{html.escape(str(r["reason"]))}</td></tr>')
    return (f'<h3>Against the baseline</h3><p class="note">{html.escape(BASELINE_NOTE)}</p>'
            f'<div class="scroll"><table id="baselines-{html.escape(table)}"><thead><tr>'
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f'</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table></div>")


BUDGET_NOTE = ("Each run at a paper's iteration budget (protocol.iterations) on its own: the iterations it ran, its "
               "final test error, its training time (every epoch's wall time, summed over all the processes that ran "
               "it, evaluation excluded), its median seconds per epoch and the machine it ran on. The sum counts "
               "every slowdown of the machine (other work beside the run, a paused process); the median epoch times "
               "the epochs it ran (at the median) is what the run takes on that machine alone.")


def _at_median_h(r: pd.Series) -> str:
    """Hours a run takes at its median epoch: the median seconds per epoch times the epochs its steps
    make (the last one partial: 64,000 steps of 391 per epoch are 163.7 epochs); '' when unknown."""
    median, steps, epochs = (pd.to_numeric(r.get(k), errors="coerce")
                             for k in ("epoch_time_median_s", "steps", "epochs_completed"))
    if pd.isna(median) or pd.isna(steps) or pd.isna(epochs) or epochs <= 0:
        return ""
    per_epoch = math.ceil(steps / epochs)
    return f"{median * steps / per_epoch / 3600:.2f}"


def budget_table(runs: pd.DataFrame, table: str) -> str:
    """``<table id="budget-<table>">``: one row per finished run of ``table`` at a paper's iteration
    budget (time per seed and its machine), or "" when there is none."""
    from debench.report.figures import budget_runs

    ok = runs[runs["status"].eq("ok") & runs["table"].eq(table)] if {"status", "table"} <= set(runs) else runs.iloc[:0]
    rows = budget_runs(ok)
    if rows.empty:
        return ""
    rows = rows.sort_values(["model", "dataset", "seed"])
    head = ["model", "dataset", "seed", "iterations", "test error (%)", "training time (h)", "at the median (h)",
            "s / epoch (median)", "machine", "resumed", "commit"]

    def num(r, key, fmt):
        v = pd.to_numeric(r.get(key), errors="coerce")
        return "" if pd.isna(v) else fmt(v)

    body = []
    for _, r in rows.iterrows():
        resumed = pd.to_numeric(r.get("resumed_from_epoch"), errors="coerce")
        cells = [r["model"], r["dataset"], str(int(r["seed"])), num(r, "steps", lambda v: f"{int(v):,}"),
                 num(r, "test_error", lambda v: f"{v:.2f}"), num(r, "train_time_s", lambda v: f"{v / 3600:.2f}"),
                 _at_median_h(r), num(r, "epoch_time_median_s", lambda v: f"{v:.1f}"), machine(r),
                 f"from epoch {int(resumed)}" if not pd.isna(resumed) and resumed > 0 else "no",
                 str(r.get("provenance.git_commit") or "")[:10]]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return (f'<h3>Time per run at the paper\'s budget</h3><p class="note">{html.escape(BUDGET_NOTE)}</p>'
            f'<div class="scroll"><table id="budget-{html.escape(table)}"><thead><tr>'
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f'</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table></div>")


def _published_link(text: str, paper_url, source_url, read_from) -> str:
    """A published number linked to the paper (its arXiv page), the document it was read from named
    in the tooltip and linked after it when that is another document (a copy, a listing, a replication)."""
    paper, source = str(paper_url or ""), str(source_url or "")
    tip = html.escape(f"read from: {read_from}" if read_from and str(read_from) != "nan" else "")
    main = f'<a href="{html.escape(paper or source)}" title="{tip}">{html.escape(text)}</a>' if paper or source \
        else html.escape(text)
    if paper and source and source != paper:
        main += f' <a class="src" href="{html.escape(source)}" title="{tip}">(read from)</a>'
    return main


def _read_table(csv: Path) -> pd.DataFrame:
    if not csv.exists():
        return pd.DataFrame()
    text = ("model", "dataset", "settings_hash", "published_tag", "published_source", "adjoint", "constant_depth_model",
            "fid_not_computed", "config", "tolerance", "params_verdict", "time_note", "verdict_reason",
            "published_read_from", "published_paper_url", "reason", "ratio_to", "against", "read_from", "source_url",
            "paper_url", "published_row", "kind", "quantity", "verdict", "experiment", "baseline",
            "baseline_experiment", "metric", "mode", "table")
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

    The page leads with what exists: the banner and summary (three kinds of evidence counted
    apart, the numbers of ``summary.json``), a table of contents, the trained results, the
    measurements, the architecture checks; then the families not yet run as one short list, the
    source tags explained, the provenance and the plots across the survey.

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
    no_data: set[str] = set()
    plots = draw_all(runs, runs_dir, out / "plots", no_data)
    run_tables = [t for t in info["tables"] if t in set(info.get("tables_run", []))]
    not_run = [t for t in list(info["tables"]) + [t for t in TABLE_NAMES if t not in info["tables"]]
               if t not in set(run_tables)]
    measured = _read_table(tables_dir / "tables" / "measurements.csv")
    baselines = _read_table(tables_dir / "tables" / "baselines.csv")
    architecture = _read_table(tables_dir / "tables" / "architecture.csv")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>debench report</title><style>{CSS}</style>"
             f"{CHECK_IMAGES}</head><body>",
             "<h1>debench: DE-inspired networks, regenerated</h1>",
             '<p class="note">Liu et al., <i>Deep Neural Networks Inspired by Differential Equations</i> '
             "(arXiv 2510.09685): each comparison rebuilt from runs, beside the published numbers.</p>"]
    if info.get("comparable") is False:
        parts.append(f'<p class="banner" id="not-comparable"><b>Not comparable.</b> These results come from the '
                     f'reduced preset(s) {html.escape(", ".join(info.get("presets", [])))} (comparable: false): '
                     "every row is marked not comparable and no number here may be read against a paper.</p>")
    parts.append(banner(info))
    toc = [("summary-section", "Summary")]
    toc += [(f"sec-{t}", f"Trained results: {spec(t).title}") for t in run_tables]
    toc += [("sec-measurements", "Measurements")] if not measured.empty else []
    toc += [("sec-architecture", "Architecture checks")] if not architecture.empty else []
    toc += [("sec-not-run", "Not yet run"), ("sec-sources", "Source tags"), ("provenance-section", "Provenance"),
            ("sec-overview", "Across the survey")]
    parts.append('<nav id="toc"><b>Contents</b><ol>' + "".join(
        f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t in toc) + "</ol></nav>")
    parts.append(_summary(info, not_run))
    if info.get("stale"):
        parts.append('<h2>Stale runs (left out)</h2><ul id="stale">' + "".join(
            f"<li>{html.escape(s if isinstance(s, str) else json.dumps(s, sort_keys=True))}</li>"
            for s in info["stale"]) + "</ul>")
    if info.get("unreadable"):
        parts.append('<h2>Unreadable runs</h2><ul id="unreadable">' + "".join(
            f"<li>{html.escape(p)}</li>" for p in info["unreadable"]) + "</ul>")
    tags: set[str] = set()
    for name in run_tables:
        sp = spec(name)
        summary = _read_table(tables_dir / "tables" / f"{name}.csv")
        tags |= set(summary.get("published_tag", pd.Series(dtype=str)).fillna("")) if not summary.empty else set()
        part = [f'<section id="sec-{name}"><h2>Trained results: {html.escape(sp.title)}</h2>',
                f'<p class="note">{html.escape(sp.note)} {html.escape(EQUIVALENCE_NOTE)}</p>']
        if not summary.empty and (summary["verdict"] == "not comparable").any():
            part.append(f'<p class="note"><i>{html.escape(NOT_COMPARABLE)}</i></p>')
        part.append(_table_html(summary, name))
        artifacts = _artifacts(runs, runs_dir, name)
        for plot, ps in PLOTS.items():
            if ps.section == name and plot not in no_data and not (plot in ARTIFACT_PLOTS and artifacts):
                part.append(_figure(plots[plot], ps.caption))
        part.append(baseline_table(baselines, name))
        part.append(budget_table(runs, name))
        if artifacts:
            part.append("<h3>Model artifacts</h3>" + "".join(artifacts))
        parts.append("".join(part) + "</section>")
    for table in (measured, architecture):
        tags |= set(table.get("published_tag", pd.Series(dtype=str)).fillna("")) if not table.empty else set()
    parts.append(_measurements(measured, "sec-measurements", "Measurements", MEASUREMENT_NOTE, MEASUREMENT_COLUMNS))
    parts.append(_measurements(architecture, "sec-architecture", "Architecture checks", ARCHITECTURE_NOTE,
                               ARCHITECTURE_COLUMNS))
    parts.append('<section id="sec-not-run"><h2>Not yet run</h2><p class="note">No run of these families in '
                 'these results, so nothing of theirs is compared:</p><ul id="not-run">' + "".join(
                     f'<li data-family="{html.escape(t)}">{html.escape(spec(t).title)}'
                     f'{" (" + html.escape(spec(t).models) + ")" if spec(t).models else ""}</li>' for t in not_run)
                 + "</ul></section>")
    parts.append(_sources(tags - {""}))
    parts.append(_provenance(runs))
    overview = [_figure(plots[p], ps.caption) for p, ps in PLOTS.items() if ps.section == "overview" and p not in no_data]
    parts.append('<section id="sec-overview"><h2>Across the survey</h2>' + ("".join(overview) or
                 '<p class="note">No plot across the survey has data yet.</p>') + "</section>")
    parts.append("</body></html>")
    path = out / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path


EQUIVALENCE_NOTE = ("Verdict: reproduced only when the whole 95% CI of the mean lies inside published ± tolerance, "
                    "not reproduced when it lies wholly outside, otherwise inconclusive (the why column says what "
                    "would settle it).")
MEASUREMENT_NOTE = ("Measured without training (kind: measure), one deterministic measurement each, compared as "
                    "|measured − published| within the quantity's tolerance. A published number that measures "
                    "something else is shown beside ours as a different quantity, with no verdict; ratios a pair of "
                    "rows implies are shown beside the row, never as verdicts of their own.")
ARCHITECTURE_NOTE = ("Parameter counts against the count printed with the published result: a match checks that "
                     "the architecture is the paper's, it is not a reproduced result. Tolerance 2%: published counts "
                     "are printed to two significant digits.")


def _summary(info: dict, not_run: list[str]) -> str:
    """The summary: one row per kind of evidence with its verdict counts, then the runs."""
    rows = []
    for kind, (title, verdicts) in EVIDENCE.items():
        e = info["evidence"][kind]
        cells = ", ".join(f'<span data-verdict="{html.escape(v)}">{html.escape(v)} <b>{e["verdicts"].get(v, 0)}</b>'
                          "</span>" for v in verdicts if e["verdicts"].get(v, 0))
        rows.append(f'<tr data-kind="{kind}"><th>{html.escape(title)}</th><td>{e["rows"]}</td>'
                    f"<td>{cells or 'none'}</td></tr>")
    return ('<section id="summary-section"><h2>Summary</h2><table id="summary"><thead><tr><th>evidence</th>'
            "<th>rows</th><th>verdicts</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            f"<ul><li>runs: {info['runs']} ({info['runs_ok']} ok, {info['runs_failed']} failed: diverged or solver "
            "failed, counted and never averaged in)</li>"
            f"<li>expected runs without results yet: {len(info['incomplete'])}</li>"
            f"<li>stale runs the config no longer asks for (left out): {len(info.get('stale', []))}</li>"
            f"<li>families not yet run: {len(not_run)} (<a href='#sec-not-run'>list</a>)</li></ul></section>")


def _sources(tags: set[str]) -> str:
    """What each provenance tag shown in the tables means."""
    items = "".join(f"<li><b>[{html.escape(t)}]</b>: {html.escape(SOURCE_TAGS.get(t, 'see config/reference/README.md'))}"
                    "</li>" for t in sorted(tags))
    return ('<section id="sec-sources"><h2>Source tags</h2><p class="note">Each published number carries the tag of '
            "the document it was read from (config/reference/published_results.csv, column read_from). A "
            "published number links to the paper; \"(read from)\" beside it opens the document the number was "
            "read from, which its tooltip names.</p>"
            f'<ul id="source-tags">{items or "<li>no published number shown</li>"}</ul></section>')


PROVENANCE = {"preset": "presets", "comparable": "comparable", "provenance.git_commit": "git commits",
              "provenance.torch_version": "torch", "provenance.torchdiffeq_version": "torchdiffeq",
              "provenance.torchsde_version": "torchsde", "provenance.torchvision_version": "torchvision",
              "provenance.numpy_version": "numpy", "provenance.python": "python", "provenance.cuda_version": "CUDA",
              "provenance.torch_threads": "torch threads per job", "provenance.hostname": "hosts",
              "data.source": "data sources", "provenance.date_utc": "dates (UTC)"}


def banner(info: dict) -> str:
    """The verdict banner: each kind of evidence with its counts (the summary's numbers), the devices.

    Args:
        info: the aggregate's ``summary.json``.

    Returns:
        One HTML paragraph (``id="verdict-banner"``).
    """
    parts = []
    for kind, (title, verdicts) in EVIDENCE.items():
        e = info["evidence"][kind]
        counts = ", ".join(f"{e['verdicts'][v]} {v}" for v in verdicts if e["verdicts"].get(v, 0))
        parts.append(f'<span data-kind="{kind}"><b>{html.escape(title)}: {e["rows"]}</b>'
                     f'{" (" + html.escape(counts) + ")" if counts else ""}</span>')
    devices = info.get("devices") or {}
    where = ", ".join(f"{d} ({n} run{'s' if n != 1 else ''})" for d, n in devices.items()) or "no device recorded"
    not_run = [t for t in info["tables"] if t not in set(info.get("tables_run", []))]
    waiting = info.get("not_yet_run_rows", 0)
    return (f'<p class="banner" id="verdict-banner">{". ".join(parts)}. Run on {html.escape(where)}. '
            + (f"<b>{waiting}</b> expected row(s) not yet run. " if waiting else "")
            + f'Families not yet run: {html.escape(", ".join(not_run) or "none")}.</p>')


MEASUREMENT_COLUMNS = [("model", "model"), ("dataset", "dataset"), ("quantity", "quantity"), ("against", "against"),
                       ("n", "n"), ("batch_size", "batch"), ("measured", "measured"), ("published", "published"),
                       ("ratio_to", "ratio to"), ("measured_ratio", "measured ratio"),
                       ("published_ratio", "published ratio"), ("tolerance", "tolerance"), ("verdict", "verdict"),
                       ("reason", "why")]
ARCHITECTURE_COLUMNS = [("model", "model"), ("dataset", "dataset"), ("measured", "params (M)"),
                        ("published", "published (M)"), ("relative_difference", "relative diff"),
                        ("tolerance", "tolerance"), ("verdict", "verdict"), ("published_row", "published row"),
                        ("read_from", "read from")]


def _measurements(table: pd.DataFrame, anchor: str, title: str, note: str, columns: list[tuple[str, str]]) -> str:
    """A measurement or architecture table, rows as sorted by the aggregate, verdicts coloured."""
    if table.empty:
        return ""
    shown = table.copy()
    if "tolerance" in shown:  # a tolerance is shown only where it was applied
        shown.loc[shown["verdict"].isin([DIFFERENT, "no published number"]), "tolerance"] = ""
    cols = [(c, label) for c, label in columns if c in table and (c in ("model", "dataset", "measured", "verdict")
                                                                  or shown[c].replace("", None).notna().any())]

    notes: list[str] = []

    def cell(r, c) -> str:
        v = r[c]
        if c == "reason" and r["verdict"] == DIFFERENT and v:
            if v not in notes:
                notes.append(v)
            i = notes.index(v) + 1
            return f'<td><a href="#{anchor}-note{i}">note {i}</a></td>'
        if isinstance(v, float):
            text = "" if v != v else f"{v:.4g}"
        else:
            text = cell_text(v)
        if c == "published" and text:
            tag = str(r.get("published_tag") or "")
            text = _published_link(text + (f" [{tag}]" if tag else ""), r.get("paper_url"), r.get("source_url"),
                                   f"{r.get('published_row')}: {r.get('read_from')}")
            return f"<td>{text}</td>"
        if c == "verdict":
            return f'<td class="{html.escape(text.replace(" ", "-"))}">{text}</td>'
        return f"<td>{text}</td>"

    rows = "".join(f'<tr data-verdict="{html.escape(str(r["verdict"]))}">' + "".join(cell(r, c) for c, _ in cols)
                   + "</tr>" for _, r in shown.iterrows())
    foot = "".join(f'<li id="{anchor}-note{i}">{html.escape(n)}</li>' for i, n in enumerate(notes, 1))
    return (f'<section id="{anchor}"><h2>{html.escape(title)}</h2><p class="note">{html.escape(note)}</p>'
            f'<div class="scroll"><table data-table="{anchor.removeprefix("sec-")}" data-rows="{len(table)}"><thead><tr>'
            + "".join(f"<th>{html.escape(label)}</th>" for _, label in cols) + f"</tr></thead><tbody>{rows}</tbody>"
            "</table></div>" + (f'<p class="note">Different quantity:</p><ol class="notes">{foot}</ol>' if foot else "")
            + "</section>")


def _provenance(runs: pd.DataFrame) -> str:
    """Where and with what the runs ran: devices as :func:`debench.report.expected.devices` names them
    ("CPU" for CPU runs), the CUDA version only of runs that used a GPU."""
    head = '<section id="provenance-section"><h2>Provenance</h2><ul id="provenance">'
    if runs.empty:
        return head + "<li>No runs.</li></ul></section>"
    devs = devices(runs)
    items = [f"<li>devices: {html.escape(', '.join(f'{d} ({n} runs)' for d, n in devs.items()))}</li>"] if devs else []
    gpu = runs["runtime.device_type"].astype(str).str.lower().eq("cuda") if "runtime.device_type" in runs \
        else pd.Series(True, index=runs.index)
    for col, label in PROVENANCE.items():
        if col not in runs:
            continue
        vals = sorted({str(v) for v in runs.loc[gpu if col == "provenance.cuda_version" else runs.index, col].dropna()})
        if not vals:
            continue
        if col == "provenance.date_utc":
            vals = [f"{vals[0]} … {vals[-1]}"]
        dirty = ""
        if col == "provenance.git_commit" and "provenance.git_dirty" in runs and \
                runs["provenance.git_dirty"].astype(str).eq("True").any():
            dirty = " (some runs from a dirty tree)"
        items.append(f"<li>{label}: {html.escape(', '.join(vals))}{dirty}</li>")
    return head + "".join(items) + "</ul></section>"
