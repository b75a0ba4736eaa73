"""The report's plots at the smoke preset's scale (80 models): one panel per table, labels legible.

Each plot is held to :func:`debench.report.layout.layout_problems` (column width, 7 pt text, no two
texts overlapping, no legend over data) as drawn for the report, reduced-preset title included.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from debench.report.aggregate import aggregate
from debench.report.layout import COLUMN_PX, DPI, MIN_FONT_PT, labels, layout_problems
from debench.report.plots import PLOTS, draw, save
from debench.report.render import spec
from debench.report.runs import read_runs_csv
from tests.report_scale import make_smoke_scale_runs, smoke_scale_models
from tests.test_report import PUBLISHED, make_runs

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def scale(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    aggregate(make_smoke_scale_runs(tmp / "runs"), PUBLISHED, tmp / "agg")
    runs = read_runs_csv(tmp / "agg" / "runs.csv")
    return runs[runs["status"] == "ok"], tmp


def test_the_scale_input_has_every_smoke_model(scale):
    ok, _ = scale
    assert len(ok) == 80 and set(zip(ok["model"], ok["dataset"])) == smoke_scale_models()
    assert ok["table"].nunique() == 9 and ok["trajectory"].notna().all()


@pytest.mark.parametrize("name", list(PLOTS))
def test_every_plot_meets_the_layout_rule_at_smoke_scale(scale, name):
    ok, _ = scale
    fig = draw(name, ok, None, reduced=True)
    try:
        assert layout_problems(fig) == []
        assert fig.get_figwidth() * DPI <= COLUMN_PX
    finally:
        plt.close(fig)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    runs_dir = make_runs(tmp / "runs")
    aggregate(runs_dir, PUBLISHED, tmp / "agg")
    runs = read_runs_csv(tmp / "agg" / "runs.csv")
    return runs[runs["status"] == "ok"], runs_dir


@pytest.mark.parametrize("name", ["flow_samples", "generative_samples", "memory_vs_depth", "robustness"])
def test_plots_of_the_small_report_with_artifacts_meet_the_layout_rule(small, name):
    ok, runs_dir = small
    fig = draw(name, ok, runs_dir)
    try:
        assert layout_problems(fig) == []
        assert len(fig.axes) >= 1 and not any(ax.texts for ax in fig.axes)   # drawn, not "no data"
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", list(PLOTS))
def test_every_plot_meets_the_layout_rule_without_runs(name):
    fig = draw(name, pd.DataFrame(columns=["model", "dataset", "seed", "task", "table", "status"]), None)
    try:
        assert layout_problems(fig) == []
    finally:
        plt.close(fig)


def _bars(fig):
    """``{panel title: {tick label: bar width}}`` of a horizontal bar chart."""
    out = {}
    for ax in fig.axes:
        names = [t.get_text() for t in ax.get_yticklabels()]
        out[ax.get_title()] = dict(zip(names, (p.get_width() for p in ax.patches), strict=True))
    return out


def test_activation_memory_has_one_panel_per_table_and_every_bar_its_run(scale):
    ok, _ = scale
    fig = draw("activation_memory", ok, None)
    bars = _bars(fig)
    plt.close(fig)
    cls = ok[ok["task"] == "classify"]
    order = ["discrete", "neural_ode", "anode", "stochastic", "neural_sde", "future"]
    assert [t.replace("\n", " ").split(": cifar10")[0] for t in bars] == [spec(t).title for t in order]
    assert sum(len(b) for b in bars.values()) == len(cls) == 70
    for table, (title, panel) in zip(order, bars.items()):
        rows = cls[cls["table"] == table]
        one = rows["dataset"].nunique() == 1
        expect = {(m if one else f"{m} / {d}"): v
                  for m, d, v in zip(rows["model"], rows["dataset"], rows["activation_memory_mb"])}
        assert panel == pytest.approx(expect), title
        assert list(panel.values()) == sorted(panel.values())
        assert title.endswith(": cifar10") == (table in ("discrete", "stochastic", "future"))


def test_time_per_epoch_never_averages_one_model_across_tables_or_datasets(scale):
    ok, _ = scale
    fig = draw("time_per_epoch", ok, None)
    bars = _bars(fig)
    plt.close(fig)
    both = ok[ok["model"] == "resnet6_mnist"].set_index("table")["epoch_time_s"]
    assert bars["Discrete DE-inspired architectures: cifar10"]["resnet6_mnist"] == pytest.approx(both["discrete"])
    assert bars["Neural ODEs"]["resnet6_mnist / mnist"] == pytest.approx(both["neural_ode"])
    assert sum(len(b) for b in bars.values()) == 80


def test_nfe_legend_sits_beside_its_curves(scale):
    ok, _ = scale
    fig = draw("nfe_over_training", ok, None)
    fig.draw_without_rendering()
    try:
        assert len(fig.axes) == 5      # discrete (resnet6_mnist), neural_ode, anode, flows, future
        for ax in fig.axes:
            legend = ax.get_legend().get_window_extent()
            assert legend.x0 >= ax.bbox.x1 and legend.y0 >= ax.bbox.y0 - 1 and legend.y1 <= ax.bbox.y1 + 1
            assert len({(ln.get_color(), ln.get_marker()) for ln in ax.get_lines()}) == len(ax.get_legend().texts)
    finally:
        plt.close(fig)


def test_the_rule_flags_crowded_labels_and_a_legend_over_the_data():
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.barh([f"model_{i} / cifar10" for i in range(74)], range(74))
    ax.tick_params(axis="y", labelsize=4)
    problems = layout_problems(fig)
    assert any("overlaps" in p for p in problems) and any(f"(< {MIN_FONT_PT:g})" in p for p in problems)
    assert any("px wide" in p for p in problems)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    for i in range(12):
        ax.plot([1, 2, 3], [i, i + 1, i + 2], label=f"node_{i}")
    ax.legend(ncol=2, fontsize=MIN_FONT_PT)
    assert any("covers the data area" in p for p in layout_problems(fig))
    plt.close(fig)


def test_same_rows_give_byte_identical_plots(scale, tmp_path):
    ok, _ = scale
    few = ok[ok["table"].isin(["neural_ode", "anode"])]
    for name in ("activation_memory", "nfe_over_training"):
        a, b = (save(draw(name, few, None, reduced=True), tmp_path / d / f"{name}.png") for d in "ab")
        assert a.read_bytes() == b.read_bytes(), name


def test_two_configs_of_one_model_are_two_bars_never_averaged(scale):
    ok, _ = scale
    rows = ok[ok["table"] == "neural_ode"]
    other = rows[rows["model"] == "odenet_mnist"].assign(settings_hash="h2", activation_memory_mb=999.0)
    fig = draw("activation_memory", pd.concat([rows, other]), None)
    (panel,) = _bars(fig).values()
    plt.close(fig)
    assert panel["odenet_mnist / mnist / h0"] == pytest.approx(float(rows.set_index("model").loc[
        "odenet_mnist", "activation_memory_mb"]))
    assert panel["odenet_mnist / mnist / h2"] == 999.0 and "odenet_cifar / cifar10" in panel
    assert labels(pd.DataFrame({"model": ["a", "a", "b"], "mode": ["paper", "common", "paper"],
                                "settings_hash": ["h0", "h1", "h0"]})).tolist() == ["a / paper", "a / common", "b"]
