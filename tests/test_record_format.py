"""One run-record format in one place (issue 23.5): debench.record_format and its JSON Schema.

Every value here is written out by hand (a status, a table, a cell), never computed by the code
under test; each bad value must be refused with the file, line and column named.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from debench import record_format as rf
from debench.cli import main
from debench.report.regenerate import regenerate
from debench.report.runs import merge_runs, read_runs_csv
from debench.report.schema import RunRecordError
from tests.conftest import ROOT
from tests.report_records import record, write_record

PUBLISHED_RUNS = ROOT / "results" / "published" / "runs.csv"
SCHEMA = ROOT / "workflow" / "schemas" / "run_record.schema.json"


def _published_with(tmp_path: Path, column: str, value: str, metric_not: str = "params") -> tuple[Path, int]:
    """The committed runs.csv with one cell of a training row replaced; returns the file and its line."""
    rows = pd.read_csv(PUBLISHED_RUNS, dtype=str, keep_default_na=False)
    i = int(rows.index[rows["metric"] != metric_not][0])
    rows.loc[i, column] = value
    path = tmp_path / "runs.csv"
    rows.to_csv(path, index=False)
    return path, i + 2  # the header is line 1


# ---- the module and the schema file -----------------------------------------------------------

def test_the_format_module_imports_neither_torch_nor_pandas_nor_jsonschema():
    """A training process checks its record without loading a validator; a box without jsonschema still can."""
    code = ("import sys, json, debench.record_format as rf; from tests.report_records import record; "
            "rf.check_record(json.loads(json.dumps(record())), 'x'); "
            "print(sorted(m for m in ('torch', 'pandas', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_schema_file_is_draft7_and_holds_the_values_written_out_here():
    from jsonschema import Draft7Validator

    schema = json.loads(SCHEMA.read_text())
    Draft7Validator.check_schema(schema)
    assert rf.SCHEMA_VERSION == 2
    assert rf.STATUSES == ("ok", "failed", "diverged", "solver_failed")
    assert set(rf.TABLES) == {"discrete", "neural_ode", "anode", "flows", "stochastic", "neural_sde", "latent_sde",
                              "generative", "future", "measurements"}
    assert set(rf.REQUIRED) == {"experiment", "dataset", "model", "seed", "schema_version", "status", "metric", "table",
                                "comparable", "family", "mode", "config_hash", "settings_hash", "model_meta.reference",
                                "model_meta.depth", "model_meta.constant_depth_twin", "model_meta.compiled"}


def test_the_schema_version_is_defined_once():
    """Only the schema file states the version; every module takes it from debench.record_format."""
    from debench.report import schema as report_schema
    from debench.train import record as train_record

    assert train_record.SCHEMA_VERSION is rf.SCHEMA_VERSION and report_schema.SCHEMA_VERSION is rf.SCHEMA_VERSION
    stated = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "src").rglob("*.py"))
              if re.search(r"^SCHEMA_VERSION\s*[:=]", p.read_text(), re.M)]
    assert stated == ["src/debench/record_format.py"], stated
    assert '"schema_version": 2' not in (ROOT / "src" / "debench" / "measurement.py").read_text()


def test_the_schema_uses_only_the_keywords_record_format_applies():
    schema = json.loads(SCHEMA.read_text())
    for column in [c for c in schema["properties"] if c not in rf.GROUPS] + [
            f"model_meta.{k}" for k in schema["properties"]["model_meta"]["properties"]]:
        sub = rf.column_schema(column)
        assert set(sub) <= rf.KEYWORDS and set(sub.get("items", {})) <= rf.KEYWORDS, column


VALUES = [None, True, False, 0, 1, -1, 2, 2.0, 2.5, -0.5, 56.0, "", "x", "ok", "paper", "discrete", "timeout", "1",
          [], [{}], [1], [{"table_id": "T"}, "s"], {}, {"a": 1}, ["a.png"], [3]]


def test_record_format_agrees_with_jsonschema_on_every_column():
    """The standard-library check gives the verdict the jsonschema package gives, column by column."""
    from jsonschema import Draft7Validator

    schema = json.loads(SCHEMA.read_text())
    columns = [c for c in schema["properties"] if c not in rf.GROUPS]
    columns += [f"model_meta.{k}" for k in schema["properties"]["model_meta"]["properties"]]
    checked = 0
    for column in columns:
        sub = rf.column_schema(column)
        for value in VALUES:
            ours = rf._problem(sub, value) is None
            assert ours == Draft7Validator(sub).is_valid(value), (column, value)
            checked += 1
    assert checked == len(columns) * len(VALUES) and len(columns) > 50


def test_every_status_a_run_can_end_with_is_allowed_and_nothing_else():
    from debench import errors

    ended = {"ok"} | {c.status for c in vars(errors).values()
                      if isinstance(c, type) and issubclass(c, errors.RunFailed)}
    assert ended == set(rf.STATUSES)


def test_every_report_table_is_allowed():
    from debench.report.tables import TABLE_NAMES

    assert set(TABLE_NAMES) | {"measurements"} == set(rf.TABLES)


def test_track_sync_does_not_import_the_trainer():
    """track.sync took its MLflow parameters from debench.train.record (train imports track: a circle)."""
    code = ("import sys; from debench.track import sync; sync._params({'model': 'm', 'protocol': {'lr': 0.1}}); "
            "print(sorted(m for m in sys.modules if m.startswith('debench.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_flattening_by_hand():
    rec = {"model": "m", "seed": 1, "model_meta": {"reference": [{"table_id": "T"}], "depth": 20},
           "artifacts": ["a.png"], "protocol": {"milestones": [1, 2], "lr": 0.1}}
    assert rf.flatten(rec) == {"model": "m", "seed": 1, "model_meta.reference": '[{"table_id": "T"}]',
                               "model_meta.depth": 20, "artifacts": '["a.png"]', "protocol.milestones": "[1, 2]",
                               "protocol.lr": 0.1}
    assert rf.flat_params(rec) == {"model": "m", "dataset": None, "seed": 1, "preset": None, "config_hash": None,
                                   "protocol.milestones": "[1, 2]", "protocol.lr": 0.1,
                                   "model_meta.reference": '[{"table_id": "T"}]', "model_meta.depth": 20}


# ---- the committed runs.csv -------------------------------------------------------------------

def test_the_committed_published_runs_csv_still_loads():
    """Every data row loads and is ok. No hard-coded count (a merged campaign seed changes it):
    test_report ties the README's '| runs | N ...' row to what regenerate counts."""
    runs = read_runs_csv(PUBLISHED_RUNS)
    with open(PUBLISHED_RUNS, newline="") as fh:
        assert len(runs) == sum(1 for _ in csv.reader(fh)) - 1 > 0   # no row lost or split in parsing
    assert set(runs["status"]) == {"ok"}
    assert set(runs["table"]) <= set(rf.TABLES)


# ---- bad values, each named by file, line and column ---------------------------------------------

def test_a_non_numeric_params_is_refused_by_regenerate_naming_file_line_and_column(tmp_path):
    """Before: a bare KeyError('params') from a plot, after the tables were built."""
    path, line = _published_with(tmp_path, "params", "1.7M")
    with pytest.raises(RunRecordError) as err:
        regenerate(path, tmp_path / "out")
    assert str(err.value) == f"{path}, line {line}, column 'params': '1.7M' is not an integer or empty"
    assert not (tmp_path / "out").exists()


def test_a_non_numeric_params_is_refused_by_merge_runs_and_the_target_is_kept(tmp_path, capsys):
    """Before: merge-runs accepted it and wrote it into the merged runs.csv."""
    path, line = _published_with(tmp_path, "params", "1.7M")
    into = tmp_path / "merged" / "runs.csv"
    into.parent.mkdir()
    into.write_bytes(PUBLISHED_RUNS.read_bytes())
    with pytest.raises(RunRecordError, match=rf"line {line}, column 'params': '1.7M' is not an integer"):
        merge_runs([path], into)
    assert into.read_bytes() == PUBLISHED_RUNS.read_bytes()
    assert main(["merge-runs", str(path), "--into", str(into)]) == 2
    assert f"{path}, line {line}, column 'params'" in capsys.readouterr().err


def test_an_unknown_table_is_refused_not_made_into_a_new_table(tmp_path):
    """Before: 'discrete_v2' silently became a ninth table of its own."""
    path, line = _published_with(tmp_path, "table", "discrete_v2")
    for read in (lambda: regenerate(path, tmp_path / "out"), lambda: merge_runs([path], tmp_path / "m.csv")):
        with pytest.raises(RunRecordError, match=rf"{re.escape(str(path))}, line {line}, column 'table': "
                                                 r"'discrete_v2' is not one of the allowed values 'discrete'"):
            read()
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.csv").exists()


def test_an_unknown_status_is_refused_not_counted_as_failed(tmp_path):
    """Before: status 'timeout' counted as a failed seed (n_failed 1)."""
    from debench.report.aggregate import aggregate

    write_record(tmp_path / "runs", record("resnet20", 0, value=8.0))
    bad = write_record(tmp_path / "runs", record("resnet20", 1, status="timeout"))
    with pytest.raises(RunRecordError) as err:
        aggregate(tmp_path / "runs", ROOT / "config" / "reference" / "published_results.csv", tmp_path / "out")
    assert str(err.value) == (f"{bad}, column 'status': 'timeout' is not one of the allowed values "
                              "'ok', 'failed', 'diverged', 'solver_failed'")


@pytest.mark.parametrize("column, cell, says", [
    ("mode", "papers", "'papers' is not one of the allowed values 'paper', 'common'"),
    ("model_meta.depth", "deep", "'deep' is not an integer or empty"),
    ("comparable", "maybe", "'maybe' is not true or false"),
    ("seed", "one", "'one' is not an integer"),
    ("schema_version", "1", "schema_version 1, this debench reads 2 or newer"),
    ("model_meta.reference", "[1]", "item 0: 1 is not a JSON object"),
])
def test_other_bad_cells_are_named(tmp_path, column, cell, says):
    path, line = _published_with(tmp_path, column, cell)
    with pytest.raises(RunRecordError) as err:
        read_runs_csv(path)
    assert str(err.value) == f"{path}, line {line}, column {column!r}: {says}"


def test_a_csv_row_and_its_record_are_read_alike():
    """A cell's text is read back to the schema's type: '56.0' is the integer depth 56, 'False' is false."""
    row = {**rf.flatten(record("resnet56", 0)), "model_meta.depth": "56.0", "comparable": "False",
           "model_meta.compiled": "False", "params": "270000", "seed": "0.0", "schema_version": "2"}
    rf.check_row(row, "row")  # accepted
    with pytest.raises(rf.RecordFormatError, match=r"row, column 'model_meta.depth': 56.5 is not an integer"):
        rf.check_row({**row, "model_meta.depth": "56.5"}, "row")


# ---- train writes through the schema ------------------------------------------------------------

def test_train_writes_only_a_valid_record_and_keeps_an_invalid_one_beside(tmp_path):
    from debench.train.record import write_record as write_checked

    good = record("resnet20", 0)
    write_checked(tmp_path / "ok" / "metrics.json", good)
    assert json.loads((tmp_path / "ok" / "metrics.json").read_text()) == good
    bad = {**good, "params": "many"}
    target = tmp_path / "bad" / "metrics.json"
    with pytest.raises(rf.RecordFormatError, match=r"bad/metrics.json, column 'params': 'many' is not an integer.*"
                                                   r"kept in .*bad/metrics.invalid.json"):
        write_checked(target, bad)
    assert not target.exists()  # the workflow does not take the run as finished
    assert json.loads((tmp_path / "bad" / "metrics.invalid.json").read_text()) == bad  # nothing is lost


def test_a_run_spec_with_an_unknown_table_stops_before_training(tmp_path):
    from debench.data import prepare_dataset
    from debench.errors import ConfigError
    from debench.train import loop
    from tests.conftest import make_spec

    cache = tmp_path / "data" / "cifar10.npz"
    prepare_dataset("cifar10", "synthetic", cache, train_size=64, test_size=32, seed=0)
    spec = make_spec(tmp_path, cache, table="discrete_v2", model="test_nan_after", model_args={"after": 10**9},
                     protocol={"epochs": 1})
    import tests.nan_model  # noqa: F401  (registers test_nan_after)

    with pytest.raises(ConfigError, match=r"run test/cifar10/test_nan_after/seed0, column 'table': 'discrete_v2'"):
        loop.train(spec)
    assert not (tmp_path / "run" / "epochs.csv").exists() and not (tmp_path / "run" / "metrics.json").exists()


# ---- track sync and status read through it ----------------------------------------------------------

def test_track_sync_skips_a_record_that_breaks_the_schema_naming_it(tmp_path, monkeypatch):
    import mlflow.tracking

    from debench.track.sync import sync

    class Store:  # a store with no runs: every valid record is missing there
        def __init__(self, tracking_uri):
            pass

        def get_run(self, run_id):
            raise LookupError(run_id)

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", Store)
    good = write_record(tmp_path, record("resnet20", 0))
    bad = write_record(tmp_path, record("resnet20", 1, table="discrete_v2"))
    report = sync(tmp_path, "sqlite:///unused.db", min_age_s=0, dry_run=True)
    assert report.uploaded == [good]
    assert report.skipped == [f"{bad}, column 'table': 'discrete_v2' is not one of the allowed values "
                              + ", ".join(repr(t) for t in rf.TABLES)]
