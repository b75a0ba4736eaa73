"""A report input at the smoke preset's scale: 80 models over nine tables, built by hand.

The model, dataset, table and family of every smoke run (``results/published/runs.csv``; the
future table's six from ``config/smoke.yaml``), written as schema-2 records with per-epoch
trajectories, so the plots see as many labels as a real report. Depth families carry their depth
and the registry's scheme text; momentum ResNets run with ``invertible`` true and false (the
registry's scheme says "invertible" for both), as the smoke preset's do.
"""

from __future__ import annotations

from pathlib import Path

import re

import pandas as pd

from tests.report_records import record, write_record

DISCRETE = ("fractalnet20 hamiltonian110 hamiltonian38 hamiltonian74 hamiltonian_cnn leapfrog110 leapfrog38 "
            "leapfrog74 lm_resnet110 lm_resnet20 lm_resnet32 lm_resnet44 lm_resnet56 midpoint110 midpoint38 "
            "midpoint74 momentum_resnet110 momentum_resnet18 momentum_resnet20 momentum_resnet32 momentum_resnet44 "
            "momentum_resnet56 parabolic_cnn polynet_resnet20 polynet_resnet56 resnet110 resnet20 resnet32 resnet44 "
            "resnet56 revnet110 revnet164 revnet38 rk2_resnet110 rk2_resnet20 rk2_resnet56 rk4_resnet20 "
            "rk4_resnet56 second_order_cnn").split()
STOCHASTIC = ("dropout_resnet110 lm_resnet110_sd lm_resnet56_sd shake_shake26_2x32d shake_shake26_2x64d "
              "shake_shake26_2x96d shakedrop_resnet110 stochastic_depth_resnet110 stochastic_depth_resnet1202 "
              "stochastic_depth_resnet20 stochastic_depth_resnet56").split()
# (table, family, task, metric, [(model, dataset)])
RUNS = [
    ("discrete", "discrete", "classify", "test_error", [(m, "cifar10") for m in DISCRETE]),
    ("discrete", "continuous", "classify", "test_error", [("resnet6_mnist", "cifar10")]),
    ("anode", "continuous", "classify", "test_error",
     [(f"{m}_{d}", d.replace("cifar", "cifar10")) for d in ("cifar", "mnist") for m in ("node", "anode", "sonode")]),
    ("neural_ode", "continuous", "classify", "test_error",
     [("odenet_cifar", "cifar10"), ("odenet_mnist", "mnist"), ("resnet6_mnist", "mnist"), ("rknet_mnist", "mnist")]),
    ("flows", "continuous", "density", "bits_per_dim", [("ffjord_mnist", "mnist"), ("rnode_mnist", "mnist")]),
    ("flows", "continuous", "density", "nll", [("ffjord_toy", "eight_gaussians"), ("rnode_toy", "eight_gaussians")]),
    ("stochastic", "stochastic", "classify", "test_error", [(m, "cifar10") for m in STOCHASTIC]),
    ("neural_sde", "stochastic", "classify", "test_error",
     [("neural_sde_cifar", "cifar10"), ("neural_sde_cifar_ode", "cifar10"), ("neural_sde_mnist", "mnist")]),
    ("latent_sde", "stochastic", "timeseries", "neg_elbo", [("latent_sde", "ou_paths")]),
    ("generative", "stochastic", "generate", "bits_per_dim",
     [(f"score_sde_{v}_cifar", "cifar10") for v in ("ve", "vp", "subvp")] + [("ddpm_cifar", "cifar10"),
                                                                           ("score_sde_toy", "toy_gmm2d")]),
    ("future", "continuous", "classify", "test_error",
     [(m, "cifar10") for m in ("ndde_cifar", "frac_ode_cifar_a05_n4", "frac_ode_cifar_a05_n8", "frac_ode_cifar_a05_n16",
                               "frac_ode_cifar_a1_n8", "third_order_node_cifar")]),
]
EPOCHS = 3
# the registry's scheme text of each depth family (src/debench/models/discrete/)
SCHEMES = {"resnet": "forward Euler", "lm_resnet": "linear multistep (2-step)", "revnet": "reversible coupling "
           "(forward Euler split)", "momentum_resnet": "momentum (second-order, invertible)", "rk2_resnet": "RK2",
           "rk4_resnet": "RK4", "midpoint": "midpoint (Chang et al.)", "leapfrog": "leapfrog (Chang et al.)",
           "hamiltonian": "Hamiltonian (Chang et al.)", "polynet_resnet": "PolyNet (implicit, 2nd order)"}
INVERTIBLE = {"momentum_resnet20", "momentum_resnet32", "momentum_resnet56"}  # the other momentum ResNets: false


def make_smoke_scale_runs(root: Path, seeds: int = 1, epochs: int = EPOCHS) -> Path:
    """Write one schema-2 record (and ``epochs.csv``) per smoke run under ``root``; return ``root``.

    Every classifier gets parameters, evaluations per forward and activation memory; every
    continuous-depth model forward and backward NFE per epoch; Neural SDEs perturbed accuracies;
    depth families their depth and scheme, momentum ResNets ``model_args.invertible``.

    Args:
        epochs: epochs per trajectory (the smoke preset trains one).
    """
    i = 0
    for table, family, task, metric, runs in RUNS:
        for model, dataset in runs:
            for seed in range(seeds):
                i += 1
                value = 5.0 + (i * 7) % 40 if metric == "test_error" else 1.0 + (i % 5) / 4
                extra = {"family": family, "task": task, "params": 10_000 * (1 + i % 17) * (1 + i % 3),
                         "activation_memory_mb": 1.0 + (i * 37) % 250, "epoch_time_s": 0.5 + (i * 13) % 30 / 4,
                         "epoch_csv": "epochs.csv", "model_args": {"num_classes": 10}}
                if family == "discrete":
                    extra["evals_per_forward"] = float(9 + (i * 5) % 100)
                    depth = re.fullmatch(r"([a-z0-9_]*?[a-z])(\d+)", model)
                    if depth and depth.group(1) in SCHEMES:
                        extra.update(scheme=SCHEMES[depth.group(1)], model_meta={"depth": int(depth.group(2))})
                        if depth.group(1) == "momentum_resnet":
                            extra["model_args"] = {"num_classes": 10, "invertible": model in INVERTIBLE}
                if family == "continuous":
                    extra.update(nfe_forward=8.0 + i % 20, nfe_backward=10.0 + i % 30,
                                 model_args={"adjoint": bool(i % 2)})
                if table == "neural_sde":
                    extra.update({"acc_perturb_0": 80.0, "acc_perturb_0.1": 70.0 - i % 9, "acc_perturb_0.5": 40.0,
                                  "model_args": {"sigma": 0.0 if model.endswith("_ode") else 0.1}})
                rec = record(model, seed, experiment=f"smoke_{table}", dataset=dataset, table=table, metric=metric,
                             value=value, comparable=False, mode="paper", **extra)
                path = write_record(root, rec)
                frame = pd.DataFrame({"epoch": range(1, epochs + 1),
                                      "test_accuracy": [10.0 + 20 * e + i % 7 for e in range(epochs)]})
                if family == "continuous":
                    frame = frame.assign(nfe_forward=[8.0 + i % 20 + 2 * e for e in range(epochs)],
                                         nfe_backward=[10.0 + i % 30 + 3 * e for e in range(epochs)])
                frame.to_csv(path.parent / "epochs.csv", index=False)
    return Path(root)


def smoke_scale_models() -> set[tuple[str, str]]:
    """Every ``(model, dataset)`` the scale input holds."""
    return {md for *_, runs in RUNS for md in runs}
