"""The survey's comparison tables as data: title, what each compares, and its columns.

A column is ``(key, label, digits)`` (negative digits: significant digits): ``key`` names a column of the summary (a metric's mean
over the seeds that finished, or a derived value); a key ending in ``*`` expands to every
summary column with that prefix (``acc_perturb_*``: one column per perturbation strength);
``published_<metric>`` is the published number of a metric other than the primary one for the
row's model and dataset. Every table leads with model, dataset and mode and ends with the
primary metric's statistics, the published number, the tolerance, the equivalence verdict and why. ``config`` is
empty unless one model has runs under several config hashes: then each hash is its own row and
the cell says what differs (runs of different configs are never averaged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEAD = [("model", "model", 0), ("dataset", "dataset", 0), ("mode", "mode", 0), ("config", "config", 0)]
TAIL = [("metric", "metric", 0), ("result", "mean ± std", 2), ("n", "n", 0), ("ci95", "95% CI", 2),
        ("published_cell", "published", 2), ("difference", "diff", 2), ("n_failed", "failed", 0),
        ("tolerance", "tolerance", 0), ("verdict", "verdict", 0), ("verdict_reason", "why", 0)]


@dataclass(frozen=True)
class TableSpec:
    title: str
    note: str
    columns: tuple[tuple[str, str, int], ...]
    models: str = ""
    metric: str = ""


TABLE_SPECS = {
    "discrete": TableSpec(
        "Discrete DE-inspired architectures",
        "Test error (%) of ResNets as forward Euler and their multistep, reversible, momentum, PDE and "
        "higher-order variants. Paper mode: each model under its paper's protocol; common mode: one shared "
        "protocol, never compared with a paper.",
        (("params", "params (M)", -3), ("evals_per_forward", "evals/fwd", 0),
         ("activation_memory_mb", "act. mem (MB)", 1), ("epoch_time_s", "s/epoch", 2)),
        "ResNet, LM-ResNet, RevNet, Momentum ResNet, PDE-CNNs, RK/PolyNet/FractalNet", "test error"),
    "neural_ode": TableSpec(
        "Neural ODEs",
        "Chen et al. 2018, Table 1 (MNIST: error, parameters, memory, time) and the CIFAR ODE-Net: "
        "function evaluations per training step forward (NFE-F) and backward (NFE-B), and autograd's "
        "saved activations with and without the adjoint.",
        (("params", "params (M)", -3), ("published_params_m", "published params (M)", 2),
         ("params_verdict", "params verdict", 0), ("adjoint", "adjoint", 0), ("nfe_forward", "NFE-F", 1),
         ("nfe_backward", "NFE-B", 1),
         ("eval_nfe_forward", "NFE (test)", 1), ("activation_memory_mb", "act. mem (MB)", 1),
         ("epoch_time_s", "s/epoch", 2)),
        "ResNet-6, RK-Net, ODE-Net", "test error, NFE, memory"),
    "anode": TableSpec(
        "ANODE vs NODE",
        "Dupont et al. 2019: augmented and second-order ODEs against the plain Neural ODE; test error "
        "and the solver's function evaluations.",
        (("params", "params (M)", -3), ("nfe_forward", "NFE-F", 1), ("nfe_backward", "NFE-B", 1),
         ("eval_nfe_forward", "NFE (test)", 1), ("epoch_time_s", "s/epoch", 2)),
        "NODE, ANODE, SONODE", "test error, NFE"),
    "flows": TableSpec(
        "Continuous normalizing flows",
        "FFJORD and RNODE: bits/dim (images) or NLL in nats (2-D toys), function evaluations and "
        "training time.",
        (("params", "params (M)", -3), ("nfe_forward", "NFE-F", 1), ("nfe_backward", "NFE-B", 1),
         ("nfe", "NFE (test)", 1), ("epoch_time_s", "s/epoch", 2), ("train_time_s", "train time (s)", 1)),
        "FFJORD, RNODE", "bits/dim, NFE"),
    "stochastic": TableSpec(
        "Stochastic regularization",
        "Stochastic depth, ShakeDrop, Shake-Shake and dropout: test error, time per epoch and the time "
        "saved against the constant-depth network of the same depth, from the median epoch time after the "
        "first epoch, same compile mode (published: Huang et al. 2016, Table 2 training hours).",
        (("params", "params (M)", -3), ("epoch_time_s", "s/epoch", 2),
         ("epoch_time_median_s", "median s/epoch after the first", 2),
         ("constant_depth_model", "constant-depth twin", 0), ("constant_depth_time_s", "twin s/epoch", 2),
         ("time_saving_pct", "time saved (%)", 1), ("published_time_saving_pct", "published saving (%)", 1),
         ("time_note", "time note", 0)),
        "stochastic depth, ShakeDrop, Shake-Shake, dropout", "test error, time per epoch"),
    "neural_sde": TableSpec(
        "Neural SDE robustness",
        "Liu et al. 2019: test accuracy (%) under Gaussian input perturbations of strength sigma "
        "(normalized-input units), Neural SDE beside its ODE counterpart (no noise in training).",
        (("params", "params (M)", -3), ("test_accuracy", "acc (%)", 2), ("acc_perturb_*", "acc σ={}", 2),
         ("nfe_forward", "NFE-F", 1)),
        "Neural SDE, Neural ODE", "accuracy vs sigma"),
    "latent_sde": TableSpec(
        "Latent SDEs",
        "Li et al. 2020: negative ELBO on held-out series (lower is better), its per-observation value "
        "and KL terms, and the solver's function evaluations.",
        (("params", "params (M)", -3), ("neg_elbo_per_obs", "−ELBO/obs", 3), ("kl_z0", "KL z0", 2),
         ("kl_path", "KL path", 2), ("nfe_forward", "NFE-F", 1), ("nfe_backward", "NFE-B", 1),
         ("epoch_time_s", "s/epoch", 2)),
        "latent SDE", "negative ELBO, NFE"),
    "generative": TableSpec(
        "Generative SDEs",
        "Score SDEs (VE, VP, sub-VP) and DDPM: bits/dim through the probability-flow ODE, FID and "
        "Inception score when computed (else the reason), and each sampler's function evaluations.",
        (("params", "params (M)", -3), ("nfe_likelihood", "NFE (likelihood)", 0),
         ("nfe_sample_*", "NFE ({})", 0), ("mmd_*", "MMD² ({})", 4), ("fid", "FID", 2),
         ("published_fid", "published FID", 2), ("inception_score", "IS", 2),
         ("published_inception_score", "published IS", 2), ("fid_not_computed", "FID note", 0), ("epoch_time_s", "s/epoch", 2)),
        "score SDEs (VE, VP, sub-VP), DDPM", "bits/dim, FID, sampler NFE"),
    "future": TableSpec(
        "Future directions: delay, fractional and higher-order dynamics",
        "Neural DDEs, fractional (Caputo, Grünwald-Letnikov) and third-order Neural ODEs in ODE-Net CIFAR's "
        "frame under the Neural ODE CIFAR protocol: function evaluations, activation memory, and the "
        "fractional scheme's history terms and stored states per forward (Lévy SDEs: Neural SDE table).",
        (("params", "params (M)", -3), ("nfe_forward", "NFE-F", 1), ("eval_nfe_forward", "NFE (test)", 1),
         ("activation_memory_mb", "act. mem (MB)", 1), ("history_terms", "history terms", 0),
         ("stored_states", "stored states", 0), ("epoch_time_s", "s/epoch", 2)),
        "Neural DDE, fractional ODE, third-order ODE", "test error, NFE, memory"),
}
TABLE_NAMES = tuple(TABLE_SPECS)
TABLE_TITLES = {k: v.title for k, v in TABLE_SPECS.items()}
NOT_RUN = "Not yet run: no run of this family in these results (family not in the preset)."


def _natural(s: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(s)))


def _num_suffix(col: str, prefix: str):
    rest = col[len(prefix):]
    try:
        return (0, float(rest), rest)
    except ValueError:
        return (1, 0.0, rest)


def columns(name: str, available) -> list[tuple[str, str, int]]:
    """The display columns of table ``name``: patterns expanded against ``available`` columns."""
    out = list(HEAD)
    for key, label, digits in TABLE_SPECS[name].columns:
        if key.endswith("*"):
            prefix = key[:-1]
            hits = sorted((c for c in available if c.startswith(prefix)), key=lambda c: _num_suffix(c, prefix))
            out += [(c, label.format(c[len(prefix):]), digits) for c in hits]
        else:
            out.append((key, label, digits))
    return out + TAIL


def side_keys(name: str, available) -> list[str]:
    """Summary columns table ``name`` averages over seeds (patterns expanded)."""
    skip = {k for k, _, _ in HEAD + TAIL}
    return [k for k, _, _ in columns(name, available) if k not in skip]


def row_order(summary):
    """Rows by mode (paper first), dataset, then model in natural order (resnet20 before resnet110)."""
    if summary.empty:
        return summary
    key = summary.apply(lambda r: (r["mode"] != "paper", str(r["dataset"]), _natural(r["model"]),
                                   str(r["experiment"])), axis=1)
    return summary.iloc[sorted(range(len(summary)), key=lambda i: key.iloc[i])].reset_index(drop=True)
