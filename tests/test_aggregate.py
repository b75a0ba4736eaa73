"""Aggregation: statistics over seeds, published matching, verdicts, failed runs, rendering."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from debench.cli import main
from debench.report.aggregate import DEFAULT_TOLERANCES, aggregate, t_interval
from debench.report.html import build_report
from debench.report.published import load_published, match, time_saving_pct
from debench.report.schema import ReportInputError, RunRecordError
from tests.conftest import ROOT, shared_reference_dir, skip_missing
from tests.report_records import REFERENCES, record, write_record

PUBLISHED = ROOT / "config" / "reference" / "published_results.csv"


def write_run(root, model, seed, error, status="ok", table="discrete", comparable=True, mode="paper", **extra):
    extra.setdefault("epoch_time_s", 1.0)
    rec = record(model, seed, value=error, status=status, table=table, comparable=comparable, mode=mode, **extra)
    return write_record(root, rec)


def missing_shared_rows(shared: Path, vendored: Path) -> list[dict]:
    """Rows of the shared published CSV absent from the vendored one, compared as text on the
    shared copy's columns (the vendored copy may add rows and columns, never change one)."""
    read = lambda p: pd.read_csv(p, dtype=str, keep_default_na=False)  # noqa: E731
    a, b = read(shared), read(vendored)
    lost = [c for c in a.columns if c not in b.columns]
    if lost:
        return [{"missing columns": lost}]
    have = b[list(a.columns)].value_counts()
    need = a.value_counts()
    return [dict(zip(a.columns, row)) for row, n in need.items() if have.get(row, 0) < n]


def test_vendored_csv_holds_every_row_of_the_shared_copy_unchanged():
    shared = shared_reference_dir() / "published_results.csv"
    df = load_published(PUBLISHED)
    assert {"table_id", "paper", "notes", "source_url", "tag"} <= set(df.columns)
    if not shared.exists():
        skip_missing(f"the shared published CSV {shared} (set DEBENCH_SHARED_REFERENCE)")
    missing = missing_shared_rows(shared, PUBLISHED)
    assert not missing, f"{len(missing)} shared rows missing or changed in the vendored copy, e.g. {missing[:2]}"


def test_vendored_csv_check_catches_a_changed_a_dropped_and_allows_an_added_row(tmp_path):
    rows = PUBLISHED.read_text().splitlines(keepends=True)
    header, body = rows[0], rows[1:]
    (tmp_path / "shared.csv").write_text(header + "".join(body[:5]))
    (tmp_path / "added.csv").write_text(header + "".join(body[:5]) + body[10])
    assert missing_shared_rows(tmp_path / "shared.csv", tmp_path / "added.csv") == []
    (tmp_path / "dropped.csv").write_text(header + "".join(body[1:5]))
    assert len(missing_shared_rows(tmp_path / "shared.csv", tmp_path / "dropped.csv")) == 1
    changed = body[2].replace(",test_error,", ",test_accuracy,", 1) if ",test_error," in body[2] else "x" + body[2]
    (tmp_path / "changed.csv").write_text(header + "".join(body[:2]) + changed + "".join(body[3:5]))
    assert len(missing_shared_rows(tmp_path / "shared.csv", tmp_path / "changed.csv")) == 1


def test_t_interval_matches_the_formula():
    v = np.array([6.5, 6.9, 7.1])
    lo, hi = t_interval(v)
    half = 4.302652729911275 * v.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
    assert lo == pytest.approx(v.mean() - half) and hi == pytest.approx(v.mean() + half)
    assert all(math.isnan(x) for x in t_interval(np.array([1.0])))


def test_match_prefers_mean_of_runs_and_converts_accuracy():
    df = load_published(PUBLISHED)
    m = match(df, REFERENCES["resnet110"], "cifar10", "test_error")
    assert m["value"] == pytest.approx(6.61) and "mean" in m["variant"] and m["tag"] == "PRIMARY"
    assert match(df, REFERENCES["resnet20"], "cifar10", "test_error")["value"] == pytest.approx(8.75)
    assert match(df, REFERENCES["resnet20"], "cifar100", "test_error") is None
    assert match(df, [], "cifar10", "test_error") is None


def test_verdicts_failed_runs_and_tables(tmp_path):
    runs = tmp_path / "runs"
    # 95% CI of 8.6, 8.7, 8.8: 8.7 ± 4.303 * 0.1 / sqrt(3) = [8.452, 8.948], inside 8.75 ± 0.5 -> reproduced
    for seed, err in enumerate([8.6, 8.7, 8.8]):
        write_run(runs, "resnet20", seed, err)
    # 95% CI of 9.0, 9.02: 9.01 ± 12.706 * 0.01414 / sqrt(2) = [8.883, 9.137], wholly above 7.51 + 0.5
    for seed, err in enumerate([9.0, 9.02]):
        write_run(runs, "resnet32", seed, err)
    write_run(runs, "resnet32", 2, None, status="diverged")
    write_run(runs, "resnet44", 0, 7.0, comparable=False)
    summary = aggregate(runs, PUBLISHED, tmp_path / "out", tolerances={"test_error": 0.5})
    by = summary.set_index("model")
    assert by.loc["resnet20", "verdict"] == "reproduced" and by.loc["resnet20", "n"] == 3
    assert by.loc["resnet32", "verdict"] == "not reproduced"
    assert by.loc["resnet32", "n"] == 2 and by.loc["resnet32", "n_failed"] == 1
    assert by.loc["resnet32", "mean"] == pytest.approx(9.01)         # the diverged run is not averaged in
    assert by.loc["resnet44", "verdict"] == "not comparable"
    assert by.loc["resnet20", "difference"] == pytest.approx(8.7 - 8.75)
    info = json.loads((tmp_path / "out" / "tables" / "summary.json").read_text())
    assert info["evidence"]["trained"] == {"rows": 3, "verdicts": {
        "reproduced": 1, "not reproduced": 1, "inconclusive": 0, "no published number": 0, "not comparable": 1}}
    assert info["runs_failed"] == 1
    md = (tmp_path / "out" / "tables" / "discrete.md").read_text()
    assert "8.70 ± 0.10" in md and "8.75 [PRIMARY]" in md
    tex = (tmp_path / "out" / "tables" / "discrete.tex").read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex
    rows = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(rows) == 7 and "provenance.git_commit" in rows


def test_a_single_seed_is_inconclusive_however_close(tmp_path):
    # one seed has no confidence interval: 7.0 against He et al.'s 6.97 is a draw, not a reproduction
    write_run(tmp_path / "runs", "resnet56", 0, 7.0)
    summary = aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "out", tolerances={"test_error": 0.5})
    assert summary.iloc[0]["verdict"] == "inconclusive" and "n = 1" in summary.iloc[0]["verdict_reason"]


def test_tables_are_deterministic(tmp_path):
    for seed, err in enumerate([8.5, 8.9]):
        write_run(tmp_path / "runs", "resnet20", seed, err)
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "a")
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "b")
    for name in ("discrete.csv", "discrete.md", "discrete.tex", "summary.json"):
        assert (tmp_path / "a" / "tables" / name).read_bytes() == (tmp_path / "b" / "tables" / name).read_bytes()


def test_a_damaged_run_stops_the_aggregate_naming_the_file_and_nothing_is_lost(tmp_path, capsys):
    write_run(tmp_path / "runs", "resnet20", 0, 8.0)
    bad = write_run(tmp_path / "runs", "resnet20", 1, 8.4)
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "out")
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    bad.write_text(bad.read_text()[:40])                        # truncated
    with pytest.raises(RunRecordError, match=r"seed1/metrics.json: unreadable"):
        aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "out")
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before
    rc = main(["aggregate", "--runs", str(tmp_path / "runs"), "--published", str(PUBLISHED),
               "--out", str(tmp_path / "out")])
    assert rc == 2 and str(bad) in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before
    # at the user's explicit option the run is shown as unreadable, never dropped silently
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "shown", unreadable="show")
    info = json.loads((tmp_path / "shown" / "tables" / "summary.json").read_text())
    assert len(info["unreadable"]) == 1 and "seed1/metrics.json" in info["unreadable"][0]
    assert 'id="unreadable"' in build_report(tmp_path / "shown", tmp_path / "shown" / "report").read_text()


def test_a_record_without_a_contract_field_is_refused_by_name(tmp_path):
    rec = record("resnet20", 0)
    del rec["model_meta"]["constant_depth_twin"]
    path = write_record(tmp_path / "runs", rec)
    with pytest.raises(RunRecordError, match=r"metrics.json: missing field\(s\) model_meta.constant_depth_twin"):
        aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "out")
    path.write_text(json.dumps(record("resnet20", 0, value=None)))           # ok but no test_error
    with pytest.raises(RunRecordError, match="'test_error'"):
        aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "out")
    path.write_text(json.dumps(record("resnet20", 0, value=None, test_error="n/a")))
    with pytest.raises(RunRecordError, match="'test_error' .* is 'n/a', not a number"):
        aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_runs_of_different_configs_are_never_averaged(tmp_path):
    write_run(tmp_path / "runs", "resnet20", 0, 8.0, config_hash="aaaa1111", protocol={"lr": 0.1})
    write_run(tmp_path / "runs", "resnet20", 1, 9.0, config_hash="aaaa1111", protocol={"lr": 0.1})
    write_run(tmp_path / "runs", "resnet20", 2, 20.0, config_hash="bbbb2222", protocol={"lr": 0.05})
    summary = aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "out").set_index("settings_hash")
    assert list(summary["n"]) == [2, 1]
    assert summary.loc["aaaa1111", "mean"] == pytest.approx(8.5) and summary.loc["bbbb2222", "mean"] == 20.0
    assert summary.loc["aaaa1111", "config"] == "aaaa1111: protocol.lr=0.1"
    assert summary.loc["bbbb2222", "config"] == "bbbb2222: protocol.lr=0.05"
    md = (tmp_path / "out" / "tables" / "discrete.md").read_text()
    assert "bbbb2222: protocol.lr=0.05" in md and "| 20.00 |" in md


def test_only_the_runs_the_config_asks_for_are_counted(tmp_path):
    """seeds [0, 1], then seeds [0] with another lr: seed 1 is stale, never mixed in."""
    runs = tmp_path / "runs"
    write_run(runs, "resnet20", 0, 8.0, config_hash="new", protocol={"lr": 0.05})
    stale = write_run(runs, "resnet20", 1, 30.0, config_hash="old", protocol={"lr": 0.1})
    want = [runs / "exp" / "cifar10" / "resnet20" / "seed0" / "metrics.json",
            runs / "exp" / "cifar10" / "resnet56" / "seed0" / "metrics.json"]
    summary = aggregate(runs, PUBLISHED, tmp_path / "out", metrics=want)
    assert list(summary["n"]) == [1] and summary.iloc[0]["mean"] == 8.0 and summary.iloc[0]["config"] == ""
    info = json.loads((tmp_path / "out" / "tables" / "summary.json").read_text())
    assert info["stale"] == [str(stale)] and info["runs"] == 1
    page = build_report(tmp_path / "out", tmp_path / "out" / "report").read_text()
    assert 'id="stale"' in page and str(stale) in page
    assert [(m["model"], m["seed"]) for m in info["missing"]] == [("resnet56", 0)] and info["not_yet_run_rows"] == 1
    # the same from identities (runs.csv rows): the stale row is left out and named
    expected = [{"experiment": "exp", "dataset": "cifar10", "model": "resnet20", "seed": 0}]
    aggregate(runs, PUBLISHED, tmp_path / "ids", expected=expected)
    info = json.loads((tmp_path / "ids" / "tables" / "summary.json").read_text())
    assert info["runs"] == 1 and [(s["seed"], s["config_hash"]) for s in info["stale"]] == [(1, "olds1")]


def test_tolerances_absolute_relative_and_parameter_counts(tmp_path):
    # published 6.97; 95% CI of 7.29, 7.30, 7.31: 7.30 ± 4.303 * 0.01 / sqrt(3) = [7.275, 7.325]
    for seed, err in enumerate([7.29, 7.30, 7.31]):
        write_run(tmp_path / "runs", "resnet56", seed, err)
    s = aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "a", tolerances={"test_error": "6%"}).iloc[0]
    assert s["verdict"] == "reproduced" and s["tolerance"] == "±6% (relative)"   # band up to 6.97 + 0.418
    s = aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "b", tolerances={"test_error": "4%"}).iloc[0]
    assert s["verdict"] == "not reproduced"                                      # band up to 6.97 + 0.279
    assert "±4% (relative)" in (tmp_path / "b" / "tables" / "discrete.md").read_text()
    with pytest.raises(ReportInputError, match="report.tolerances.test_error"):
        aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "c", tolerances={"test_error": "five"})
    ode = tmp_path / "ode"
    write_run(ode, "odenet_mnist", 0, 0.5, dataset="mnist", table="neural_ode", params=224_000)   # published 0.22 M
    write_run(ode, "odenet_mnist", 1, 0.5, dataset="mnist", table="neural_ode", params=226_000,
              config_hash="h1")
    by = aggregate(ode, PUBLISHED, tmp_path / "d", tolerances=DEFAULT_TOLERANCES).set_index("settings_hash")
    assert by.loc["h0", "params_verdict"] == "matches" and by.loc["h1", "params_verdict"] == "differs"


def test_time_saving_from_the_record_twin_median_and_compile_mode(tmp_path):
    runs = tmp_path / "runs"
    for model, median, mean in (("resnet110", 4.0, 9.0), ("stochastic_depth_resnet110", 3.0, 9.0)):
        write_run(runs, model, 0, 6.0, table="stochastic", epoch_time_median_s=median, epoch_time_s=mean)
    write_run(runs, "resnet110", 1, 6.0, table="stochastic", epoch_time_median_s=1.0, epoch_time_s=1.0,
              config_hash="compiled", model_meta={"compiled": "max-autotune"})
    summary = aggregate(runs, PUBLISHED, tmp_path / "out")
    sd = summary.set_index("model").loc["stochastic_depth_resnet110"]
    assert sd["constant_depth_model"] == "resnet110" and sd["constant_depth_time_s"] == 4.0
    assert sd["time_saving_pct"] == pytest.approx(25.0) and sd["time_note"] == ""
    assert sd["published_time_saving_pct"] == pytest.approx(100 * (1 - 15.12 / 20.70))
    # no median recorded: the mean is used, and the table says so
    write_run(tmp_path / "old", "resnet110", 0, 6.0, table="stochastic", epoch_time_s=4.0)
    write_run(tmp_path / "old", "stochastic_depth_resnet110", 0, 6.0, table="stochastic", epoch_time_s=2.0)
    sd = aggregate(tmp_path / "old", PUBLISHED, tmp_path / "o").set_index("model").loc["stochastic_depth_resnet110"]
    assert sd["time_saving_pct"] == pytest.approx(50.0) and "epoch_time_median_s absent" in sd["time_note"]


def test_no_time_saving_against_a_twin_timed_on_another_machine(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "resnet110", 0, 6.0, table="stochastic", epoch_time_median_s=4.0,
              runtime={"device_type": "cuda"}, provenance={"device_name": "NVIDIA H100 80GB HBM3"})
    write_run(runs, "stochastic_depth_resnet110", 0, 6.0, table="stochastic", epoch_time_median_s=3.0,
              runtime={"device_type": "cuda"}, provenance={"device_name": "NVIDIA A100-SXM4-40GB"})
    sd = aggregate(runs, PUBLISHED, tmp_path / "out").set_index("model").loc["stochastic_depth_resnet110"]
    assert math.isnan(sd["time_saving_pct"]) and math.isnan(sd["constant_depth_time_s"])
    assert "another machine (NVIDIA H100 80GB HBM3)" in sd["time_note"] and "NVIDIA A100" in sd["time_note"]
    # the same twin on the same card: the saving is computed
    write_run(runs, "resnet110", 0, 6.0, table="stochastic", epoch_time_median_s=4.0,
              runtime={"device_type": "cuda"}, provenance={"device_name": "NVIDIA A100-SXM4-40GB"})
    sd = aggregate(runs, PUBLISHED, tmp_path / "o2").set_index("model").loc["stochastic_depth_resnet110"]
    assert sd["time_saving_pct"] == pytest.approx(25.0) and sd["time_note"] == ""


def test_published_side_numbers():
    df = load_published(PUBLISHED)
    assert time_saving_pct(df, "cifar10", "110") == pytest.approx(100 * (1 - 15.12 / 20.70))
    assert math.isnan(time_saving_pct(df, "cifar10", "56"))
    assert match(df, REFERENCES["odenet_mnist"], "mnist", "test_error")["params_m"] == pytest.approx(0.22)
    assert match(df, REFERENCES["ddpm_cifar"], "cifar10", "fid")["value"] == pytest.approx(3.24)


def test_fixture_references_are_the_registry_s():
    """The hand-built records carry the selectors the registry gives (so the fixtures stay honest)."""
    from debench.registry import model_info

    for model, refs in REFERENCES.items():
        assert list(model_info(model).reference) == refs, model
