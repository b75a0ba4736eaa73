"""The CPU campaign's comparison in the report (issue 25, point 4): ResNet-20 at He et al.'s full
protocol, its verdict against Table 6's 8.75%, the error curve against iterations beside Figure 6,
and the time per seed with the machine it ran on, all from run records alone."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from debench.report.aggregate import aggregate
from debench.report.html import build_report
from debench.report.layout import EMPTY, layout_problems
from debench.report.plots import draw
from debench.report.runs import read_runs_csv
from tests.conftest import ROOT
from tests.report_records import record, write_record

PUBLISHED = ROOT / "config" / "reference" / "published_results.csv"
ITERATIONS, STEPS_PER_EPOCH = 64000, 391


def campaign_run(root, seed: int, error: float, *, hours: float = 6.5, iterations=ITERATIONS, model="resnet20",
                 paused_h: float = 0.0, cpu_model: str = "AMD EPYC"):
    """A finished record of the campaign's shape with its per-epoch log (steps, test and train accuracy);
    ``paused_h``: hours one epoch was slowed or paused, in the summed training time but not the median."""
    epochs = -(-iterations // STEPS_PER_EPOCH)
    rec = record(model, seed, experiment="resnet_he2016", value=error, steps=iterations, epochs_completed=epochs,
                 train_time_s=(hours + paused_h) * 3600, epoch_time_median_s=hours * 3600 / epochs,
                 epoch_csv="epochs.csv",
                 resumed_from_epoch=30 if seed == 1 else 0,
                 protocol={"iterations": iterations, "milestones": [32000, 48000], "epochs": None, "batch_size": 128},
                 runtime={"device_type": "cpu", "threads": 2},
                 epoch_time_s=hours * 3600 / epochs,
                 provenance={"cpu_model": cpu_model, "git_commit": "51e7b9856fe01d0f"})
    path = write_record(root, rec)
    step = np.minimum(np.arange(1, epochs + 1) * STEPS_PER_EPOCH, iterations)
    test = np.interp(step, [0, 32000, 48000, iterations], [30, 85, 91, 100 - error])
    pd.DataFrame({"epoch": np.arange(1, epochs + 1), "step": step, "lr": 0.1, "train_loss": 1.0,
                  "train_accuracy": np.minimum(test + 5, 99.9), "test_accuracy": test}).to_csv(
        path.parent / "epochs.csv", index=False)
    return path


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("campaign")
    for seed, err in enumerate([8.6, 8.9, 8.7]):
        campaign_run(tmp / "runs", seed, err, hours=6.0 + seed / 4, paused_h=3.0 if seed == 2 else 0.0)
    aggregate(tmp / "runs", PUBLISHED, tmp / "agg", tolerances={"test_error": 0.5})
    return tmp


def _row(tmp):
    table = pd.read_csv(tmp / "agg" / "tables" / "discrete.csv")
    return table[table["model"] == "resnet20"].iloc[0]


def test_three_seeds_get_the_mean_ci_and_verdict_against_table_6(campaign):
    row = _row(campaign)
    assert row["n"] == 3 and row["published"] == 8.75
    assert row["mean"] == pytest.approx(np.mean([8.6, 8.9, 8.7]))
    # t(0.975, 2) = 4.303: the CI [8.35, 9.11] lies inside 8.75 +- 0.5, so the verdict may say reproduced
    half = 4.302653 * np.std([8.6, 8.9, 8.7], ddof=1) / np.sqrt(3)
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((row["mean"] - half, row["mean"] + half), abs=1e-3)
    assert row["verdict"] == "reproduced"


def test_one_seed_alone_is_never_called_reproduced(tmp_path):
    campaign_run(tmp_path / "runs", 0, 8.75)
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "agg", tolerances={"test_error": 0.5})
    row = _row(tmp_path)
    assert row["n"] == 1 and row["verdict"] == "inconclusive"


def test_error_curve_against_iterations_is_drawn_from_runs_csv_alone(campaign):
    runs = read_runs_csv(campaign / "agg" / "runs.csv")
    traj = json.loads(runs.iloc[0]["trajectory"])
    assert {"step", "train_accuracy", "test_accuracy"} <= set(traj) and traj["step"][-1] == ITERATIONS
    fig = draw("error_vs_iteration", runs[runs["status"] == "ok"], None)
    assert fig.get_label() != EMPTY and layout_problems(fig) == []
    ax = fig.axes[0]
    assert "64,000 iterations" in ax.get_title()
    solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 2]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and len(ln.get_xdata()) > 2]
    assert len(solid) == 3 and len(dashed) == 3  # test and train error of each seed
    assert max(ln.get_xdata()[-1] for ln in solid) == pytest.approx(64.0)  # thousands of iterations
    assert sorted(solid[0].get_ydata())[0] == pytest.approx(8.6)
    drops = sorted(ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == ":")
    assert drops == [32.0, 48.0]


def test_runs_without_an_iteration_budget_draw_no_curve(tmp_path):
    rec = record("resnet20", 0, experiment="epochs_run", value=9.0, epoch_csv="epochs.csv")  # protocol.epochs only
    path = write_record(tmp_path / "runs", rec)
    pd.DataFrame({"epoch": [1, 2], "step": [10, 20], "test_accuracy": [50.0, 60.0]}).to_csv(
        path.parent / "epochs.csv", index=False)
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "agg", tolerances={"test_error": 0.5})
    runs = read_runs_csv(tmp_path / "agg" / "runs.csv")
    assert draw("error_vs_iteration", runs, None).get_label() == EMPTY
    page = build_report(tmp_path / "agg", tmp_path / "report").read_text()
    assert 'id="budget-discrete"' not in page


def test_report_shows_time_per_seed_and_the_machine(campaign):
    page = build_report(campaign / "agg", campaign / "report").read_text()
    table = re.search(r'<table id="budget-discrete">.*?</table>', page, re.S).group(0)
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", table)
    assert len(rows) == 3
    cells = [r.split("</td><td>") for r in rows]
    assert [c[2] for c in cells] == ["0", "1", "2"] and {c[3] for c in cells} == {"64,000"}
    assert [c[4] for c in cells] == ["8.60", "8.90", "8.70"]
    assert [c[5] for c in cells] == ["6.00", "6.25", "9.50"]  # hours, summed: seed 2 had 3 h of pause
    # at the median epoch: 64,000 steps are 163.68 epochs of 391, not the 164 epochs the median was over
    assert [c[6] for c in cells] == [f"{h * 64000 / 391 / 164:.2f}" for h in (6.0, 6.25, 6.5)] == ["5.99", "6.24", "6.49"]
    assert {c[8] for c in cells} == {"CPU AMD EPYC, 2 threads"}
    assert [c[9] for c in cells] == ["no", "from epoch 30", "no"]
    assert "Figure 6" in page and "error_vs_iteration" in page


def test_a_survey_of_budget_runs_draws_one_mean_line_per_model_per_table(tmp_path):
    """On a GPU the survey trains dozens of models at their papers' budgets: each table's panel then
    draws one line per model (mean over seeds), its legend grouped, within the layout rule."""
    models = [f"{stem}{d}" for stem in ("resnet", "lm_resnet", "rk2_resnet", "midpoint") for d in (20, 32, 44, 56, 110)]
    for i, model in enumerate(models):
        for seed in range(2):
            campaign_run(tmp_path / "runs", seed, 7.0 + i / 10 + seed / 20, model=model)
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "agg", tolerances={"test_error": 0.5})
    runs = read_runs_csv(tmp_path / "agg" / "runs.csv")
    fig = draw("error_vs_iteration", runs[runs["status"] == "ok"], None)
    assert layout_problems(fig) == []
    ax = fig.axes[0]
    drawn = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]
    assert len(drawn) == len(models) and not [ln for ln in drawn if ln.get_linestyle() == "--"]
    assert 0 < len(ax.get_legend().get_texts()) <= 12


def test_a_reduced_preset_has_no_paper_budget(tmp_path):
    campaign_run(tmp_path / "runs", 0, 8.7)
    rec_path = tmp_path / "runs" / "resnet_he2016" / "cifar10" / "resnet20" / "seed0" / "metrics.json"
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps({**rec, "comparable": False}))
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "agg", tolerances={"test_error": 0.5})
    runs = read_runs_csv(tmp_path / "agg" / "runs.csv")
    assert draw("error_vs_iteration", runs, None).get_label() == EMPTY


def test_seeds_timed_on_two_machines_keep_their_verdict_but_no_averaged_time(tmp_path):
    """Seeds 0 and 1 of the campaign ran on an AMD EPYC, seed 2 on an Intel Xeon: the error is one
    quantity over the three seeds, but a mean of two machines' seconds per epoch is no machine's
    time. The row's times stay empty and say why; the time-per-run table gives each seed's."""
    for seed, err, cpu in ((0, 8.6, "AMD EPYC"), (1, 8.9, "AMD EPYC"), (2, 8.7, "Intel(R) Xeon(R) Processor")):
        campaign_run(tmp_path / "runs", seed, err, hours=6.0 if cpu == "AMD EPYC" else 3.7, cpu_model=cpu)
    aggregate(tmp_path / "runs", PUBLISHED, tmp_path / "agg", tolerances={"test_error": 0.5})
    row = _row(tmp_path)
    assert row["n"] == 3 and row["verdict"] == "reproduced"  # the verdict is over all three seeds
    assert row["n_machines"] == 2 and np.isnan(row["epoch_time_s"])
    md = (tmp_path / "agg" / "tables" / "discrete.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| resnet20 "))
    assert "not averaged: 2 machines" in line
    page = build_report(tmp_path / "agg", tmp_path / "report").read_text()
    table = re.search(r'<table id="budget-discrete">.*?</table>', page, re.S).group(0)
    cells = [r.split("</td><td>") for r in re.findall(r"<tr><td>(.*?)</td></tr>", table)]
    assert [c[8] for c in cells] == ["CPU AMD EPYC, 2 threads"] * 2 + ["CPU Intel(R) Xeon(R) Processor, 2 threads"]
    # the time plot draws one bar per machine, named where one model has several
    runs = read_runs_csv(tmp_path / "agg" / "runs.csv")
    fig = draw("time_per_epoch", runs[runs["status"] == "ok"], None)
    names = sorted(t.get_text() for ax in fig.axes for t in ax.get_yticklabels())
    assert names == ["resnet20 / CPU AMD EPYC, 2 threads", "resnet20 / CPU Intel(R) Xeon(R) Processor, 2 threads"]
    assert layout_problems(fig) == []


def test_seeds_on_one_machine_average_their_time(campaign):
    row = _row(campaign)
    assert row["n_machines"] == 1
    assert row["epoch_time_s"] == pytest.approx(np.mean([6.0, 6.25, 6.5]) * 3600 / 164)
