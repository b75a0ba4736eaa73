"""The measure experiment kind, the MLP baseline of Chen et al. Table 1, and the measurement table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from debench.registry import create_model
from debench.train.measure import count_parameters
ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "config" / "reference" / "published_results.csv"


def test_mlp300_has_the_parameter_count_of_its_layer_sizes():
    model = create_model("mlp300_deskew_mnist")
    assert count_parameters(model) == 784 * 300 + 300 + 300 * 10 + 10 == 238_510
    assert round(count_parameters(model) / 1e6, 2) == 0.24  # Chen et al. Table 1's params column
    assert count_parameters(create_model("mlp300_mnist")) == 238_510


def test_deskew_makes_a_slanted_stroke_vertical_and_keeps_an_upright_one():
    from debench.models.baselines import deskew

    img = torch.zeros(2, 1, 28, 28)
    for r in range(4, 24):  # a stroke leaning right by 0.5 px per row, and an upright one
        img[0, 0, r, 8 + r // 2] = 1.0
        img[1, 0, r, 14] = 1.0
    out = deskew((img - 0.13) / 0.31) * 0.31 + 0.13
    cols = torch.arange(28.0)
    centre = [(out[0, 0, r] * cols).sum() / out[0, 0, r].sum() for r in range(6, 22)]
    assert max(centre) - min(centre) < 1.0  # was 8 px across those rows
    assert torch.allclose(out[1], img[1], atol=1e-5)
    assert out.min() > -1e-5  # the background stays the background


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory) -> Path:
    from debench.data import prepare_dataset

    out = tmp_path_factory.mktemp("data") / "mnist.npz"
    prepare_dataset("mnist", "synthetic", out, train_size=64, test_size=16, seed=0)
    return out


def _measure_spec(tmp: Path, cache: Path, model: str, dataset: str, batch: int = 8) -> dict:
    return {"experiment": "m", "preset": "test", "table": "measurements", "mode": "paper", "comparable": True,
            "kind": "measure", "model": model, "dataset": dataset, "seed": 0, "model_args": {},
            "protocol": {"batch_size": batch, "iterations": 2, "warmup_iterations": 1, "crop_padding": 0,
                         "flip": False},
            "runtime": {"device": "cpu", "threads": 1}, "data": {"cache": str(cache)}, "tracking": {"enabled": False},
            "paths": {"metrics": str(tmp / "run" / "metrics.json"), "checkpoints": str(tmp / "ckpt")}}


def test_measure_counts_a_fixed_step_solver_exactly_through_the_cli(tmp_path, mnist_cache, one_thread):
    from debench.cli import main

    spec = _measure_spec(tmp_path, mnist_cache, "rknet_mnist", "mnist")
    assert main(["train", "--spec", json.dumps(spec)]) == 0
    rec = json.loads(Path(spec["paths"]["metrics"]).read_text())
    assert rec["kind"] == "measure" and rec["schema_version"] == 2 and rec["status"] == "ok"
    assert rec["params"] == count_parameters(create_model("rknet_mnist"))
    assert rec["nfe_forward_init"] == 16 and rec["nfe_fixed_step"] is True  # rk4: 4 steps of 0.25 x 4 stages
    assert rec["activation_memory_mb"] > 0 and rec["activation_batch_size"] == 8
    assert rec["time_steps"] == 2 and rec["time_per_iter_s"] > 0
    assert set(rec["model_meta"]) == {"reference", "depth", "constant_depth_twin", "baseline", "compilable", "compiled",
                                      "module"}
    assert rec["model_meta"]["reference"] == [{"table_id": "CHEN18_T1", "model": "RK-Net"}]
    assert rec["model_args"]["method"] == "rk4" and rec["model_args"]["step_size"] == 0.25
    assert set(rec["precision"].values()) == {"fp32"} and rec["data"]["sha256"]
    assert not (tmp_path / "ckpt").exists()  # nothing trained, nothing checkpointed


def test_measure_times_a_stochastic_depth_model_against_its_twin(tmp_path, synthetic_cache, one_thread):
    from debench.measurement import measure

    rec = measure(_measure_spec(tmp_path, synthetic_cache, "stochastic_depth_resnet20", "cifar10", batch=4))
    assert rec["constant_depth_twin"] == rec["model_meta"]["constant_depth_twin"] == "resnet20"
    assert rec["time_ratio_to_twin"] == pytest.approx(rec["time_per_iter_s"] / rec["twin_time_per_iter_s"])
    assert rec["model_meta"]["depth"] == 20


def _row(model, dataset="cifar10", experiment="m", **values):
    """A measurement run row as the trainer writes it, its model_meta.* columns included."""
    from debench.registry import model_meta

    meta = {f"model_meta.{k}": json.dumps(v) if isinstance(v, (list, dict)) else v
            for k, v in model_meta(model, compiled=False).items()}
    base = {**meta, "schema_version": 2, "config_hash": f"h{model}", "settings_hash": f"s{model}", "experiment": experiment, "dataset": dataset, "model": model, "seed": 0, "kind": "measure",
            "status": "ok", "comparable": True, "table": "measurements", "mode": "paper", "metric": "params",
            "family": "discrete", "params_m": math.nan, "activation_memory_mb": math.nan,
            "activation_batch_size": 100, "time_ratio_to_twin": math.nan, "nfe_forward_init": math.nan}
    row = {**base, **values}
    if row["metric"] == "params":  # the record's primary metric: the count the measurement made
        row["params"] = round(row["params_m"] * 1e6) if row["params_m"] == row["params_m"] else 0
    return row


def _table(rows, tolerances=None):
    from debench.report.measurements import measurement_table
    from debench.report.published import load_published
    from debench.report.tolerance import parse_tolerances

    return measurement_table(pd.DataFrame(rows), load_published(PUBLISHED), parse_tolerances(tolerances))


def test_parameter_count_verdict_uses_a_relative_tolerance():
    t = _table([_row("resnet20", params_m=0.2723), _row("resnet32", params_m=0.50)])
    got = t.set_index("model")
    assert got.loc["resnet20", "published"] == 0.27 and got.loc["resnet20", "verdict"] == "matches"
    assert got.loc["resnet32", "verdict"] == "differs"  # 0.50 vs 0.46: 8.7% off
    assert (got["tolerance"] == "±2% (relative)").all() and (got["kind"] == "architecture").all()
    loose = _table([_row("resnet32", params_m=0.50)], {"params_m": "10%"})
    assert loose["verdict"].iloc[0] == "matches"


def test_memcnn_memory_is_a_different_quantity_and_its_ratios_sit_beside_the_rows():
    rows = [_row("resnet32", activation_memory_mb=200.0), _row("revnet38", activation_memory_mb=70.0),
            _row("resnet110", activation_memory_mb=800.0, activation_batch_size=128),
            _row("revnet110", activation_memory_mb=80.0, activation_batch_size=128)]
    t = _table(rows)
    # MemCNN measures torch.cuda.memory_allocated minus the model during training; we measure saved
    # activations: shown side by side, never a verdict (it used to be "reproduced" within 10%)
    memory = t[t["quantity"] == "activation_memory_mb"].set_index("model")
    assert memory.loc["resnet32", "published"] == 238.6
    assert memory.loc["resnet32", "verdict"] == "different quantity" and "memory_allocated" in memory.loc["resnet32", "reason"]
    assert memory.loc["revnet38", "verdict"] == "different quantity"
    assert memory.loc["resnet110", "verdict"] == "not comparable"  # batch 128, MemCNN trains at 100
    # the implied ratio is a column of the RevNet row, not a row (or a verdict) of its own
    assert set(t["quantity"]) == {"params_m", "activation_memory_mb"}
    assert memory.loc["revnet38", "ratio_to"] == "resnet32"
    assert memory.loc["revnet38", "published_ratio"] == pytest.approx(85.6 / 238.6)
    assert memory.loc["revnet38", "measured_ratio"] == pytest.approx(0.35)


def test_time_ratio_is_shown_beside_huang_table2_as_a_different_quantity():
    t = _table([_row("stochastic_depth_resnet110", activation_batch_size=128, time_ratio_to_twin=0.74,
                     constant_depth_twin="resnet110")])
    row = t[t["quantity"] == "time_ratio"].iloc[0]
    assert row["published"] == pytest.approx(15.12 / 20.70) and row["kind"] == "measurement"
    # Huang et al. time 500 GPU epochs with data loading; we time 20 CPU steps: no verdict (was "reproduced")
    assert row["against"] == "resnet110" and row["verdict"] == "different quantity" and "500 epochs" in row["reason"]


def test_a_malformed_tolerance_names_its_key():
    from debench.report.schema import ReportInputError
    from debench.report.tolerance import Tolerance, parse_tolerance

    with pytest.raises(ReportInputError, match="report.tolerances.params_m"):
        parse_tolerance("params_m", "two percent")
    assert parse_tolerance("x", "2%") == Tolerance(2.0, True) and parse_tolerance("x", 0.5) == Tolerance(0.5, False)


def test_aggregate_puts_measurements_in_their_own_table_and_keeps_them_in_runs_csv(tmp_path):
    from debench.report.aggregate import aggregate_rows

    train = _row("resnet20", kind="train", table="discrete", metric="test_error", test_error=8.9,
                 experiment="t", params=269_722)
    runs = pd.DataFrame([train, _row("resnet44", params_m=0.6583)])
    summary = aggregate_rows(runs, PUBLISHED, tmp_path)
    assert list(summary["model"]) == ["resnet20"]  # no empty test-error row for the measurement
    table = pd.read_csv(tmp_path / "tables" / "architecture.csv")
    # resnet44's count from its measurement run, resnet20's from its training run: each counted once
    assert list(table["model"]) == ["resnet20", "resnet44"] and table["verdict"].iloc[1] == "matches"
    assert set(pd.read_csv(tmp_path / "runs.csv")["model"]) == {"resnet20", "resnet44"}
    assert "| params_m |" in (tmp_path / "tables" / "architecture.md").read_text()
    from debench.report.runs import read_runs_csv

    aggregate_rows(read_runs_csv(tmp_path / "runs.csv"), PUBLISHED, tmp_path / "again")  # the regenerate path
    assert (tmp_path / "again/tables/architecture.csv").read_text() == (tmp_path / "tables/architecture.csv").read_text()


@pytest.mark.parametrize("name", ["measure.yaml", "cpu_real.yaml"])
def test_measurement_presets_pass_the_schema_and_the_config_check(name):
    import yaml
    from snakemake.utils import validate

    from debench.config import check_config, expand_runs

    cfg = yaml.safe_load((ROOT / "config" / name).read_text())
    validate(cfg, schema=str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    check_config(cfg)
    assert cfg["data"] == {**cfg["data"], "source": "npz", "npz_dir": "../shared/data"}
    kinds = {exp.get("kind", "train") for exp in cfg["experiments"].values()}
    assert kinds == ({"measure"} if name == "measure.yaml" else {"train"}) and expand_runs(cfg)


def test_memcnn_resnet164_is_the_bottleneck_net_of_the_memory_table():
    model = create_model("preact_resnet164")
    assert round(count_parameters(model) / 1e6, 2) == 1.70  # He et al.'s ResNet-164: 1.7M
    t = _table([_row("preact_resnet164", activation_memory_mb=2000.0), _row("revnet164", activation_memory_mb=400.0)])
    ratio = t[t["ratio_to"] == "preact_resnet164"].iloc[0]
    assert ratio["model"] == "revnet164"
    assert ratio["published_ratio"] == pytest.approx(432.7 / 2452.8) and ratio["measured_ratio"] == pytest.approx(0.2)


def test_report_builds_when_the_runs_are_only_measurements(tmp_path):
    from debench.report.aggregate import aggregate_rows
    from debench.report.html import build_report

    aggregate_rows(pd.DataFrame([_row("resnet44", params_m=0.6586, task="classify", params=658586)]), PUBLISHED, tmp_path)
    build_report(tmp_path, tmp_path / "report")  # the plots used to fail on params_m without accuracy
    assert (tmp_path / "report" / "report.html").is_file()


def test_the_html_report_shows_the_measurements_and_counts_their_verdicts(tmp_path):
    from debench.report.aggregate import aggregate_rows
    from debench.report.html import build_report

    runs = pd.DataFrame([_row("resnet44", params_m=0.6583), _row("resnet32", params_m=0.50)])
    aggregate_rows(runs, PUBLISHED, tmp_path)
    info = json.loads((tmp_path / "tables" / "summary.json").read_text())
    # parameter counts are architecture checks, never counted as reproduced results
    assert info["evidence"]["architecture"] == {"rows": 2, "verdicts": {
        "matches": 1, "differs": 1, "no published number": 0, "not comparable": 0}}
    assert info["evidence"]["trained"]["rows"] == 0 and info["evidence"]["measurements"]["rows"] == 0
    page = build_report(tmp_path, tmp_path / "report").read_text()
    section = page.split('id="sec-architecture"')[1].split("</section>")[0]
    assert section.count('data-verdict="matches"') == 1 and section.count('data-verdict="differs"') == 1
    assert "<b>Architecture checks: 2</b> (1 matches, 1 differs)" in page and 'class="reproduced"' not in section


def test_memcnn_s_own_revnets_are_still_a_different_quantity():
    # the RevNets MemCNN built (memcnn_revnet*) fix the architecture, not the quantity: saved activations
    # beside MemCNN's allocated training memory get no verdict; the ratio sits beside the row
    t = _table([_row("resnet32", activation_memory_mb=200.0), _row("memcnn_revnet38", activation_memory_mb=70.0)])
    row = t[(t["quantity"] == "activation_memory_mb") & (t["model"] == "memcnn_revnet38")].iloc[0]
    assert row["published"] == 85.6 and row["verdict"] == "different quantity"
    assert row["ratio_to"] == "resnet32" and row["measured_ratio"] == pytest.approx(0.35)


def test_a_reduced_preset_s_parameter_counts_are_not_compared(tmp_path):
    from debench.report.aggregate import aggregate_rows

    # a smoke-sized resnet20 (comparable: false) with another count than He et al.'s 0.27M
    train = _row("resnet20", kind="train", table="discrete", metric="test_error", test_error=60.0, experiment="t",
                 params=70_000, comparable=False)
    aggregate_rows(pd.DataFrame([train]), PUBLISHED, tmp_path)
    arch = pd.read_csv(tmp_path / "tables" / "architecture.csv")
    assert list(arch["verdict"]) == ["not comparable"]  # was "differs", counted as an architecture check
