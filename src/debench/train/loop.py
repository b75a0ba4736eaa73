"""One run: model x dataset x protocol x seed, from cached data to ``metrics.json``.

Reads top to bottom: setup, data, model, optimizer, resume, loop, evaluation, results. The data
sit on the device and are augmented there; metrics accumulate on the device and are read once
per epoch; MLflow is called once per epoch from the host. On the CPU a run is repeatable given
its seed, thread count and memory format, and a run killed at any point resumes from its last
checkpoint to the same final metrics as an uninterrupted run. Resolution of the settings and the
record live in :mod:`debench.train.runtime` and :mod:`debench.train.record`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from debench.data import DeviceData, load_cached
from debench.errors import ConfigError, Diverged, RunFailed
from debench.registry import create_model, import_plugins, merged_model_args, model_info, model_meta
from debench.track import provenance
from debench.track.atomic import atomic_write_json
from debench.track.tracker import make_tracker, redact
from debench.train import checkpoint as ckpt
from debench.train.build import factory_kwargs, make_optimizer
from debench.train.evaluate import accumulate, evaluate
from debench.train.measure import activation_probe_bytes, count_parameters, peak_memory_mb
from debench.train.progress import EpochLog, Progress
from debench.train.protocol import Protocol, lr_at
from debench.track.tracker import run_params
from debench.train.record import FINAL_KEYS, record_head, summarize, write_record
from debench.train.runtime import apply_math_mode, continuous_depth, resolve_runtime

log = logging.getLogger("debench.train")


def train(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one run described by ``spec`` (see ``debench train --help``) and write its metrics.

    Returns:
        The ``metrics.json`` record. Runs that diverge or whose solver fails still return (and
        write) a record, with ``status`` saying so; other errors propagate.

    Raises:
        ConfigError: for a bad protocol, model argument or output path.
        debench.errors.DatasetError: for a missing or corrupt dataset cache.
    """
    t_start = time.time()
    _check_output_paths(spec["paths"])
    import_plugins(spec.get("plugins", []))
    info = model_info(spec["model"])
    protocol = Protocol.from_dict(spec.get("protocol", {}))

    # ---- data -------------------------------------------------------------------------------
    arrays, meta = load_cached(spec["data"]["cache"])
    kwargs = factory_kwargs(spec["model"], meta, spec.get("model_args", {}))
    model_args = merged_model_args(spec["model"], kwargs)
    runtime = resolve_runtime(spec.get("runtime", {}), spec["model"], adaptive=continuous_depth(info),
                              classify=info.task == "classify", timed_with=spec.get("timed_with"))
    head = record_head(spec, info, protocol.as_dict(), model_args,
                       model_meta(spec["model"], compiled=runtime["compile"]), runtime, meta)
    chash = head["config_hash"]
    torch.set_num_threads(runtime["threads"])
    apply_math_mode(runtime["precision"])  # fp32 is IEEE fp32 on CUDA too, never torch's TF32 default
    device = torch.device(runtime["device"])
    metrics_path = Path(spec["paths"]["metrics"])
    workdir = Path(spec["paths"]["checkpoints"]) / chash  # another configuration never resumes from it
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    classify = info.task == "classify"
    data = DeviceData(arrays, meta, device, protocol.val_fraction, split_seed=spec["seed"], normalize=classify,
                      norm=protocol.input_norm)
    del arrays
    steps_per_epoch = data.steps_per_epoch(protocol.batch_size)
    total_steps = protocol.iterations or protocol.epochs * steps_per_epoch
    n_epochs = -(-total_steps // steps_per_epoch)
    augment = dict(crop_padding=protocol.crop_padding, flip=protocol.flip) if classify else {}

    # ---- model and optimizer ---------------------------------------------------------------
    torch.manual_seed(spec["seed"])
    random.seed(spec["seed"])
    np.random.seed(spec["seed"])  # torchsde's BrownianInterval takes its entropy from numpy
    model = create_model(spec["model"], **kwargs)
    image = meta.get("kind") == "image"
    model = model.to(device, memory_format=torch.channels_last if runtime["channels_last"] and image
                     else torch.contiguous_format)
    params = count_parameters(model)
    optimizer = make_optimizer(model, protocol, device)
    ema = None
    if protocol.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(protocol.ema), use_buffers=True)
    step_fn = torch.compile(model, mode=runtime["compile"]) if runtime["compile"] else model
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if runtime["amp"] == "bf16" \
        else contextlib.nullcontext
    stats_hook = getattr(model, "debench_stats", None)
    reg_hook = getattr(model, "regularization_loss", None)

    def loss_of(x: torch.Tensor, y: torch.Tensor, m: torch.nn.Module = step_fn) -> tuple[torch.Tensor, torch.Tensor]:
        if classify:
            out = m(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=protocol.label_smoothing)
            correct = (out.argmax(1) == y).sum()
        else:
            loss, correct = m.training_loss(x, y), torch.zeros((), device=device, dtype=torch.long)
        if reg_hook is not None:
            loss = loss + getattr(m, "regularization_loss", reg_hook)()
        return loss, correct

    # ---- activation memory: autograd's saved bytes of one fp32 training step of one batch -----
    xb, yb = next(data.train_batches(protocol.batch_size, torch.Generator(device=device).manual_seed(spec["seed"]),
                                     **augment))
    act_bytes = activation_probe_bytes(model, lambda probe: loss_of(xb, yb, m=probe)[0])
    if stats_hook:
        stats_hook()
    del xb, yb

    # ---- resume ---------------------------------------------------------------------------
    tracker = make_tracker(spec.get("tracking", {}), spec["experiment"])
    epochs = EpochLog(metrics_path.parent / "epochs.csv")
    start_epoch, step, best = 0, 0, {"val": -math.inf, "epoch": None}
    state = ckpt.load_latest(workdir, chash)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        ckpt.set_rng_state(state["rng"])
        start_epoch, step, best = state["epoch"], state["step"], state["best"]
        epochs = EpochLog(epochs.path, state["rows"])
        log.info("resuming %s from epoch %d (step %d)", spec["model"], start_epoch, step)
    warmup_epochs = [*(state or {}).get("warmup_epochs", []), start_epoch + 1]
    _start_tracking(tracker, spec, head, workdir, device, state)

    # ---- loop -----------------------------------------------------------------------------
    status, detail, failed_epoch = "ok", None, None
    progress = Progress(spec, n_epochs, steps_per_epoch)
    try:
        for epoch in range(start_epoch, n_epochs):
            model.train()
            gen = torch.Generator(device=device).manual_seed(spec["seed"] * 1_000_003 + epoch)
            loss_sum = torch.zeros((), device=device)
            correct_sum = torch.zeros((), device=device, dtype=torch.long)
            seen, stats = 0, {}
            _sync(device)
            t0 = time.perf_counter()
            for x, y in data.train_batches(protocol.batch_size, gen, **augment):
                if step >= total_steps:
                    break
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(protocol, step, steps_per_epoch, total_steps)
                with autocast():
                    loss, correct = loss_of(x, y)
                loss.backward()
                if protocol.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), protocol.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update_parameters(model)
                loss_sum += loss.detach().float() * len(y)
                correct_sum += correct
                seen, step = seen + len(y), step + 1
                if stats_hook:
                    accumulate(stats, stats_hook())
                progress.step(epoch, step)
            _sync(device)
            train_s = time.perf_counter() - t0
            train_loss = loss_sum.item() / max(seen, 1)
            if not math.isfinite(train_loss):
                raise Diverged(f"training loss became {train_loss} in epoch {epoch + 1}", epoch + 1)
            row = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": train_loss, "epoch_time_s": train_s, "images_per_s": seen / train_s}
            if classify:
                row["train_accuracy"] = 100.0 * correct_sum.item() / max(seen, 1)
            row.update({k: v / max(stats.get("_n", 1), 1) for k, v in stats.items() if k != "_n"})
            last = epoch + 1 == n_epochs
            if last or (epoch + 1) % protocol.eval_every == 0:
                row.update(evaluate(ema.module if ema is not None else model, data, protocol, classify,
                                    autocast, stats_hook))
                if data.y_val is not None and classify and row["val_accuracy"] > best["val"]:
                    best = {"val": row["val_accuracy"], "epoch": epoch + 1}
            epochs.append(row)
            tracker.log_epoch({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
            progress.epoch_done(row)
            if last or (epoch + 1) % protocol.checkpoint_every == 0:
                ckpt.save_checkpoint(workdir, epoch + 1, {
                    "config_hash": chash, "epoch": epoch + 1, "step": step, "best": best,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None, "rng": ckpt.rng_state(),
                    "rows": epochs.rows, "mlflow_run_id": tracker.run_id, "warmup_epochs": warmup_epochs,
                })
    except RunFailed as exc:
        status, detail = exc.status, str(exc.args[0])
        failed_epoch = exc.args[1] if len(exc.args) > 1 else len(epochs.rows) + 1
        log.warning("%s: %s", status, detail)
    progress.close()

    # ---- results --------------------------------------------------------------------------
    record: dict[str, Any] = {
        **head, "status": status, "status_detail": detail, "failed_epoch": failed_epoch,
        "params": params, "activation_memory_mb": act_bytes / 2**20 if act_bytes is not None else None,
        "peak_memory_mb": peak_memory_mb(device),  # None on CPU
        "batch_size": protocol.batch_size, "epochs_completed": len(epochs.rows), "steps": step,
        "resumed_from_epoch": start_epoch, "wall_time_s": time.time() - t_start,
        "provenance": provenance.collect(device), "mlflow_run_id": tracker.run_id,
        "tracking_uri": redact(spec.get("tracking", {}).get("uri")), "epoch_csv": "epochs.csv",
        "nfe_forward": None, "nfe_backward": None,  # null unless a solver counted
    }
    record.update(summarize(epochs.rows, best, protocol, classify, status, warmup_epochs))
    if status == "ok":
        record.update(_after_training(ema.module if ema is not None else model, data, protocol, classify,
                                      autocast, metrics_path.parent))
    write_record(metrics_path, record)  # checked against the run-record schema first
    tracker.finish({k: v for k, v in record.items() if k in FINAL_KEYS}, [metrics_path, epochs.path], status)
    return record


def _start_tracking(tracker: Any, spec: dict, head: dict, workdir: Path, device: torch.device,
                    state: dict | None) -> None:
    """Start (or continue) the MLflow run; a run killed before its first checkpoint continues its run."""
    run_id_file = workdir / "mlflow_run.json"
    resume_id = state.get("mlflow_run_id") if state else None
    if resume_id is None and run_id_file.exists():
        with contextlib.suppress(ValueError, OSError):
            resume_id = json.loads(run_id_file.read_text()).get("run_id")
    tracker.start(
        run_name=f"{spec['model']}-{spec['dataset']}-seed{spec['seed']}", params=run_params(head),
        tags={"debench.preset": str(spec.get("preset")), "debench.config_hash": head["config_hash"],
              **{f"provenance.{k}": str(v) for k, v in provenance.collect(device).items()}},
        resume_run_id=resume_id,
    )
    if tracker.run_id is not None and tracker.run_id != resume_id:
        atomic_write_json(run_id_file, {"run_id": tracker.run_id})


def _after_training(model: torch.nn.Module, data: DeviceData, protocol: Protocol, classify: bool,
                    autocast: Any, run_dir: Path) -> dict[str, Any]:
    """The model's extra test metrics and artifacts (plots), once, after a successful run."""
    out: dict[str, Any] = {}
    extra = getattr(model, "extra_eval_metrics", None)
    if classify and extra is not None:
        model.eval()
        with torch.no_grad(), autocast():
            out.update(extra(data.to_model_input(data.x_test), data.y_test, protocol.eval_batch_size))
    writer = getattr(model, "write_artifacts", None)
    if writer is not None:
        (run_dir / "artifacts").mkdir(parents=True, exist_ok=True)
        out["artifacts"] = [str(Path(p).relative_to(run_dir)) for p in writer(run_dir / "artifacts")]
    return out


def _check_output_paths(paths: dict[str, str]) -> None:
    """Output paths come from the caller as given; a '..' component could leave the results folder."""
    for key in ("metrics", "checkpoints"):
        if ".." in Path(paths[key]).parts:
            raise ConfigError(f"paths.{key}: {paths[key]!r} has a '..' component; outputs must stay "
                              "inside their results folder (give a path without '..')")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
