"""The ``measure`` experiment kind: what a model costs, measured on real data, without training.

A measurement run builds one model at its initialisation and records, in float32:

* ``params``: trainable parameters (:func:`debench.train.measure.count_parameters`);
* ``activation_memory_mb``: the bytes autograd saves for one training step at the protocol's
  ``batch_size`` (the source's batch, e.g. 100 for MemCNN's table), by saved-tensor hooks
  (:func:`debench.train.measure.saved_activation_bytes`), so the figure is the same on CPU and GPU;
* ``time_per_iter_s``: mean wall time of one training step (forward, loss, backward, optimizer
  step) over ``protocol.iterations`` steps after ``protocol.warmup_iterations`` untimed ones
  (3 when 0); for a model with a constant-depth twin (stochastic depth), the twin is timed in the
  same process, steps alternating, and ``time_ratio_to_twin`` = mean(model) / mean(twin);
* ``nfe_forward_init``: function evaluations of one forward pass at initialisation, for models
  whose solver counts them (meaningful as a fixed number for fixed-step schemes:
  ``nfe_fixed_step`` says which).

Each model is timed with the optimizer its training uses
(:func:`debench.train.build.make_optimizer`: the protocol's optimizer, weight decay included).

The record has the shape of a training run's ``metrics.json`` (:mod:`debench.record_format`) with
``kind: "measure"``, checked against the run-record schema before it is written, so the same
aggregate and report read it
(:mod:`debench.report.measurements` puts it beside the published numbers).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from debench.registry import (constant_depth_twin, create_model, import_plugins, merged_model_args, model_info,
                              model_meta)
from debench.record_format import SCHEMA_VERSION
from debench.train.build import factory_kwargs, make_optimizer
from debench.train.record import config_hash, write_record
from debench.train.measure import activation_probe_bytes, count_parameters
from debench.train.protocol import Protocol

ADAPTIVE = {"dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "tsit5"}
def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def _training_step(model, opt, x, y, loss_of) -> None:
    opt.zero_grad(set_to_none=True)
    loss_of(model, x, y).backward()
    opt.step()


def _timed(device: torch.device, fn) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one (model, dataset, seed) described by a run spec and write its ``metrics.json``.

    Args:
        spec: the run spec of ``debench train`` (:func:`debench.config.run_spec`) with
            ``kind: "measure"``; ``protocol.batch_size`` is the measured batch,
            ``protocol.iterations`` the timed steps, ``protocol.warmup_iterations`` the untimed ones.

    Returns:
        The record written to ``spec["paths"]["metrics"]``.

    Raises:
        ConfigError: for a bad protocol key; DatasetError for an unreadable data cache.
    """
    from debench.data.cache import load_cached
    from debench.data.device import DeviceData
    from debench.track import provenance

    t_start = time.time()
    import_plugins(spec.get("plugins", []))
    name, seed = spec["model"], int(spec["seed"])
    info = model_info(name)
    protocol = Protocol.from_dict(spec.get("protocol", {}))
    want = spec.get("runtime", {}).get("device", "auto")
    device = torch.device("cuda" if want == "auto" and torch.cuda.is_available() else ("cpu" if want == "auto" else want))
    if spec.get("runtime", {}).get("threads"):
        torch.set_num_threads(int(spec["runtime"]["threads"]))
    from debench.train.runtime import apply_math_mode

    apply_math_mode({"train": "fp32"})  # every quantity here is an fp32 one (IEEE, not TF32, on CUDA)

    arrays, meta = load_cached(spec["data"]["cache"])
    classify = info.task == "classify"
    data = DeviceData(arrays, meta, device, 0.0, split_seed=seed, normalize=classify,
                      norm=protocol.input_norm)
    augment = dict(crop_padding=protocol.crop_padding, flip=protocol.flip) if classify else {}
    gen = torch.Generator(device=device).manual_seed(seed)
    x, y = next(data.train_batches(protocol.batch_size, gen, **augment))
    del arrays

    def loss_of(m, xb, yb):
        return F.cross_entropy(m(xb), yb) if classify else m.training_loss(xb, yb)

    args = merged_model_args(name, factory_kwargs(name, meta, spec.get("model_args", {})))
    twin = constant_depth_twin(name)
    models = {}
    for n in [name] + ([twin] if twin else []):
        torch.manual_seed(seed)
        kwargs = args if n == name else factory_kwargs(n, meta, {})
        models[n] = create_model(n, **kwargs).to(device).train()
    model = models[name]

    # ---- parameters, activation memory, NFE at initialisation --------------------------------
    params = count_parameters(model)
    act = activation_probe_bytes(model, lambda probe: loss_of(probe, x, y))
    nfe = None
    stats = getattr(model, "debench_stats", None)
    if stats is not None:
        stats()
        with torch.no_grad():
            model(x) if classify else loss_of(model, x, y)
        nfe = stats().get("nfe_forward")
    method = args.get("method")
    fixed_step = None if nfe is None else (method is not None and method not in ADAPTIVE)

    # ---- time per training step, alternating with the twin --------------------------------
    opts = {n: make_optimizer(m, protocol, device) for n, m in models.items()}  # as training builds it
    for _ in range(protocol.warmup_iterations or 3):
        for n, m in models.items():
            _training_step(m, opts[n], x, y, loss_of)
    times: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(protocol.iterations or 1):
        for n, m in models.items():
            times[n].append(_timed(device, lambda: _training_step(m, opts[n], x, y, loss_of)))

    mean = statistics.mean(times[name])
    precision = {k: "fp32" for k in ("activation_memory", "nfe", "time", "params")}
    data_meta = {k: meta.get(k) for k in ("source", "sha256", "train_size", "test_size")}
    meta_block = model_meta(name, compiled=False)
    hashed = {"kind": "measure", "protocol": protocol.as_dict(), "model_args": _jsonable(args), "model": name,
              "dataset": spec["dataset"], "seed": seed, "data_source": spec.get("data_source"),
              "data": data_meta, "device_type": device.type, "precision": precision}
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "kind": "measure",
        "experiment": spec["experiment"], "preset": spec.get("preset"), "table": spec.get("table"),
        "mode": spec.get("mode"), "comparable": spec.get("comparable", False),
        "model": name, "dataset": spec["dataset"], "seed": seed,
        "family": info.family, "task": info.task, "paper": info.paper, "scheme": info.scheme,
        "metric": "params", "status": "ok", "status_detail": None,
        "config_hash": config_hash(hashed), "settings_hash": config_hash({**hashed, "seed": None}),
        "params": params, "params_m": params / 1e6, "evals_per_forward": info.evals_per_forward,
        "activation_memory_mb": act / 2**20, "activation_batch_size": protocol.batch_size,
        "time_per_iter_s": mean, "time_per_iter_median_s": statistics.median(times[name]),
        "time_steps": len(times[name]), "time_warmup_steps": protocol.warmup_iterations or 3,
        "constant_depth_twin": twin,
        "twin_time_per_iter_s": statistics.mean(times[twin]) if twin else None,
        "time_ratio_to_twin": mean / statistics.mean(times[twin]) if twin else None,
        "nfe_forward_init": nfe, "nfe_fixed_step": fixed_step, "batch_size": protocol.batch_size,
        "wall_time_s": time.time() - t_start, "epoch_csv": None,
        "protocol": protocol.as_dict(), "model_args": _jsonable(args), "model_meta": meta_block,
        "precision": precision, "runtime": {"device": str(device), "device_type": device.type,
                                            "threads": torch.get_num_threads(), "amp": "off", "compile": False},
        "data": data_meta, "provenance": provenance.collect(device),
    }
    write_record(Path(spec["paths"]["metrics"]), record)
    return record


