"""Schema-2 run records for the report tests, built here by hand (the run-record contract).

The report reads these fields only from the record; nothing is taken from the model registry.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

# reference selectors as the registry of this checkout gives them, copied into the records
REFERENCES = {
    "resnet20": [{"table_id": "HE16_T6", "model": "ResNet", "depth": "20"}],
    "resnet32": [{"table_id": "HE16_T6", "model": "ResNet", "depth": "32"}],
    "resnet44": [{"table_id": "HE16_T6", "model": "ResNet", "depth": "44"}],
    "resnet56": [{"table_id": "HE16_T6", "model": "ResNet", "depth": "56"}],
    "resnet110": [{"table_id": "HE16_T6", "model": "ResNet", "depth": "110"}],
    "stochastic_depth_resnet110": [{"table_id": "HUANG16_T1", "model": "ResNet with stochastic depth", "depth": "110"},
                                   {"table_id": "HUANG16_REPO", "model": "ResNet + stochastic depth", "depth": "110"}],
    "ddpm_cifar": [{"table_id": "SONG21_REPO", "model": "DDPM", "variant": "VP SDE"},
                   {"table_id": "HO20_ABS", "model": "DDPM (unconditional)"}],
    "odenet_mnist": [{"table_id": "CHEN18_T1", "model": "ODE-Net"}],
}
DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet44": 44, "resnet56": 56, "resnet110": 110, "revnet38": 38,
          "stochastic_depth_resnet110": 110}
TWINS = {"stochastic_depth_resnet110": "resnet110"}


def record(model: str = "resnet20", seed: int = 0, *, experiment: str = "exp", dataset: str = "cifar10",
           table: str = "discrete", metric: str = "test_error", value: float | None = 8.0, status: str = "ok",
           comparable: bool = True, mode: str = "paper", config_hash: str = "h0", **extra: Any) -> dict[str, Any]:
    """A complete schema-2 ``metrics.json`` record; ``extra`` overrides or adds top-level fields."""
    rec: dict[str, Any] = {
        "schema_version": 2, "experiment": experiment, "table": table, "mode": mode, "comparable": comparable,
        "model": model, "dataset": dataset, "seed": seed, "status": status, "metric": metric,
        "family": "discrete", "task": "classify" if metric == "test_error" else "generate",
        "scheme": "forward Euler", "params": 270000, "epoch_time_s": 1.0, "batch_size": 16,
        "config_hash": f"{config_hash}s{seed}", "settings_hash": config_hash, "preset": "unit",
        "protocol": {"lr": 0.1, "milestones": [1, 2], "epochs": 2},
        "model_args": {"num_classes": 10},
        "model_meta": {"reference": REFERENCES.get(model, []), "depth": DEPTHS.get(model),
                       "constant_depth_twin": TWINS.get(model), "compilable": False, "compiled": False,
                       "module": "debench.models.discrete.resnet"},
        "precision": {"train": "fp32", "eval": "fp32", "time": "fp32"},
        "data": {"source": "synthetic", "sha256": "0" * 64},
        "runtime": {"device_type": "cpu"},
        "provenance": {"git_commit": "abc123", "git_dirty": False, "date_utc": "2026-01-01T00:00:00+00:00",
                       "torch_version": "2.x", "device_name": "x86_64"},
    }
    if status == "ok" and value is not None:
        rec[metric] = value
        if metric == "test_error":
            rec["test_accuracy"] = 100 - value
    for key, v in extra.items():
        if isinstance(v, dict) and isinstance(rec.get(key), dict):
            rec[key] = {**rec[key], **copy.deepcopy(v)}
        else:
            rec[key] = v
    return rec


def write_record(root: Path, rec: dict[str, Any]) -> Path:
    """``root/<experiment>/<dataset>/<model>/seed<N>/metrics.json`` (the workflow's layout)."""
    d = Path(root) / rec["experiment"] / rec["dataset"] / rec["model"] / f"seed{rec['seed']}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(rec))
    return d / "metrics.json"
