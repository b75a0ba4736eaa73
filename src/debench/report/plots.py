"""Plots drawn from run rows alone (matplotlib, Agg, PNG), each with a caption and a survey section.

:data:`PLOTS` is the registry: name -> :class:`PlotSpec` (caption, survey section, models and
metric shown). The Snakemake report rule, the HTML report and the caption files under
``workflow/report/`` all follow it. Per-epoch curves come from the ``trajectory`` column of
``runs.csv`` (or, for old rows, the run's ``epochs.csv``); model artifacts (density plots,
sample grids) from the run folders when they are at hand, else the figure says they are not.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from debench.report import figures, layout  # noqa: E402
from debench.track.atomic import atomic_write_bytes  # noqa: E402


@dataclass(frozen=True)
class PlotSpec:
    caption: str
    section: str  # a table name of debench.report.tables, or "overview"
    models: str
    metric: str


PLOTS = {
    "accuracy_vs_params": PlotSpec(
        "Test accuracy against trainable parameters, one panel per survey table; one point per model and "
        "dataset (mean over seeds that finished). A panel of more than 12 models colours them by architecture "
        "(the model name without its depth; the count in brackets).", "overview", "all classifiers", "test accuracy, parameters"),
    "accuracy_vs_evals": PlotSpec(
        "Test accuracy against function evaluations per forward pass (depth x stages for discrete models, "
        "measured NFE for continuous ones), one panel per survey table; more than 12 models are coloured by "
        "architecture.", "overview", "all classifiers",
        "test accuracy, evaluations"),
    "accuracy_vs_epoch": PlotSpec(
        "Test accuracy over training, mean over seeds, one line per model and one panel per survey table "
        "(from the runs' stored trajectories); a run of one epoch is a point. More than 12 models in a panel "
        "are coloured by architecture.", "overview", "all classifiers", "test accuracy per epoch"),
    "time_per_epoch": PlotSpec(
        "Training wall time per epoch (evaluation excluded), mean over seeds; one panel per survey table, "
        "one bar per model and dataset.", "overview", "all models",
        "seconds per epoch"),
    "error_vs_iteration": PlotSpec(
        "Runs at a paper's iteration budget (the record's protocol.iterations): test error (solid) and training "
        "error on the epoch's augmented mini-batches in training mode (dashed) against iterations, one colour per "
        "seed; dotted verticals at the learning-rate drops (protocol.milestones). He et al. 2016 draw these "
        "curves for ResNet-20 to 110 on CIFAR-10 in their Figure 6 (middle panel; bold lines test error, dashed "
        "training error) but print no values for them: the curve is read beside that figure, not scored. The "
        "scored number is the final test error in the table above.", "discrete", "ResNets at He et al.'s protocol",
        "test and training error per iteration"),
    "activation_memory": PlotSpec(
        "Autograd's saved bytes for one training step at the experiment's batch size, mean over seeds; one "
        "panel per survey table, one bar per model and dataset.", "discrete",
        "all classifiers", "activation memory"),
    "memory_vs_depth": PlotSpec(
        "Measured activation memory per training example against depth (the record's model_meta.depth), one "
        "line per scheme; a run's invertibility is its record's model_args.invertible. The survey expects "
        "linear growth for ResNet and for plain-autograd runs, flat lines for RevNet and Momentum ResNets with "
        "the invertible backward. Below: continuous-depth models, which have no depth, with and without the "
        "adjoint.", "discrete",
        "ResNet, RevNet, Momentum ResNet, ODE-Net", "activation memory per example"),
    "nfe_over_training": PlotSpec(
        "Forward (solid) and backward (dashed) function evaluations per training step, mean per epoch; one "
        "panel per survey table, its legend beside the curves.",
        "neural_ode", "continuous-depth models", "NFE per step"),
    "robustness": PlotSpec(
        "Test accuracy under Gaussian input perturbations of strength sigma: Neural SDEs (solid) against "
        "their ODE counterparts (dashed), mean over seeds.", "neural_sde", "Neural SDE, Neural ODE",
        "accuracy vs sigma"),
    "fractional_cost": PlotSpec(
        "Fractional Neural ODEs: activation memory per example and training time per epoch against the "
        "Grünwald-Letnikov steps per stage (every past state enters every step), one line per order.",
        "future", "fractional Neural ODE", "memory, time vs steps"),
    "flow_samples": PlotSpec(
        "What the flows learned: density and samples (2-D toys) and sample grids (MNIST), as written by "
        "each model after training (seed 0 first).", "flows", "FFJORD, RNODE", "density, samples"),
    "latent_sde_paths": PlotSpec(
        "Latent SDE: held-out series with posterior and prior sample paths, as written by the model.",
        "latent_sde", "latent SDE", "sample paths"),
    "generative_samples": PlotSpec(
        "Samples of the score SDEs and DDPM, one panel per model and sampler (2-D scatter or image grid).",
        "generative", "score SDEs, DDPM", "samples"),
}


def draw(name: str, ok: pd.DataFrame, runs_dir: Path | None, reduced: bool = False):
    """The figure of plot ``name`` from finished runs' rows, in the report's layout (:mod:`debench.report.layout`).

    Args:
        name: a key of :data:`PLOTS`.
        ok: rows of the runs that finished.
        runs_dir: the run folders, or ``None``.
        reduced: the runs come from a reduced preset; the title says so.

    Returns:
        A matplotlib figure :data:`debench.report.layout.WIDTH_IN` wide.
    """
    with plt.rc_context(layout.RC):
        fig = getattr(figures, name)(ok, runs_dir)
        if reduced:
            fig.suptitle("reduced preset: not comparable with any paper", color="#a06000")
    return fig


def save(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG at the layout's DPI, its size unchanged (no tight crop), with no timestamps."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=layout.DPI, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def draw_all(runs: pd.DataFrame, runs_dir: Path | None, out: Path, empty: set[str] | None = None) -> dict[str, Path]:
    """Draw every plot of :data:`PLOTS` into ``out/<name>.png``; a plot without data says so.

    Plots of runs from a reduced preset (``comparable: false``) carry that in their title.

    Args:
        empty: when given, the names of the plots that hold no data are added to it.
    """
    out.mkdir(parents=True, exist_ok=True)
    runs = runs[runs["kind"].ne("measure")] if "kind" in runs else runs  # in tables/measurements.* instead
    ok = runs[runs["status"] == "ok"].copy() if not runs.empty else pd.DataFrame(
        columns=["model", "dataset", "seed", "task", "table", "status"])
    reduced = "comparable" in ok and not ok["comparable"].fillna(False).astype(bool).all()
    paths = {}
    for name in PLOTS:
        fig = draw(name, ok, runs_dir, reduced)
        if empty is not None and fig.get_label() == layout.EMPTY:
            empty.add(name)
        paths[name] = save(fig, out / f"{name}.png")
    return paths
