"""The report trusts no foreign file and reads only rows: no registry, no torch, no partial output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from debench.cli import main
from debench.report.aggregate import aggregate
from debench.report.published import load_published, match
from tests.conftest import ROOT
from tests.report_records import record, write_record

PUBLISHED = ROOT / "config" / "reference" / "published_results.csv"
PLUGIN_REF = [{"table_id": "HE16_T6", "model": "ResNet", "depth": "56"}]   # examples/my_models.py


@pytest.fixture
def stored(tmp_path):
    """A schema-2 runs.csv with two ResNet-56 seeds and the plugin example's model."""
    runs = tmp_path / "runs"
    for seed, err in enumerate([7.0, 7.2]):
        write_record(runs, record("resnet56", seed, value=err))
    write_record(runs, record("halfstep_resnet56", 0, value=7.4,
                              model_meta={"reference": PLUGIN_REF, "depth": 56, "module": "my_models"}))
    aggregate(runs, PUBLISHED, tmp_path / "agg")
    return tmp_path / "agg" / "runs.csv"


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow  # a fresh interpreter imports pandas, scipy and matplotlib: about 8 s on 2 cores
def test_regenerate_imports_no_torch_and_the_plugin_row_keeps_its_published_number(stored, tmp_path):
    block = ("import sys\n"
             "class Block:  # importing torch, the registry or any model raises\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        top = name.split('.')[0]\n"
             "        if top == 'torch' or name == 'debench.registry' or name.startswith('debench.models'):\n"
             "            raise ImportError('blocked: ' + name)\n"
             "sys.meta_path.insert(0, Block())\n"
             "from debench.cli import main\n"
             f"rc = main(['regenerate', '--runs-csv', {str(stored)!r}, '--out', {str(tmp_path / 'out')!r},"
             f" '--published', {str(PUBLISHED)!r}])\n"
             "assert 'torch' not in sys.modules and 'debench.registry' not in sys.modules\n"
             "sys.exit(rc)\n")
    run = subprocess.run([sys.executable, "-c", block], check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    table = pd.read_csv(tmp_path / "out" / "tables" / "discrete.csv").set_index("model")
    resnet56 = match(load_published(PUBLISHED), PLUGIN_REF, "cifar10", "test_error")["value"]
    assert table.loc["halfstep_resnet56", "published"] == pytest.approx(resnet56) == pytest.approx(6.97)
    assert table.loc["resnet56", "published"] == table.loc["halfstep_resnet56", "published"]
    assert table.loc["halfstep_resnet56", "published_tag"] == "PRIMARY"


def _rewrite(src, dst, edit):
    lines = src.read_text().splitlines()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(edit(lines)) + "\n")
    return dst


@pytest.mark.parametrize("case, pattern", [
    ("ragged", r"line 3: \d+ fields, the header has \d+"),
    ("no_hash", r"line 2: field 'config_hash' is empty"),
    ("no_model", r"line 2: field 'model' is empty"),
])
def test_merge_runs_refuses_ragged_and_incomplete_rows_and_keeps_the_target(stored, tmp_path, capsys, case, pattern):
    def blank(col):
        def edit(lines):
            rows = pd.read_csv(stored, dtype=str, keep_default_na=False)
            rows.loc[0, col] = ""
            return rows.to_csv(index=False).splitlines()
        return edit

    edits = {"ragged": lambda lines: lines[:2] + [lines[2] + ",x,y"] + lines[3:],
             "no_hash": blank("config_hash"), "no_model": blank("model")}
    bad = _rewrite(stored, tmp_path / "foreign" / "runs.csv", edits[case])
    into = tmp_path / "published" / "runs.csv"
    assert main(["merge-runs", str(stored), "--into", str(into)]) == 0
    before = into.read_bytes()
    assert main(["merge-runs", str(bad), "--into", str(into)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and re.search(pattern, err), err
    assert into.read_bytes() == before


@pytest.mark.parametrize("column", ["test_error", "status", "metric", "table", "comparable", "family"])
def test_regenerate_refuses_a_runs_csv_missing_a_column_and_leaves_no_output(stored, tmp_path, capsys, column):
    bad = tmp_path / "bad" / "runs.csv"
    bad.parent.mkdir()
    pd.read_csv(stored, dtype=str).drop(columns=[column]).to_csv(bad, index=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier output")
    rc = main(["regenerate", "--runs-csv", str(bad), "--out", str(out), "--published", str(PUBLISHED)])
    err = capsys.readouterr().err
    assert rc == 2 and str(bad) in err and column in err, err
    assert "KeyError" not in err and "Traceback" not in err
    assert _snapshot(out) == {Path("keep.txt"): b"earlier output"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_regenerate_finds_the_published_csv_from_any_directory(stored, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["regenerate", "--runs-csv", str(stored), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report" / "report.html").is_file()


def test_banner_counts_rows_devices_and_names_families_not_run(tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, record("resnet20", 0, value=8.7))                                 # published 8.75
    write_record(runs, record("resnet32", 0, value=12.0, runtime={"device_type": "cuda"},
                              provenance={"device_name": "NVIDIA H200"}))               # published 7.51
    want = [runs / "exp" / "cifar10" / m / "seed0" / "metrics.json" for m in ("resnet20", "resnet32", "resnet44")]
    assert main(["aggregate", "--runs", str(runs), "--published", str(PUBLISHED), "--out", str(tmp_path / "agg"),
                 "--tolerances", '{"test_error": 0.5}', "--metrics", *map(str, want)]) == 0
    assert main(["report", "--tables", str(tmp_path / "agg"), "--out", str(tmp_path / "agg" / "report")]) == 0
    page = (tmp_path / "agg" / "report" / "report.html").read_text()
    banner = page[page.index('id="verdict-banner"'):].split("</p>")[0]
    # one seed each: no confidence interval, so neither row is reproduced or refuted yet
    assert "<b>Trained results: 2</b> (2 inconclusive)" in banner and "<b>1</b> expected row(s) not yet run" in banner
    assert "NVIDIA H200 (1 run)" in banner and "CPU (1 run)" in banner and "x86_64" not in banner
    assert "Families not yet run: neural_ode, anode, flows, stochastic, neural_sde, latent_sde, generative" in banner


def test_the_workflow_hands_the_aggregate_exactly_the_expected_records():
    smk = (ROOT / "workflow" / "rules" / "report.smk").read_text()
    assert "--metrics {input.metrics:q}" in smk and "metrics=all_metrics()" in smk


def test_config_schema_accepts_relative_tolerances_and_refuses_others():
    import yaml
    from snakemake.utils import validate

    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["report"]["tolerances"] = {"test_error": 0.5, "params_m": "2%"}
    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    cfg["report"]["tolerances"]["params_m"] = "two percent"
    with pytest.raises(Exception, match="params_m|two percent"):
        validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
