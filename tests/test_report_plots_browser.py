"""The report at the smoke preset's scale (74 models) in headless Chromium: every plot shown unscaled.

A plot's labels are 7 pt or larger in its PNG (:func:`debench.report.layout.layout_problems`, held
in ``tests/test_report_plots_layout.py``); here the browser confirms the report shows each PNG at no
less than :data:`MIN_SCALE` of its natural width, so no label is shown below ~10 CSS px, and that no
two figures overlap. Without Chromium the test is skipped, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import pytest

from debench.report.aggregate import aggregate
from debench.report.html import build_report
from debench.report.layout import COLUMN_PX, DPI, MIN_FONT_PT
from debench.report.plots import PLOTS, draw_all
from debench.report.runs import read_runs_csv
from tests.report_scale import make_smoke_scale_runs
from tests.test_report import PUBLISHED

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
MIN_SCALE = 0.95  # 7 pt at 110 dpi is 10.7 px; shown at 0.95 or more it stays above 10 CSS px
WINDOW = (1280, 900)  # the report's max-width; its figure column is 600 px
MEASURE = """<script>
window.addEventListener('load', function () {
  var out = [];
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i], r = im.getBoundingClientRect(), f = im.closest('figure').getBoundingClientRect();
    out.push({alt: im.alt, natural: [im.naturalWidth, im.naturalHeight], shown: [r.width, r.height],
              figure: [f.left, f.top, f.right, f.bottom]});
  }
  var pre = document.createElement('pre');
  pre.id = 'plot-sizes';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script></body>"""


def require_chromium(path: str | None) -> str:
    """``path``, or a skip without Chromium; under ``CI=true`` a missing Chromium fails the test instead."""
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed on CI (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def chromium():
    return require_chromium(CHROMIUM)


def test_a_missing_chromium_fails_on_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not installed on CI"):
        require_chromium(None)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_chromium(None)
    assert require_chromium("/usr/bin/chromium") == "/usr/bin/chromium"


def shown_sizes(browser, page, profile) -> list[dict]:
    """Each image's natural and displayed size and its figure's box, measured by Chromium after load."""
    measured = page.with_name("measured.html")
    measured.write_text(page.read_text().replace("</body>", MEASURE))
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                          f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                          "--virtual-time-budget=5000", "--dump-dom", measured.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(r'<pre id="plot-sizes">(.*?)</pre>', out.stdout, re.S)
    assert found, "the measuring script did not run"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.slow
def test_every_plot_is_shown_at_its_natural_width_at_smoke_scale(chromium, tmp_path):
    runs = make_smoke_scale_runs(tmp_path / "runs")
    aggregate(runs, PUBLISHED, tmp_path / "agg")
    page = build_report(tmp_path / "agg", tmp_path / "agg" / "report", runs_dir=runs)
    sizes = shown_sizes(chromium, page, tmp_path / "profile")
    plots = {s["alt"]: s for s in sizes if s["alt"] in PLOTS}
    # a plot with no data at this scale (no sample artifacts, no fractional runs, no comparable run at a
    # paper's iteration budget) is left out, not a placeholder
    empty: set[str] = set()
    draw_all(read_runs_csv(tmp_path / "agg" / "runs.csv"), runs, tmp_path / "probe", empty)
    assert empty <= {"flow_samples", "generative_samples", "latent_sde_paths", "fractional_cost", "error_vs_iteration"}
    assert sorted(plots) == sorted(set(PLOTS) - empty) and len(sizes) == len(PLOTS) - len(empty)
    for name, s in plots.items():
        (nw, nh), (sw, sh) = s["natural"], s["shown"]
        assert nw <= COLUMN_PX, f"{name}: {nw} px wide PNG in a {COLUMN_PX} px column"
        assert sw >= MIN_SCALE * nw, f"{name}: shown at {sw / nw:.2f} of its width"
        assert sh == pytest.approx(sw * nh / nw, abs=1.5), f"{name}: aspect ratio changed"
        assert MIN_FONT_PT * DPI / 72 * sw / nw >= 10, name
    boxes = [s["figure"] for s in sizes]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1 and b[1] < a[3] - 1), (a, b)
