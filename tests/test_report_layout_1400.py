"""The report as a reader sees it at 1400 px: tables inside the page, a table of contents, plots a
reader can follow (legends of 12 entries or fewer, one-epoch runs as points, memory lines labelled
from each run's record), no difference printed for a row never compared with a paper.

The browser checks render the survey-scale input (``tests/report_scale.py``, 80 models over nine
tables) in headless Chromium; without Chromium they skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import matplotlib.pyplot as plt
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
import pandas as pd
import pytest

from debench.report.aggregate import aggregate
from debench.report.figures import depth_label
from debench.report.html import build_report, html_order
from debench.report.layout import MAX_LEGEND, layout_problems, legend_groups
from debench.report.plots import draw
from debench.report.render import display_frame
from debench.report.runs import read_runs_csv
from tests.conftest import skip_missing
from tests.report_scale import DISCRETE, make_smoke_scale_runs
from tests.test_report import PUBLISHED

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
WIDTH = 1400
MEASURE = r"""<script>
window.addEventListener('load', function () {
  var o = {height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth,
           tables: [], toc: [], ids: []};
  document.querySelectorAll('table').forEach(function (t) {
    var r = t.getBoundingClientRect(), p = t.parentElement.getBoundingClientRect(), heads = {};
    t.querySelectorAll('thead th').forEach(function (h) {
      var b = h.getBoundingClientRect(); heads[h.textContent] = [b.left, b.right]; });
    o.tables.push({name: t.getAttribute('data-table') || t.id, right: r.right, width: r.width,
                   box: [p.left, p.right], heads: heads});
  });
  o.broken = [];  // words of table cells set on two lines: broken inside the word, not at a space, hyphen or _
  document.querySelectorAll('td').forEach(function (td) {
    var walk = document.createTreeWalker(td, NodeFilter.SHOW_TEXT), n, m;
    while ((n = walk.nextNode())) {
      var re = /[^\s\-\/,;:()\[\]_]+/g;
      while ((m = re.exec(n.data))) {
        if (m[0].length > 14) continue;  // a hash or a path may have to break; a word of prose may not
        var r = document.createRange(); r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
        var tops = {};
        Array.prototype.forEach.call(r.getClientRects(), function (b) { if (b.width > 0) tops[Math.round(b.top)] = 1; });
        if (Object.keys(tops).length > 1) o.broken.push(m[0]);
      }
    }
  });
  document.querySelectorAll('nav#toc a').forEach(function (a) { o.toc.push(a.getAttribute('href')); });
  document.querySelectorAll('[id]').forEach(function (e) { o.ids.push(e.id); });
  var pre = document.createElement('pre'); pre.id = 'layout-1400'; pre.textContent = JSON.stringify(o);
  document.body.appendChild(pre);
});
</script></body>"""


def measured(page, profile) -> dict:
    """Page size, each table's box and header cells, the contents' links and the page's ids, from
    Chromium at :data:`WIDTH` px after load."""
    if CHROMIUM is None:
        skip_missing("chromium (apt-get install chromium)")
    probe = page.with_name("layout-1400.html")
    probe.write_text(page.read_text().replace("</body>", MEASURE))
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                          f"--user-data-dir={profile}", f"--window-size={WIDTH},900", "--virtual-time-budget=5000",
                          "--dump-dom", probe.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(r'<pre id="layout-1400">(.*?)</pre>', out.stdout, re.S)
    assert found, "the measuring script did not run"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """The survey-scale input (one epoch per run, as the smoke preset trains), aggregated and reported."""
    tmp = tmp_path_factory.mktemp("survey1400")
    runs = make_smoke_scale_runs(tmp / "runs", epochs=1)
    aggregate(runs, PUBLISHED, tmp / "agg")
    page = build_report(tmp / "agg", tmp / "agg" / "report", runs_dir=runs)
    ok = read_runs_csv(tmp / "agg" / "runs.csv")
    return page, ok[ok["status"] == "ok"], tmp


@pytest.mark.slow
def test_no_table_is_wider_than_the_page_and_verdicts_are_in_view(survey):
    page, _, tmp = survey
    m = measured(page, tmp / "profile")
    print(f"report at {WIDTH} px: {m['height']} px tall; widest table {max(t['width'] for t in m['tables']):.0f} px")
    assert m["width"] <= WIDTH, f"the page scrolls sideways: {m['width']} px"
    trained = [t for t in m["tables"] if "verdict" in t["heads"] and t["name"] not in ("summary",)]
    assert len(trained) >= 9  # eight trained-result tables with rows here, and the architecture checks
    for t in m["tables"]:
        assert t["right"] <= t["box"][1] + 1, f"{t['name']} is {t['width']:.0f} px, its box ends at {t['box'][1]}"
        for col in ("tolerance", "verdict"):
            if col in t["heads"]:
                assert t["heads"][col][1] <= min(t["box"][1], WIDTH) + 1, (t["name"], col, t["heads"][col])


@pytest.mark.slow
def test_no_word_in_a_table_cell_is_broken_across_lines(survey):
    """Cells wrap at spaces and hyphens: "comparable" never shows as "comparabl" over "e"."""
    page, _, tmp = survey
    m = measured(page, tmp / "profile-words")
    assert m["broken"] == [], f"{len(m['broken'])} words broken inside: {sorted(set(m['broken']))[:12]}"


@pytest.mark.slow
def test_the_contents_link_to_every_section(survey):
    page, _, tmp = survey
    m = measured(page, tmp / "profile-toc")
    assert len(m["toc"]) >= 12 and all(a.startswith("#") for a in m["toc"])
    assert {a[1:] for a in m["toc"]} <= set(m["ids"])
    text = page.read_text()
    for name in ("discrete", "neural_ode", "stochastic", "generative", "future"):
        assert f'href="#sec-{name}"' in text, name


def _legends(fig) -> list[int]:
    return [len(ax.get_legend().get_texts()) for ax in fig.axes if ax.get_legend() is not None]


@pytest.mark.parametrize("name", ["accuracy_vs_params", "accuracy_vs_evals", "accuracy_vs_epoch"])
def test_survey_panels_have_legends_of_twelve_or_fewer_and_no_shared_colour(survey, name):
    _, ok, _ = survey
    fig = draw(name, ok, None, reduced=True)
    try:
        assert layout_problems(fig) == [] and _legends(fig) and max(_legends(fig)) <= MAX_LEGEND
        for ax in fig.axes:
            handles = ax.get_legend().legend_handles
            colours = [to_hex(h.get_color() if isinstance(h, Line2D) else h.get_facecolor()[0]) for h in handles]
            assert len(set(colours)) == len(colours), (ax.get_title(), colours)
    finally:
        plt.close(fig)


def test_a_big_panel_is_grouped_by_architecture_and_pools_the_rest():
    groups = legend_groups(pd.Series(DISCRETE))
    assert groups.nunique() == MAX_LEGEND
    assert dict(zip(DISCRETE, groups))["lm_resnet110"] == "lm_resnet (5)"
    other = [g for g in groups.unique() if g.startswith("other: ")]
    assert len(other) == 1 and "parabolic_cnn" in other[0]  # a pooled model is named in its entry


def test_the_rule_flags_a_legend_of_more_than_twelve_entries():
    fig, ax = plt.subplots(figsize=(5.4, 6))
    for i in range(MAX_LEGEND + 1):
        ax.plot([1, 2], [i, i], label=f"m{i}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.set_layout_engine("constrained")
    assert any(f"a legend of {MAX_LEGEND + 1} entries" in p for p in layout_problems(fig))
    plt.close(fig)


@pytest.mark.parametrize("name", ["accuracy_vs_epoch", "nfe_over_training"])
def test_one_epoch_runs_are_points_on_an_integer_axis(survey, name):
    _, ok, _ = survey
    fig = draw(name, ok, None)
    try:
        for ax in fig.axes:
            assert ax.get_lines() and all(ln.get_linestyle() == "None" and ln.get_marker() not in (None, "None", "")
                                          for ln in ax.get_lines()), ax.get_title()
            assert list(ax.get_xticks()) == [1], (ax.get_title(), ax.get_xticks())
            lo, hi = ax.get_xlim()
            assert hi - lo >= 1, (ax.get_title(), lo, hi)   # not 0.96 ... 1.04
    finally:
        plt.close(fig)


def test_memory_against_depth_labels_come_from_each_record(survey):
    _, ok, _ = survey
    fig = draw("memory_vs_depth", ok, None)
    try:
        assert layout_problems(fig) == []
        names = [t.get_text().replace("\n", " ") for t in fig.axes[0].get_legend().get_texts()]
        assert "momentum (second-order): invertible backward" in names
        assert "momentum (second-order): plain autograd (invertible: False)" in names
        assert not any("invertible)" in n for n in names), names  # the registry's "(second-order, invertible)"
        assert max(_legends(fig)) <= MAX_LEGEND
        assert not any(ln.get_linestyle() == ":" for ax in fig.axes for ln in ax.get_lines())  # ODEs are bars now
    finally:
        plt.close(fig)
    row = {"model": "momentum_resnet20", "scheme": "momentum (second-order, invertible)"}
    assert depth_label({**row, "model_args.invertible": False}) == \
        "momentum (second-order): plain autograd (invertible: False)"
    assert depth_label({**row, "model_args.invertible": "True"}) == "momentum (second-order): invertible backward"
    assert depth_label({"model": "resnet110", "scheme": float("nan")}) == "resnet"


def test_not_comparable_rows_show_no_difference():
    summary = pd.DataFrame({"model": ["resnet20", "resnet32"], "dataset": "cifar10", "mode": "paper", "config": "",
                            "metric": "test_error", "mean": [8.0, 7.0], "std": [0.1, 0.2], "n": 3,
                            "ci95_low": [7.8, 6.6], "ci95_high": [8.2, 7.4], "published": [8.75, 7.51],
                            "published_tag": "PRIMARY", "difference": [-0.75, -0.51], "n_failed": 0,
                            "tolerance": ["", "0.5"], "verdict": ["not comparable", "inconclusive"],
                            "verdict_reason": ["reduced preset", "CI crosses the band"]})
    shown = display_frame(summary, "discrete")
    assert shown["diff"].tolist() == ["", "-0.51"]


def test_the_html_table_puts_the_verdict_before_the_side_metrics():
    labels = ["model", "dataset", "mode", "params (M)", "constant-depth twin", "time note", "metric", "mean ± std",
              "n", "95% CI", "published", "diff", "failed", "tolerance", "verdict", "why"]
    order = html_order(labels)
    assert sorted(order) == sorted(labels) and order[-1] == "why"
    assert order.index("verdict") < order.index("params (M)") and order.index("tolerance") < order.index("time note")
    assert order[:3] == ["model", "dataset", "mode"]
