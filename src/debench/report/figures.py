"""One drawing function per plot of :data:`debench.report.plots.PLOTS`: ``(ok_runs, runs_dir) -> Figure``.

``ok_runs`` holds the rows of runs that finished (status ``ok``); ``runs_dir`` the run folders,
or ``None`` when the report is rebuilt from ``runs.csv`` alone.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

# drawn by name from PLOTS; html imports artifact_images from here
from debench.report.artifacts import artifact_images, flow_samples, generative_samples, latent_sde_paths  # noqa: F401
from debench.report.layout import (BAR_IN, MAX_LEGEND, PANEL_IN, WIDTH_IN, empty_figure, groups, labels,
                                   legend_beside, legend_groups, legend_height, log_x, panels, stem, style, TITLE_CHARS)
from debench.report.runs import adjoint_flag, machine

KEYS = ("table", "model", "dataset", "mode", "settings_hash")  # one series: never averaged across configs


def epoch_curves(runs: pd.DataFrame, runs_dir: Path | None) -> pd.DataFrame | None:
    """Per-epoch rows (epoch, test_accuracy, nfe_*) of every run, from ``trajectory`` or ``epochs.csv``.

    Each row also carries the run's seed and the :data:`KEYS` columns it has.
    """
    frames = []
    for _, r in runs.iterrows():
        traj, run_dir = r.get("trajectory"), r.get("run_dir")
        if isinstance(traj, str) and traj.startswith("{"):
            ep = pd.DataFrame(json.loads(traj))
        elif runs_dir is not None and isinstance(run_dir, str) and (runs_dir / run_dir / "epochs.csv").exists():
            ep = pd.read_csv(runs_dir / run_dir / "epochs.csv")
        else:
            continue
        frames.append(ep.assign(seed=r["seed"], **{k: r[k] for k in KEYS if k in r}))
    return pd.concat(frames, ignore_index=True) if frames else None


def _keys(frame: pd.DataFrame) -> list[str]:
    return [k for k in KEYS if k in frame]


def _means(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per series (:data:`KEYS`)."""
    if rows.empty:
        return rows
    return rows.groupby(_keys(rows), as_index=False, dropna=False).mean(numeric_only=True)


def _classifier_means(ok: pd.DataFrame) -> pd.DataFrame:
    cls = ok[ok["task"] == "classify"] if "task" in ok else ok.iloc[:0]
    if cls.empty or "test_accuracy" not in cls:
        return cls.iloc[:0]
    return _means(cls)


def _scatter(mean: pd.DataFrame, x: str, xlabel: str, log: bool, note: str):
    m = mean.dropna(subset=[x, "test_accuracy"]) if x in mean else mean.iloc[:0]
    if m.empty:
        return empty_figure(note)
    parts = []
    for title, g in groups(m):
        g = g.assign(label=labels(g)).sort_values("label")
        parts.append((title, g.assign(entry=legend_groups(g["model"]) if len(g) > MAX_LEGEND else g["label"])))
    fig, axes = panels([max(PANEL_IN, legend_height(list(g["entry"].unique()))) for _, g in parts])
    for ax, (title, g) in zip(axes, parts):
        for i, (name, e) in enumerate(g.groupby("entry", sort=False)):
            ax.scatter(e[x], e["test_accuracy"], label=name, s=20, **style(i))
        if log:
            log_x(ax, g[x])
        ax.set(title=title, xlabel=xlabel, ylabel="test accuracy (%)")
        legend_beside(ax)
    return fig


def accuracy_vs_params(ok, runs_dir):
    mean = _classifier_means(ok)
    if not mean.empty:
        mean = mean.assign(params_m=mean["params"] / 1e6)
    return _scatter(mean, "params_m", "parameters (M)", True, "no classification runs")


def accuracy_vs_evals(ok, runs_dir):
    mean = _classifier_means(ok)
    if not mean.empty:
        evals = mean["evals_per_forward"] if "evals_per_forward" in mean else pd.Series(float("nan"), index=mean.index)
        if "eval_nfe_forward" in mean:
            evals = evals.fillna(mean["eval_nfe_forward"])
        mean = mean.assign(evals=evals)
    return _scatter(mean, "evals", "function evaluations per forward", False, "no evaluation counts")


def _curves(ok, runs_dir, column: str):
    cls = ok[ok["task"] == "classify"] if column == "test_accuracy" and "task" in ok else ok
    curves = epoch_curves(cls, runs_dir)
    if curves is None or column not in curves or curves[column].isna().all():
        return None
    return curves.dropna(subset=[column])


def _curve_panels(curves: pd.DataFrame, columns: list[str], ylabel: str):
    """One panel per table; per series the mean over seeds of ``columns`` per epoch (solid, dashed)."""
    keys = _keys(curves)
    mean = curves.groupby(keys + ["epoch"], as_index=False, dropna=False)[columns].mean()
    parts = []
    for title, g in groups(mean):
        series = g[keys].drop_duplicates()
        series = series.assign(label=labels(series)).sort_values("label")
        series = series.assign(entry=legend_groups(series["model"]) if len(series) > MAX_LEGEND else series["label"])
        parts.append((title, g.merge(series, on=keys), series))
    fig, axes = panels([max(PANEL_IN, legend_height(list(se["entry"].unique()))) for *_, se in parts])
    for ax, (title, g, series) in zip(axes, parts):
        entries = list(series["entry"].unique())
        for name, entry in zip(series["label"], series["entry"]):
            s = g[g["label"] == name].sort_values("epoch")
            first = series["entry"].eq(entry).idxmax() == series.index[series["label"].eq(name)][0]
            for col, ls in zip(columns, ("-", "--")):
                if s[col].notna().any():  # one epoch is a point, never a line
                    ax.plot(s["epoch"], s[col], ls=ls if len(s) > 1 else "none", lw=1, ms=4,
                            label=entry if ls == "-" and first else None, **style(entries.index(entry)))
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        epochs = sorted(g["epoch"].dropna().unique())
        if len(epochs) == 1:  # every run of the panel has one epoch: one honest tick, not 0.96 ... 1.04
            ax.set_xticks(epochs)
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        legend_beside(ax)
    return fig


def accuracy_vs_epoch(ok, runs_dir):
    curves = _curves(ok, runs_dir, "test_accuracy")
    if curves is None:
        return empty_figure("no per-epoch trajectories")
    return _curve_panels(curves, ["test_accuracy"], "test accuracy (%)")


def nfe_over_training(ok, runs_dir):
    cont = ok[ok["family"] == "continuous"] if "family" in ok else ok.iloc[:0]
    curves = _curves(cont, runs_dir, "nfe_forward")
    if curves is None:
        return empty_figure("no continuous-depth runs")
    cols = ["nfe_forward"] + (["nfe_backward"] if "nfe_backward" in curves else [])
    return _curve_panels(curves, cols, "NFE per training step")


def _bars(mean: pd.DataFrame, column: str, xlabel: str, note: str):
    m = mean.dropna(subset=[column]) if column in mean else mean.iloc[:0]
    if m.empty:
        return empty_figure(note)
    parts = [(title, g.assign(label=labels(g)).sort_values([column, "label"])) for title, g in groups(m)]
    fig, axes = panels([BAR_IN * len(g) + 0.1 for _, g in parts])
    for ax, (title, g) in zip(axes, parts):
        ax.barh(range(len(g)), g[column], height=0.7)
        ax.set_yticks(range(len(g)), g["label"])
        ax.set_ylim(-0.6, len(g) - 0.4)
        ax.set(title=title, xlabel=xlabel)
    return fig


def time_per_epoch(ok, runs_dir):
    """Seconds per epoch, one bar per series and machine: seeds timed on different machines are never
    averaged (the label names the machine where one series has several)."""
    rows = ok.dropna(subset=["epoch_time_s"]) if "epoch_time_s" in ok else ok.iloc[:0]
    if rows.empty:
        return _bars(rows, "epoch_time_s", "seconds per epoch", "no runs")
    rows = rows.assign(machine=[machine(r) for _, r in rows.iterrows()])
    mean = rows.groupby(_keys(rows) + ["machine"], as_index=False, dropna=False).mean(numeric_only=True)
    return _bars(mean, "epoch_time_s", "seconds per epoch", "no runs")


def activation_memory(ok, runs_dir):
    return _bars(_classifier_means(ok), "activation_memory_mb", "activation memory per step (MB)",
                 "no memory measurements")


def _beside(fig, ax):
    """A one-panel figure tall enough for its legend, which sits beside the axes."""
    legend_beside(ax)
    names = ax.get_legend_handles_labels()[1]
    fig.set_figheight(max(PANEL_IN, legend_height(names)) + 0.75)
    return fig


def depth_label(row) -> str:
    """The line a depth-family run belongs to, from its record alone: its scheme (or architecture)
    and, where the record has ``model_args.invertible``, whether the backward rebuilt activations.

    The registry's scheme text of a momentum ResNet says "invertible" whatever the run's arguments;
    that word is dropped from the scheme and the run's own ``invertible`` flag is said instead.
    """
    scheme = row.get("scheme")
    base = str(scheme) if isinstance(scheme, str) and scheme.strip() else stem(str(row["model"]))
    base = re.sub(r"\s*\(\s*\)", "", re.sub(r",?\s*\binvertible\b,?", "", base)).strip()
    flag = row.get("model_args.invertible")
    if isinstance(flag, str):
        flag = {"true": True, "false": False}.get(flag.strip().lower())
    if flag is not None and not pd.isna(flag):
        base += ": invertible backward" if bool(flag) else ": plain autograd (invertible: False)"
    return base


def memory_vs_depth(ok, runs_dir):
    """Activation memory per example against the recorded depth (``model_meta.depth``), one line per
    scheme, invertibility (the record's ``model_args.invertible``) and dataset; below, the
    continuous-depth models' memory with and without the adjoint as bars (they have no depth)."""
    need = {"activation_memory_mb", "batch_size"}
    rows = ok.dropna(subset=list(need)) if need <= set(ok.columns) else ok.iloc[:0]
    rows = rows.assign(per_example=rows["activation_memory_mb"] / rows["batch_size"]) if not rows.empty else rows
    deep = rows.dropna(subset=["model_meta.depth"]) if "model_meta.depth" in rows and not rows.empty else rows.iloc[:0]
    deep = deep[deep["family"] == "discrete"] if "family" in deep else deep.iloc[:0]
    if not deep.empty:
        deep = deep.assign(line=[depth_label(r) for _, r in deep.iterrows()])
        if deep["dataset"].nunique() > 1:
            deep = deep.assign(line=deep["line"] + " / " + deep["dataset"].astype(str))
    adj = rows["model_args.adjoint"] if "model_args.adjoint" in rows and not rows.empty else None
    odes = rows[adj.notna()] if adj is not None else rows.iloc[:0]
    if not odes.empty:
        odes = odes.assign(bar=[f"{m} / {d}: {'with' if adjoint_flag(f) == 'yes' else 'without'} adjoint"
                                for m, d, f in zip(odes["model"], odes["dataset"], odes["model_args.adjoint"])])
        odes = odes.groupby("bar", as_index=False)["per_example"].mean().sort_values("bar")
    if deep.empty and odes.empty:
        return empty_figure("no activation-memory measurements of depth families")
    lines = sorted(deep["line"].unique()) if not deep.empty else []
    heights = ([max(PANEL_IN, legend_height(lines))] if lines else []) + ([BAR_IN * len(odes) + 0.1] if len(odes) else [])
    fig, axes = panels(heights)
    if lines:
        ax = axes[0]
        for i, line in enumerate(lines):
            g = deep[deep["line"] == line]
            g = g.groupby(pd.to_numeric(g["model_meta.depth"]).astype(int))["per_example"].mean()
            ax.plot(g.index, g.values, lw=1, ls="-" if len(g) > 1 else "none", label=line, **style(i))
        ax.set(title="discrete depth families", xlabel="depth (layers, model_meta.depth of the record)",
               ylabel="activation memory\nper example (MB)")
        legend_beside(ax)
    if len(odes):
        ax = axes[-1]
        ax.barh(range(len(odes)), odes["per_example"], height=0.7,
                color=["#1f77b4" if b.endswith(": with adjoint") else "#aaaaaa" for b in odes["bar"]])
        ax.set_yticks(range(len(odes)), odes["bar"])
        ax.yaxis.tick_right()  # on the side of the legend above, so both axes keep the width between
        ax.set_ylim(-0.6, len(odes) - 0.4)
        ax.set(title="continuous-depth models (no depth):\nwith adjoint (blue), without (gray)",
               xlabel="activation memory per example (MB)")
    return fig


def budget_runs(ok: pd.DataFrame) -> pd.DataFrame:
    """Classification runs trained at a paper's iteration budget (the record's ``protocol.iterations``)
    in a comparable preset (a reduced preset's few steps are no paper's budget)."""
    if ok.empty or "protocol.iterations" not in ok:
        return ok.iloc[:0]
    keep = pd.to_numeric(ok["protocol.iterations"], errors="coerce").notna()
    if "task" in ok:
        keep &= ok["task"].eq("classify")
    if "comparable" in ok:
        keep &= ok["comparable"].map(lambda v: str(v).lower() in ("true", "1", "1.0"))
    return ok[keep]


def _milestones(value) -> list[float]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else []


DETAIL_SERIES = 3  # a panel of at most this many models draws every seed's test and training error


def error_vs_iteration(ok, runs_dir):
    """Error against iterations of the runs at a paper's iteration budget, one panel per survey table.

    A panel of at most :data:`DETAIL_SERIES` models (the CPU campaign's ResNet-20) draws each seed:
    test error solid, training error dashed, one colour per seed. A larger panel (the survey on a
    GPU) draws each model's test error, mean over seeds. Dotted verticals mark the learning-rate drops
    (``protocol.milestones``) where the panel's runs share them. Rows without per-epoch ``step`` are left out.
    """
    runs = budget_runs(ok)
    curves = epoch_curves(runs, runs_dir) if not runs.empty else None
    if curves is None or "step" not in curves or curves["step"].isna().all() or "test_accuracy" not in curves:
        return empty_figure("no runs at a paper's iteration budget with per-epoch steps")
    curves = curves.dropna(subset=["step", "test_accuracy"])
    curves = curves.assign(test_error=100 - curves["test_accuracy"], kilo=curves["step"] / 1e3)
    if "train_accuracy" in curves:
        curves = curves.assign(train_error=100 - curves["train_accuracy"])
    keys = _keys(curves)
    parts = []
    for title, g in groups(curves):
        series = g[keys].drop_duplicates()
        series = series.assign(label=labels(series)).sort_values("label")
        detail = len(series) <= DETAIL_SERIES
        if detail:
            entries = [f"{lab}, seed {s}" for lab in series["label"] for s in sorted(g.merge(series[series["label"] == lab])["seed"].unique())]
            entries += ["test error", "train error"]
        else:
            series = series.assign(entry=legend_groups(series["model"]) if len(series) > MAX_LEGEND else series["label"])
            entries = list(series["entry"].unique())
        parts.append((title, g.merge(series, on=keys), series, detail, entries))
    fig, axes = panels([max(PANEL_IN, legend_height(e)) for *_, e in parts])
    for ax, (title, g, series, detail, entries) in zip(axes, parts):
        if detail:
            colour = 0
            for lab in series["label"]:
                for s, run in g[g["label"] == lab].groupby("seed"):
                    run = run.sort_values("step")
                    color = style(colour)["color"]  # lines only: a marker per epoch would hide the curve
                    ax.plot(run["kilo"], run["test_error"], lw=1.2, color=color, label=entries[colour])
                    if "train_error" in run and run["train_error"].notna().any():
                        ax.plot(run["kilo"], run["train_error"], lw=0.8, ls="--", color=color)
                    colour += 1
            ax.plot([], [], color="#444444", lw=1.2, label="test error")
            ax.plot([], [], color="#444444", lw=0.8, ls="--", label="train error")
        else:
            mean = g.groupby(["label", "entry", "step"], as_index=False)[["kilo", "test_error"]].mean()
            names = list(series["entry"].unique())
            seen: set[str] = set()
            for lab, entry in zip(series["label"], series["entry"]):
                m = mean[mean["label"] == lab].sort_values("step")
                ax.plot(m["kilo"], m["test_error"], lw=1, color=style(names.index(entry))["color"],
                        label=None if entry in seen else entry)
                seen.add(entry)
        rows = runs[runs["table"] == g["table"].iloc[0]] if "table" in runs and "table" in g else runs
        drops = {tuple(_milestones(v)) for v in rows.get("protocol.milestones", pd.Series(dtype=object))}
        if len(drops) == 1:
            for m in next(iter(drops)):
                ax.axvline(m / 1e3, color="#888888", lw=0.8, ls=":")
        budgets = sorted({int(v) for v in pd.to_numeric(rows["protocol.iterations"], errors="coerce").dropna()})
        budget = f"{budgets[0]:,} iterations" if len(budgets) == 1 else "paper budgets"
        top = float(g["test_error"].quantile(0.98))
        ax.set_ylim(0, min(100.0, max(top, 1.0) * 1.1))
        ax.set(title=textwrap.fill(f"{title}: {budget}", TITLE_CHARS, break_on_hyphens=False),
               xlabel="iterations (thousands)", ylabel="error (%)")
        legend_beside(ax)
    return fig


def robustness(ok, runs_dir):
    cols = [c for c in ok.columns if re.fullmatch(r"acc_perturb_[0-9.e+-]+", c)]
    rows = ok.dropna(subset=cols, how="all") if cols else ok.iloc[:0]
    if rows.empty:
        return empty_figure("no perturbation measurements (acc_perturb_<sigma>)")
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 2.0), layout="constrained")
    sig = sorted(cols, key=lambda c: float(c.removeprefix("acc_perturb_")))
    keys = _keys(rows)
    series = rows[keys].drop_duplicates()
    series = series.assign(label=labels(series)).sort_values("label")
    for i, (name, g) in enumerate(rows.merge(series, on=keys).groupby("label", sort=False)):
        y = g[sig].apply(pd.to_numeric, errors="coerce").mean()
        sigma = pd.to_numeric(g["model_args.sigma"], errors="coerce") if "model_args.sigma" in g else None
        ode = sigma is not None and bool((sigma == 0).all())  # the record's noise: an SDE with sigma 0 is its ODE
        ax.plot([float(c.removeprefix("acc_perturb_")) for c in sig], y.values, lw=1,
                ls="--" if ode else "-", label=name, **style(i))
    ax.set_xlabel("perturbation strength sigma (normalized-input units)")
    ax.set_ylabel("test accuracy (%)")
    return _beside(fig, ax)


def fractional_cost(ok, runs_dir):
    """Activation memory per example and seconds per epoch of the fractional models against their
    Grünwald-Letnikov steps (the record's ``model_args.steps`` and ``model_args.alpha``), one line
    per order and dataset: every past state enters every step, so memory grows with the steps. The
    fractional runs are the records with ``stored_states`` (the past states a forward keeps); other
    models have ``steps`` and ``alpha`` arguments too (the Lévy SDEs' stability index)."""
    need = ["stored_states", "model_args.steps", "model_args.alpha", "activation_memory_mb", "batch_size"]
    rows = ok.dropna(subset=need) if set(need) <= set(ok.columns) else ok.iloc[:0]
    if rows.empty:
        return empty_figure("no fractional-model runs (model_args.steps and alpha)")
    rows = rows.assign(per_example=rows["activation_memory_mb"] / rows["batch_size"],
                       steps=pd.to_numeric(rows["model_args.steps"]).astype(int),
                       alpha=pd.to_numeric(rows["model_args.alpha"]))
    fig, axes = plt.subplots(2, 1, figsize=(WIDTH_IN, 2 * PANEL_IN + 0.9), layout="constrained")
    for ax, (col, label) in zip(axes, (("per_example", "activation memory\nper example (MB)"),
                                       ("epoch_time_s", "seconds per epoch"))):
        for i, ((alpha, ds), g) in enumerate(rows.dropna(subset=[col]).groupby(["alpha", "dataset"])):
            g = g.groupby("steps")[col].mean()
            ax.plot(g.index, g.values, lw=1, label=f"alpha={alpha:g} / {ds}", **style(i))
        ax.set_xlabel("Grünwald-Letnikov steps per stage")
        ax.set_ylabel(label)
        if ax.get_legend_handles_labels()[1]:
            legend_beside(ax)
    return fig
