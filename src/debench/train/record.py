"""The run record (``metrics.json``): identity, resolved settings, config hash, summary.

A record describes itself completely: the resolved protocol (defaults filled in), the model
arguments the factory received (merged with its defaults), the registry metadata the report
needs, the precision of every metric and the dataset checksum. Its format (schema version,
required keys, allowed values, flattening) is :mod:`debench.record_format`'s, whose
:func:`~debench.record_format.write_record` checks a record against it before the atomic write.
The config hash covers every input that changes the bits of a result, so a changed default, data
size or data content never resumes an old checkpoint. MLflow parameters (live and ``debench track sync``) come from the same groups.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from typing import Any

from debench.errors import ConfigError
from debench.record_format import (FINAL_KEYS, PARAM_GROUPS, SCHEMA_VERSION, RecordFormatError, check_record,
                                     flat_params, write_record)

__all__ = ["DATA_KEYS", "FINAL_KEYS", "HASHED_RUNTIME", "PARAM_GROUPS", "SCHEMA_VERSION", "config_hash", "flat_params",
           "hash_inputs", "record_head", "summarize", "write_record"]
DATA_KEYS = ("source", "sha256", "train_size", "test_size")
# Runtime settings that change the bits of a result (device name and host do not).
HASHED_RUNTIME = ("threads", "channels_last", "amp", "compile", "device_type")


def hash_inputs(head: dict[str, Any], data_source: str | None) -> dict[str, Any]:
    """What the config hash covers, taken from a record head (see :func:`record_head`).

    Args:
        head: identity and resolved groups of the run.
        data_source: the config's ``data.source`` (the cache's sidecar says it too).

    Returns:
        A JSON-serialisable dict.
    """
    return {
        "experiment": head["experiment"], "model": head["model"], "dataset": head["dataset"],
        "seed": head["seed"], "protocol": head["protocol"], "model_args": head["model_args"],
        "data": head["data"], "data_source": data_source,
        "runtime": {k: head["runtime"].get(k) for k in HASHED_RUNTIME}, "precision": head["precision"],
    }


def config_hash(inputs: dict[str, Any]) -> str:
    """First 16 hex digits of the sha256 of ``inputs`` as canonical JSON."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record_head(spec: dict[str, Any], info: Any, protocol: dict[str, Any], model_args: dict[str, Any],
                model_meta: dict[str, Any], runtime: dict[str, Any], data_meta: dict[str, Any]) -> dict[str, Any]:
    """Identity and resolved settings of a run: the first keys of its record, hashed.

    Args:
        spec: the run spec.
        info: the model's :class:`debench.registry.ModelInfo`.
        protocol: the resolved protocol (every key).
        model_args: the merged factory arguments.
        model_meta: :func:`debench.registry.model_meta` of the run.
        runtime: :func:`debench.train.runtime.resolve_runtime` of the run.
        data_meta: the dataset cache's sidecar.

    Returns:
        The head, ``config_hash`` included.

    Raises:
        ConfigError: a value the run-record schema does not allow (a ``table`` it does not list).
    """
    head = {
        "schema_version": SCHEMA_VERSION,
        "experiment": spec["experiment"], "preset": spec.get("preset"), "table": spec.get("table"),
        "mode": spec.get("mode"), "comparable": spec.get("comparable", False),
        "model": spec["model"], "dataset": spec["dataset"], "seed": spec["seed"],
        "family": info.family, "task": info.task, "paper": info.paper, "scheme": info.scheme,
        "metric": info.metric, "evals_per_forward": info.evals_per_forward,
        "protocol": protocol, "model_args": model_args, "model_meta": model_meta,
        "runtime": {k: v for k, v in runtime.items() if k != "precision"},
        "precision": runtime["precision"], "data": {k: data_meta.get(k) for k in DATA_KEYS},
    }
    inputs = hash_inputs(head, spec.get("data_source"))
    head["config_hash"] = config_hash(inputs)
    # the same settings without the seed: the seeds of one configuration share it, and the report
    # averages over seeds only within one settings_hash (never across different settings)
    head["settings_hash"] = config_hash({**inputs, "seed": None})
    # refuse a value the record could not hold (an unknown table) now, not after the training
    try:
        check_record(head, f"run {spec['experiment']}/{spec['dataset']}/{spec['model']}/seed{spec['seed']}",
                     partial=True)
    except RecordFormatError as exc:
        raise ConfigError(str(exc)) from None
    return head


def summarize(rows: list[dict], best: dict, p: Any, classify: bool, status: str,
              warmup_epochs: list[int]) -> dict[str, Any]:
    """Run-level metrics from the epoch rows.

    Args:
        rows: the epoch log.
        best: ``{"val": best validation accuracy, "epoch": its epoch or None}``.
        p: the :class:`debench.train.protocol.Protocol`.
        classify: the model's task is ``classify``.
        status: the run's status; only ``ok`` runs get test metrics.
        warmup_epochs: epochs that were the first of a process (compilation, cudnn autotuning).

    Returns:
        Times, throughput, NFE and (classification) last/best/selected test metrics.
        ``epoch_time_median_s`` is the median over the epochs after each process's first
        (``None`` with a single epoch).
    """
    evaluated = [r for r in rows if "test_accuracy" in r or "test_loss" in r or not classify]
    s: dict[str, Any] = {"epoch_time_median_s": None}
    if rows:
        times = [r["epoch_time_s"] for r in rows]
        steady = [r["epoch_time_s"] for r in rows if r["epoch"] not in warmup_epochs]
        s["train_time_s"] = sum(times)
        s["epoch_time_s"] = sum(times) / len(times)
        s["epoch_time_median_s"] = statistics.median(steady) if steady else None
        s["throughput_img_s"] = sum(r["images_per_s"] for r in rows) / len(rows)
        s["train_loss"] = rows[-1]["train_loss"]
        for k in ("nfe_forward", "nfe_backward", "eval_nfe_forward"):
            traj = [r.get(k) for r in rows if r.get(k) is not None]
            if traj:
                s[k] = traj[-1]
                s[f"{k}_trajectory"] = traj
    if status != "ok" or not evaluated:
        return s
    last = evaluated[-1]
    if not classify:
        s.update({k: v for k, v in last.items() if k not in ("epoch", "step", "lr", "train_loss",
                                                               "epoch_time_s", "images_per_s")})
        return s
    by_test = max(evaluated, key=lambda r: r["test_accuracy"])
    chosen = last
    if p.select_by == "best_val" and best["epoch"] is not None:
        chosen = next(r for r in evaluated if r["epoch"] == best["epoch"])
    s.update({
        "test_accuracy": chosen["test_accuracy"], "test_error": 100.0 - chosen["test_accuracy"],
        "test_loss": chosen["test_loss"], "selected_epoch": chosen["epoch"], "select_by": p.select_by,
        "final_test_accuracy": last["test_accuracy"], "final_test_error": 100.0 - last["test_accuracy"],
        "best_test_accuracy": by_test["test_accuracy"], "best_test_error": 100.0 - by_test["test_accuracy"],
        "best_epoch": by_test["epoch"], "train_accuracy": rows[-1].get("train_accuracy"),
    })
    if "val_accuracy" in chosen:
        s["val_accuracy"] = chosen["val_accuracy"]
    return s
