"""A model against the baseline its record names (the survey's relative claims, LM-ResNet-20 against
ResNet-20 first): the difference of the means with a Welch 95% CI, compared only under the same settings."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats

from debench.registry import list_models, model_info, model_meta
from debench.report.aggregate import aggregate
from debench.report.html import build_report
from tests.conftest import ROOT
from tests.report_records import record, write_record

PUBLISHED = ROOT / "config" / "reference" / "published_results.csv"
PROTOCOL = {"iterations": 64000, "milestones": [32000, 48000], "lr": 0.1, "batch_size": 128}


def runs(root, model, errors, *, experiment="he2016", protocol=None, baseline=None):
    for seed, err in enumerate(errors):
        write_record(root, record(model, seed, experiment=experiment, value=err,
                                  protocol={**PROTOCOL, **(protocol or {})},
                                  model_meta={"baseline": baseline}))


def compared(tmp_path) -> pd.DataFrame:
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "agg", tolerances={"test_error": 0.5})
    return pd.read_csv(tmp_path / "agg" / "tables" / "baselines.csv")


def test_every_registered_baseline_is_a_registered_model_of_the_same_depth():
    named = {m: model_info(m).baseline for m in list_models() if model_info(m).baseline}
    assert {"lm_resnet20", "mresnet20", "momentum_resnet20"} <= set(named) and named["lm_resnet20"] == "resnet20"
    for model, base in named.items():
        assert base in list_models(), (model, base)
        assert model_meta(model)["depth"] == model_meta(base)["depth"], (model, base)
        assert model_meta(model)["baseline"] == base  # what a run record carries


def test_lm_resnet_against_resnet_gives_the_welch_difference_and_its_verdict(tmp_path):
    lm, res = [8.0, 8.2, 8.1], [8.6, 8.9, 8.7]
    runs(tmp_path / "runs", "resnet20", res)
    runs(tmp_path / "runs", "lm_resnet20", lm, experiment="lm_he2016", baseline="resnet20")
    table = compared(tmp_path)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["model"], row["baseline"], row["baseline_experiment"]) == ("lm_resnet20", "resnet20", "he2016")
    assert (row["n"], row["baseline_n"]) == (3, 3)
    assert row["difference"] == pytest.approx(8.1 - 8.733333, abs=1e-5)
    ci = stats.ttest_ind(lm, res, equal_var=False).confidence_interval(0.95)  # scipy's own Welch interval
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((ci.low, ci.high), abs=1e-4)
    assert row["verdict"] == "lower than baseline" and row["ci95_high"] < 0
    page = build_report(tmp_path / "agg", tmp_path / "report").read_text()
    assert 'id="baselines-discrete"' in page and 'class="lower-than-baseline"' in page


@pytest.mark.parametrize("lm,res,verdict,why", [
    ([8.0, 9.5, 8.6], [8.6, 8.9, 8.7], "inconclusive", "contains 0"),
    ([8.1], [8.6, 8.9, 8.7], "inconclusive", "2 or more seeds of each (have 1 and 3)"),
    ([9.6, 9.8, 9.7], [8.6, 8.9, 8.7], "higher than baseline", "lies above 0"),
])
def test_an_interval_that_does_not_settle_it_says_so(tmp_path, lm, res, verdict, why):
    runs(tmp_path / "runs", "resnet20", res)
    runs(tmp_path / "runs", "lm_resnet20", lm, baseline="resnet20")
    row = compared(tmp_path).iloc[0]
    assert row["verdict"] == verdict and why in row["reason"], row["reason"]


def test_a_baseline_trained_under_another_protocol_or_not_at_all_is_not_compared(tmp_path):
    runs(tmp_path / "runs", "lm_resnet20", [8.0, 8.2, 8.1], baseline="resnet20")
    row = compared(tmp_path).iloc[0]
    assert row["verdict"] == "not compared" and "no finished run of resnet20 on cifar10" in row["reason"]
    runs(tmp_path / "runs", "resnet20", [8.6, 8.9, 8.7], experiment="other", protocol={"lr": 0.05})
    row = compared(tmp_path).iloc[0]
    assert row["verdict"] == "not compared" and "protocol.lr" in row["reason"]
    assert pd.isna(row["difference"]) and pd.isna(row["ci95_low"])


def test_rows_without_a_baseline_make_no_comparison(tmp_path):
    runs(tmp_path / "runs", "resnet20", [8.6, 8.9, 8.7])
    assert compared(tmp_path).empty
    assert 'id="baselines-' not in build_report(tmp_path / "agg", tmp_path / "report").read_text()
