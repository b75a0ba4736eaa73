"""One drawing function per plot of :data:`debench.report.plots.PLOTS`: ``(ok_runs, runs_dir) -> Figure``.

``ok_runs`` holds the rows of runs that finished (status ``ok``); ``runs_dir`` the run folders,
or ``None`` when the report is rebuilt from ``runs.csv`` alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pandas as pd

from debench.report.runs import adjoint_flag

_NO_ARTIFACTS = "model artifacts are not stored in runs.csv:\nrebuild from the run folders to see them"


def empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def epoch_curves(runs: pd.DataFrame, runs_dir: Path | None) -> pd.DataFrame | None:
    """Per-epoch rows (epoch, test_accuracy, nfe_*) of every run, from ``trajectory`` or ``epochs.csv``."""
    frames = []
    for _, r in runs.iterrows():
        traj, run_dir = r.get("trajectory"), r.get("run_dir")
        if isinstance(traj, str) and traj.startswith("{"):
            ep = pd.DataFrame(json.loads(traj))
        elif runs_dir is not None and isinstance(run_dir, str) and (runs_dir / run_dir / "epochs.csv").exists():
            ep = pd.read_csv(runs_dir / run_dir / "epochs.csv")
        else:
            continue
        frames.append(ep.assign(model=r["model"], dataset=r["dataset"], seed=r["seed"]))
    return pd.concat(frames, ignore_index=True) if frames else None


def _classifier_means(ok: pd.DataFrame) -> pd.DataFrame:
    cls = ok[ok["task"] == "classify"] if "task" in ok else ok.iloc[:0]
    if cls.empty or "test_accuracy" not in cls:
        return cls.iloc[:0]
    return cls.groupby(["model", "dataset"], as_index=False).mean(numeric_only=True)


def _scatter(mean: pd.DataFrame, x: str, xlabel: str, log: bool, note: str):
    fig, ax = plt.subplots(figsize=(6, 4))
    m = mean.dropna(subset=[x, "test_accuracy"]) if x in mean else mean.iloc[:0]
    if m.empty:
        empty(ax, note)
        return fig
    for ds, g in m.groupby("dataset"):
        ax.scatter(g[x], g["test_accuracy"], label=ds, s=14)
        for _, r in g.iterrows():
            ax.annotate(r["model"], (r[x], r["test_accuracy"]), fontsize=5)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)
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


def accuracy_vs_epoch(ok, runs_dir):
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = _curves(ok, runs_dir, "test_accuracy")
    if curves is None:
        empty(ax, "no per-epoch trajectories")
        return fig
    for (model, ds), g in curves.groupby(["model", "dataset"]):
        g = g.groupby("epoch")["test_accuracy"].mean()
        ax.plot(g.index, g.values, label=f"{model} / {ds}", lw=1, marker="." if len(g) < 3 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=4, ncol=3)
    return fig


def nfe_over_training(ok, runs_dir):
    fig, ax = plt.subplots(figsize=(6, 4))
    cont = ok[ok["family"] == "continuous"] if "family" in ok else ok.iloc[:0]
    curves = _curves(cont, runs_dir, "nfe_forward")
    if curves is None:
        empty(ax, "no continuous-depth runs")
        return fig
    for (model, ds), g in curves.groupby(["model", "dataset"]):
        cols = ["nfe_forward"] + (["nfe_backward"] if "nfe_backward" in g else [])
        g = g.groupby("epoch")[cols].mean()
        line = ax.plot(g.index, g["nfe_forward"], label=f"{model} / {ds}", lw=1, marker=".")[0]
        if "nfe_backward" in g:
            ax.plot(g.index, g["nfe_backward"], ls="--", color=line.get_color(), lw=1, marker="x")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NFE per training step")
    ax.legend(fontsize=5, ncol=2)
    return fig


def time_per_epoch(ok, runs_dir):
    fig, ax = plt.subplots(figsize=(6, 5))
    if ok.empty or "epoch_time_s" not in ok:
        empty(ax, "no runs")
        return fig
    t = ok.groupby("model", as_index=False)["epoch_time_s"].mean().dropna().sort_values(["epoch_time_s", "model"])
    ax.barh(t["model"], t["epoch_time_s"])
    ax.set_xlabel("seconds per epoch")
    ax.tick_params(axis="y", labelsize=4)
    return fig


def activation_memory(ok, runs_dir):
    fig, ax = plt.subplots(figsize=(6, 5))
    mean = _classifier_means(ok)
    if mean.empty or "activation_memory_mb" not in mean or mean["activation_memory_mb"].isna().all():
        empty(ax, "no memory measurements")
        return fig
    m = mean.dropna(subset=["activation_memory_mb"]).sort_values(["activation_memory_mb", "model"])
    ax.barh(m["model"] + " / " + m["dataset"], m["activation_memory_mb"])
    ax.set_xlabel("activation memory per step (MB)")
    ax.tick_params(axis="y", labelsize=4)
    return fig


def memory_vs_depth(ok, runs_dir):
    """Activation memory per example against the recorded depth (``model_meta.depth``), per scheme."""
    fig, ax = plt.subplots(figsize=(6, 4))
    need = {"activation_memory_mb", "batch_size"}
    rows = ok.dropna(subset=list(need)) if need <= set(ok.columns) else ok.iloc[:0]
    rows = rows.assign(per_example=rows["activation_memory_mb"] / rows["batch_size"]) if not rows.empty else rows
    drawn = False
    deep = rows.dropna(subset=["model_meta.depth"]) if "model_meta.depth" in rows and not rows.empty else rows.iloc[:0]
    deep = deep[deep["family"] == "discrete"] if "family" in deep else deep.iloc[:0]
    label = deep["scheme"].fillna("") if "scheme" in deep else deep["family"]
    for (scheme, ds), g in deep.groupby([label, "dataset"]) if not deep.empty else []:
        g = g.groupby(pd.to_numeric(g["model_meta.depth"]).astype(int))["per_example"].mean()
        ax.plot(g.index, g.values, marker="o", lw=1, label=f"{scheme} / {ds}")
        drawn = True
    adj = rows["model_args.adjoint"] if "model_args.adjoint" in rows and not rows.empty else None
    odes = rows[adj.notna()] if adj is not None else rows.iloc[:0]
    for (model, ds, flag), g in odes.groupby(["model", "dataset", "model_args.adjoint"]) if not odes.empty else []:
        yes = adjoint_flag(flag) == "yes"
        ax.axhline(g["per_example"].mean(), ls="--" if yes else ":", lw=1,
                   color="C3" if yes else "C4", label=f"ODE-Net {'with' if yes else 'without'} "
                   f"adjoint ({model} / {ds})")
        drawn = True
    if not drawn:
        empty(ax, "no activation-memory measurements of depth families")
        return fig
    ax.set_xlabel("depth (layers, model_meta.depth of the record)")
    ax.set_ylabel("activation memory per example (MB)")
    ax.legend(fontsize=6)
    return fig


def robustness(ok, runs_dir):
    fig, ax = plt.subplots(figsize=(6, 4))
    cols = [c for c in ok.columns if re.fullmatch(r"acc_perturb_[0-9.e+-]+", c)]
    rows = ok.dropna(subset=cols, how="all") if cols else ok.iloc[:0]
    if rows.empty:
        empty(ax, "no perturbation measurements (acc_perturb_<sigma>)")
        return fig
    sig = sorted(cols, key=lambda c: float(c.removeprefix("acc_perturb_")))
    for (model, ds), g in rows.groupby(["model", "dataset"]):
        y = g[sig].apply(pd.to_numeric, errors="coerce").mean()
        sigma = pd.to_numeric(g["model_args.sigma"], errors="coerce") if "model_args.sigma" in g else None
        ode = sigma is not None and bool((sigma == 0).all())  # the record's noise: an SDE with sigma 0 is its ODE
        ax.plot([float(c.removeprefix("acc_perturb_")) for c in sig], y.values, marker="o", lw=1,
                ls="--" if ode else "-", label=f"{model} / {ds}")
    ax.set_xlabel("perturbation strength sigma (normalized-input units)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=6)
    return fig


def artifact_images(ok: pd.DataFrame, runs_dir: Path | None, table: str) -> list[tuple[str, Path]]:
    """``(title, png path)`` of every PNG artifact of the table's runs that exists on disk."""
    if runs_dir is None or ok.empty or "artifacts" not in ok or "table" not in ok:
        return []
    out = []
    for _, r in ok[(ok["table"] == table) & ok["artifacts"].notna()].iterrows():
        for rel in json.loads(r["artifacts"]) if str(r["artifacts"]).startswith("[") else []:
            p = runs_dir / str(r["run_dir"]) / rel
            if p.suffix == ".png" and p.is_file():
                out.append((f"{r['model']} / {r['dataset']} / seed {r['seed']}: {p.stem}", p))
    return sorted(out, key=lambda t: (t[0].split(" / seed ")[1], t[0]))


def _tiles(ok, runs_dir, table: str, what: str, limit: int = 12):
    images = artifact_images(ok, runs_dir, table)[:limit]
    if not images:
        fig, ax = plt.subplots(figsize=(6, 3))
        empty(ax, _NO_ARTIFACTS if runs_dir is None and not ok.empty else f"no {what} (no runs of this family)")
        return fig
    cols = min(3, len(images))
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, path) in zip(axes.flat, images):
        ax.imshow(mpimg.imread(path))
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def flow_samples(ok, runs_dir):
    return _tiles(ok, runs_dir, "flows", "density plots")


def latent_sde_paths(ok, runs_dir):
    return _tiles(ok, runs_dir, "latent_sde", "sample paths")


def generative_samples(ok, runs_dir):
    return _tiles(ok, runs_dir, "generative", "samples")
