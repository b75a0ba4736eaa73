"""Screenshots of the HTML report at 1400 px in headless Chromium, for the README.

    .venv/bin/python scripts/screenshot_report.py            # both, into docs/screenshots/

- ``report_published.png``: the report of the committed runs (``results/published/runs.csv``,
  as ``make report-published`` builds it);
- ``report_survey_scale.png``: the survey-scale input of ``tests/report_scale.py`` (80 models
  over nine tables, synthetic records built by hand: the layout at scale, no result).

Each image is the top ``--height`` pixels of the page (contents, evidence counts, first tables),
palette-quantized to stay small.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))


def shoot(page: Path, out: Path, width: int, height: int) -> None:
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if chromium is None:
        raise SystemExit("chromium not found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        raw = Path(profile) / "shot.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--no-first-run", f"--user-data-dir={profile}/p", f"--window-size={width},{height}",
                        "--virtual-time-budget=5000", f"--screenshot={raw}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=180)
        from PIL import Image

        Image.open(raw).convert("RGB").quantize(colors=128).save(out, optimize=True)
    print(f"{out} ({out.stat().st_size // 1024} KB) from {page}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=2200)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    from debench.report.aggregate import aggregate
    from debench.report.html import build_report
    from tests.report_scale import make_smoke_scale_runs

    published = ROOT / "config" / "reference" / "published_results.csv"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "debench.cli", "regenerate", "--runs-csv",
                        str(ROOT / "results" / "published" / "runs.csv"), "--out", str(tmp / "pub")],
                       check=True, capture_output=True)
        shoot(tmp / "pub" / "report" / "report.html", a.out / "report_published.png", a.width, a.height)
        runs = make_smoke_scale_runs(tmp / "runs", epochs=1)
        aggregate(runs, published, tmp / "agg")
        page = build_report(tmp / "agg", tmp / "agg" / "report", runs_dir=runs)
        shoot(Path(page), a.out / "report_survey_scale.png", a.width, a.height)


if __name__ == "__main__":
    main()
