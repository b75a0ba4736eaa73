"""Plots drawn from runs.csv and the per-run epoch CSVs (matplotlib, Agg, PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from debench.track.atomic import atomic_write_bytes  # noqa: E402

PLOTS = {
    "accuracy_vs_params": "Test accuracy against trainable parameters; one point per model and dataset "
                          "(mean over seeds that finished).",
    "accuracy_vs_evals": "Test accuracy against function evaluations per forward pass: depth x stages for "
                         "discrete models, measured NFE for continuous ones.",
    "accuracy_vs_epoch": "Test accuracy over training, mean over seeds, one line per model.",
    "activation_memory": "Autograd's saved bytes for one training step at the experiment's batch size.",
    "nfe_over_training": "Forward (solid) and backward (dashed) function evaluations per training step, "
                         "mean per epoch.",
    "time_per_epoch": "Training wall time per epoch (evaluation excluded), mean over seeds.",
}


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_all(runs: pd.DataFrame, runs_dir: Path | None, out: Path) -> dict[str, Path]:
    """Draw every plot of :data:`PLOTS` into ``out``; a plot without data says so."""
    out.mkdir(parents=True, exist_ok=True)
    ok = runs[runs["status"] == "ok"] if not runs.empty else runs
    cls = ok[ok["task"] == "classify"] if not ok.empty else ok
    mean = cls.groupby(["model", "dataset"], as_index=False).mean(numeric_only=True) if not cls.empty else cls
    paths = {}

    fig, ax = plt.subplots(figsize=(6, 4))
    if not mean.empty:
        for ds, g in mean.groupby("dataset"):
            ax.scatter(g["params"] / 1e6, g["test_accuracy"], label=ds)
            for _, r in g.iterrows():
                ax.annotate(r["model"], (r["params"] / 1e6, r["test_accuracy"]), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("parameters (M)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7)
    else:
        _empty(ax, "no classification runs")
    _save(fig, paths.setdefault("accuracy_vs_params", out / "accuracy_vs_params.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    if not mean.empty:
        evals = mean["evals_per_forward"] if "evals_per_forward" in mean else pd.Series(index=mean.index, dtype=float)
        if "eval_nfe_forward" in mean:
            evals = evals.fillna(mean["eval_nfe_forward"])
        m = mean.assign(evals=evals).dropna(subset=["evals"])
        for ds, g in m.groupby("dataset"):
            ax.scatter(g["evals"], g["test_accuracy"], label=ds)
            for _, r in g.iterrows():
                ax.annotate(r["model"], (r["evals"], r["test_accuracy"]), fontsize=6)
        ax.set_xlabel("function evaluations per forward")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7) if not m.empty else _empty(ax, "no evaluation counts")
    else:
        _empty(ax, "no classification runs")
    _save(fig, paths.setdefault("accuracy_vs_evals", out / "accuracy_vs_evals.png"))

    curves = _epoch_curves(cls, runs_dir)
    fig, ax = plt.subplots(figsize=(6, 4))
    if curves is not None and "test_accuracy" in curves:
        for model, g in curves.dropna(subset=["test_accuracy"]).groupby("model"):
            g = g.groupby("epoch")["test_accuracy"].mean()
            ax.plot(g.index, g.values, label=model, lw=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=5, ncol=2)
    else:
        _empty(ax, "no epoch logs")
    _save(fig, paths.setdefault("accuracy_vs_epoch", out / "accuracy_vs_epoch.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    if not mean.empty and mean["activation_memory_mb"].notna().any():
        m = mean.dropna(subset=["activation_memory_mb"]).sort_values("activation_memory_mb")
        ax.barh(m["model"] + " / " + m["dataset"], m["activation_memory_mb"])
        ax.set_xlabel("activation memory per step (MB)")
        ax.tick_params(axis="y", labelsize=5)
    else:
        _empty(ax, "no memory measurements")
    _save(fig, paths.setdefault("activation_memory", out / "activation_memory.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    if curves is not None and "nfe_forward" in curves and curves["nfe_forward"].notna().any():
        for model, g in curves.dropna(subset=["nfe_forward"]).groupby("model"):
            g = g.groupby("epoch")[["nfe_forward"] + (["nfe_backward"] if "nfe_backward" in g else [])].mean()
            line = ax.plot(g.index, g["nfe_forward"], label=model, lw=1)[0]
            if "nfe_backward" in g:
                ax.plot(g.index, g["nfe_backward"], ls="--", color=line.get_color(), lw=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("NFE per training step")
        ax.legend(fontsize=6)
    else:
        _empty(ax, "no continuous-depth runs")
    _save(fig, paths.setdefault("nfe_over_training", out / "nfe_over_training.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    t = ok.groupby("model", as_index=False)["epoch_time_s"].mean() if not ok.empty else ok
    if not t.empty:
        t = t.sort_values("epoch_time_s")
        ax.barh(t["model"], t["epoch_time_s"])
        ax.set_xlabel("seconds per epoch")
        ax.tick_params(axis="y", labelsize=5)
    else:
        _empty(ax, "no runs")
    _save(fig, paths.setdefault("time_per_epoch", out / "time_per_epoch.png"))
    return paths


def _epoch_curves(runs: pd.DataFrame, runs_dir: Path | None) -> pd.DataFrame | None:
    if runs_dir is None or runs.empty:
        return None
    frames = []
    for _, r in runs.iterrows():
        path = runs_dir / r["run_dir"] / "epochs.csv"
        if path.exists():
            frames.append(pd.read_csv(path).assign(model=r["model"], dataset=r["dataset"], seed=r["seed"]))
    return pd.concat(frames, ignore_index=True) if frames else None


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
