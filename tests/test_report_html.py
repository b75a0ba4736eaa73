"""The HTML report rendered by headless Chromium: every table present, no broken image (from the DOM)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from debench.report.aggregate import aggregate
from debench.report.html import build_report
from debench.report.tables import TABLE_NAMES
from tests.conftest import skip_missing
from tests.test_report import PUBLISHED, make_runs

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(autouse=True)
def _needs_chromium():
    if CHROMIUM is None:
        skip_missing("chromium (apt-get install chromium)")


def rendered_dom(page, profile) -> str:
    """The DOM after load (and after the report's image check ran), as Chromium serializes it."""
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={profile}", "--run-all-compositor-stages-before-draw",
                          "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    runs = make_runs(tmp / "runs")
    aggregate(runs, PUBLISHED, tmp / "agg")
    return build_report(tmp / "agg", tmp / "agg" / "report", runs_dir=runs), tmp


def test_rendered_report_has_every_table_and_no_broken_image(report):
    page, tmp = report
    dom = rendered_dom(page, tmp / "profile")
    run = set(json.loads((tmp / "agg" / "tables" / "summary.json").read_text())["tables_run"])
    for name in TABLE_NAMES:  # a family with runs has its table, one without is a line of the not-run list
        assert re.search(rf'<table data-table="{name}"' if name in run else rf'<li data-family="{name}"', dom), name
    checked = re.search(r'data-images-checked="(\d+)"', dom)
    assert checked, "the report's image check did not run"
    assert int(checked.group(1)) >= 1 and int(checked.group(1)) == dom.count("<img ")
    assert 'data-images-broken="0"' in dom and not re.findall(r"<img [^>]*data-broken", dom)
    assert 'id="summary"' in dom and 'id="provenance"' in dom and 'id="not-comparable"' in dom


def test_a_broken_image_is_detected(report):
    page, tmp = report
    bad = tmp / "bad.html"
    bad.write_text(page.read_text().replace("</body>", '<img alt="x" src="data:image/png;base64,AAAA"></body>'))
    dom = rendered_dom(bad, tmp / "profile-bad")
    assert 'data-images-broken="1"' in dom and len(re.findall(r"<img [^>]*data-broken", dom)) == 1
