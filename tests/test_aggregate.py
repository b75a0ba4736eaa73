"""Aggregation: statistics over seeds, published matching, verdicts, failed runs, rendering."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from debench.report.aggregate import aggregate, t_interval
from debench.report.published import load_published, match, time_saving_pct
from tests.conftest import ROOT, shared_reference_dir, skip_missing

PUBLISHED = ROOT / "config" / "reference" / "published_results.csv"


def write_run(root, model, seed, error, status="ok", table="discrete", comparable=True, mode="paper"):
    d = root / "exp" / "cifar10" / model / f"seed{seed}"
    d.mkdir(parents=True)
    rec = {"experiment": "exp", "table": table, "mode": mode, "comparable": comparable, "model": model,
           "dataset": "cifar10", "seed": seed, "status": status, "metric": "test_error",
           "family": "discrete", "task": "classify", "params": 1000, "epoch_time_s": 1.0,
           "provenance": {"git_commit": "abc"}, "protocol": {"lr": 0.1}}
    if status == "ok":
        rec.update(test_error=error, test_accuracy=100 - error)
    (d / "metrics.json").write_text(json.dumps(rec))


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
    m = match(df, "resnet110", "cifar10", "test_error")
    assert m["value"] == pytest.approx(6.61) and "mean" in m["variant"] and m["tag"] == "PRIMARY"
    assert match(df, "resnet20", "cifar10", "test_error")["value"] == pytest.approx(8.75)
    assert match(df, "resnet20", "cifar100", "test_error") is None


def test_verdicts_failed_runs_and_tables(tmp_path):
    runs = tmp_path / "runs"
    for seed, err in enumerate([8.5, 8.9, 9.1]):      # CI contains 8.75 -> reproduced
        write_run(runs, "resnet20", seed, err)
    for seed, err in enumerate([9.0, 9.2]):
        write_run(runs, "resnet32", seed, err)         # far from 7.51 -> not reproduced
    write_run(runs, "resnet32", 2, None, status="diverged")
    write_run(runs, "resnet44", 0, 7.0, comparable=False)
    summary = aggregate(runs, PUBLISHED, tmp_path / "out", tolerances={"test_error": 0.5})
    by = summary.set_index("model")
    assert by.loc["resnet20", "verdict"] == "reproduced" and by.loc["resnet20", "n"] == 3
    assert by.loc["resnet32", "verdict"] == "not reproduced"
    assert by.loc["resnet32", "n"] == 2 and by.loc["resnet32", "n_failed"] == 1
    assert by.loc["resnet32", "mean"] == pytest.approx(9.1)          # the diverged run is not averaged in
    assert by.loc["resnet44", "verdict"] == "not comparable"
    assert by.loc["resnet20", "difference"] == pytest.approx(np.mean([8.5, 8.9, 9.1]) - 8.75)
    info = json.loads((tmp_path / "out" / "tables" / "summary.json").read_text())
    assert info["verdicts"] == {"reproduced": 1, "not reproduced": 1, "no published number": 0, "not comparable": 1}
    assert info["runs_failed"] == 1
    md = (tmp_path / "out" / "tables" / "discrete.md").read_text()
    assert "8.83 ± 0.31" in md and "8.75 [PRIMARY]" in md
    tex = (tmp_path / "out" / "tables" / "discrete.tex").read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex
    rows = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(rows) == 7 and "provenance.git_commit" in rows


def test_tolerance_makes_a_close_single_run_reproduced(tmp_path):
    write_run(tmp_path / "runs", "resnet56", 0, 7.3)
    summary = aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "out", tolerances={"test_error": 0.5})
    assert summary.iloc[0]["verdict"] == "reproduced"


def test_tables_are_deterministic(tmp_path):
    for seed, err in enumerate([8.5, 8.9]):
        write_run(tmp_path / "runs", "resnet20", seed, err)
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "a")
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "b")
    for name in ("discrete.csv", "discrete.md", "discrete.tex", "summary.json"):
        assert (tmp_path / "a" / "tables" / name).read_bytes() == (tmp_path / "b" / "tables" / name).read_bytes()


def test_incomplete_and_unreadable_runs_are_reported_not_fatal(tmp_path):
    write_run(tmp_path / "runs", "resnet20", 0, 8.0)
    bad = tmp_path / "runs" / "exp" / "cifar10" / "resnet20" / "seed1"
    bad.mkdir(parents=True)
    (bad / "metrics.json").write_text('{"truncated": ')
    expected = [{"experiment": "exp", "dataset": "cifar10", "model": "resnet20", "seed": s} for s in (0, 1, 2)]
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "out", expected=expected)
    info = json.loads((tmp_path / "out" / "tables" / "summary.json").read_text())
    assert [e["seed"] for e in info["incomplete"]] == [1, 2]
    assert len(info["unreadable"]) == 1 and "seed1" in info["unreadable"][0]


def test_published_side_numbers():
    df = load_published(PUBLISHED)
    assert time_saving_pct(df, "cifar10", "110") == pytest.approx(100 * (1 - 15.12 / 20.70))
    assert math.isnan(time_saving_pct(df, "cifar10", "56"))
    assert match(df, "odenet_mnist", "mnist", "test_error")["params_m"] == pytest.approx(0.22)
    assert match(df, "ddpm_cifar", "cifar10", "fid")["value"] == pytest.approx(3.24)
