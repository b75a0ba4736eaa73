"""The ``future`` report section's plot: cost of the fractional scheme against its number of steps.

:func:`fractional_cost_vs_steps` has the signature of the figures in :mod:`debench.report.figures`
(run rows of finished runs, the runs folder) so the report's plot registry can call it as it calls
them. It draws, for the ``frac_ode_*_n<steps>`` runs, the measured activation memory per example
and the training time per epoch against the steps, one line per model prefix and dataset, with
the other ``future`` rows as horizontal references.
"""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

STEPS = re.compile(r"(frac_ode_\w+?)_n(\d+)")
PANELS = (("activation_memory_mb", "activation memory per example (MB)"), ("epoch_time_s", "training s/epoch"))


def fractional_cost_vs_steps(ok: pd.DataFrame, runs_dir=None):
    """Activation memory per example and time per epoch of the fractional models against steps.

    Args:
        ok: run rows with status ``ok`` (columns ``model``, ``dataset``, ``table``,
            ``activation_memory_mb``, ``batch_size``, ``epoch_time_s``).
        runs_dir: unused (the figures' common signature).

    Returns:
        A matplotlib figure; it says so when there are no fractional runs.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    need = {"model", "dataset", "activation_memory_mb", "batch_size", "epoch_time_s"}
    rows = ok[ok["model"].astype(str).str.fullmatch(STEPS)] if need <= set(ok.columns) else ok.iloc[:0]
    if rows.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no fractional-model runs (frac_ode_*_n<steps>)", ha="center", va="center",
                    fontsize=8, transform=ax.transAxes)
            ax.set_axis_off()
        return fig
    rows = rows.assign(activation_memory_mb=rows["activation_memory_mb"] / rows["batch_size"],
                       prefix=rows["model"].str.extract(STEPS)[0],
                       steps=rows["model"].str.extract(STEPS)[1].astype(int))
    others = ok[(ok.get("table") == "future") & ~ok["model"].astype(str).str.fullmatch(STEPS)] \
        if "table" in ok.columns else ok.iloc[:0]
    for ax, (col, label) in zip(axes, PANELS):
        for (prefix, ds), g in rows.groupby(["prefix", "dataset"]):
            g = g.groupby("steps")[col].mean()
            ax.plot(g.index, g.values, marker="o", lw=1, label=f"{prefix} / {ds}")
        for i, ((model, ds), g) in enumerate(others.groupby(["model", "dataset"])):
            value = g[col].mean() / (g["batch_size"].mean() if col == "activation_memory_mb" else 1)
            ax.axhline(value, ls="--", lw=0.8, color=f"C{i + 3}", label=f"{model} / {ds}")
        ax.set_xlabel("Grünwald-Letnikov steps per stage")
        ax.set_ylabel(label)
        ax.legend(fontsize=6)
    return fig
