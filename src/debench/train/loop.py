"""One run: model x dataset x protocol x seed, from cached data to ``metrics.json``.

Reads top to bottom: setup, data, model, optimizer, resume, loop, evaluation, results. The data
sit on the device and are augmented there; metrics accumulate on the device and are read once
per epoch; MLflow is called once per epoch from the host. On the CPU a run is repeatable given
its seed, thread count and memory format, and a run killed at any point resumes from its last
checkpoint to the same final metrics as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import inspect
import io
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from debench.data import DeviceData, load_cached
from debench.errors import ConfigError, Diverged, RunFailed
from debench.registry import create_model, import_plugins, model_info
from debench.track import provenance
from debench.track.atomic import atomic_write_json, atomic_write_text
from debench.track.tracker import make_tracker, redact
from debench.train import checkpoint as ckpt
from debench.train.measure import count_parameters, peak_memory_bytes, saved_activation_bytes
from debench.train.protocol import Protocol, lr_at

log = logging.getLogger("debench.train")
SCHEMA_VERSION = 1
# Settings that change the bits of a result; they enter the config hash.
HASHED = ("experiment", "model", "dataset", "seed", "protocol", "model_args", "data_source")
HASHED_RUNTIME = ("threads", "channels_last", "amp", "compile", "device_type")


def config_hash(spec: dict[str, Any], runtime: dict[str, Any]) -> str:
    key = {k: spec.get(k) for k in HASHED}
    key["runtime"] = {k: runtime.get(k) for k in HASHED_RUNTIME}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_runtime(r: dict[str, Any], compilable: bool = False) -> dict[str, Any]:
    """Concrete device, threads, precision and layout from the config's ``runtime`` block.

    ``compile: auto`` means CUDA graphs (``reduce-overhead``) on a GPU for models registered as
    ``compilable`` (measured: 1.8-2.3x the eager bf16 step on an H100, docs/performance.md), and
    eager mode everywhere else (on the CPU, compiling costs 15-36 s for at most 1.1x).
    """
    want = r.get("device", "auto")
    device = torch.device("cuda" if want == "auto" and torch.cuda.is_available() else
                          ("cpu" if want == "auto" else want))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runtime.device is 'cuda' but CUDA is not available here; use 'auto' or 'cpu'")
    threads = r.get("threads") or torch.get_num_threads()
    amp = r.get("amp", "auto")
    amp = ("bf16" if device.type == "cuda" else "off") if amp == "auto" else amp
    compile_ = r.get("compile", "auto")
    if compile_ == "auto":
        compile_ = "reduce-overhead" if device.type == "cuda" and compilable else False
    # False, or a torch.compile mode: True = "default"; "reduce-overhead" adds CUDA graphs.
    compile_ = False if compile_ in (False, None) else ("default" if compile_ is True else str(compile_))
    return {"device": str(device), "device_type": device.type, "threads": int(threads),
            "channels_last": bool(r.get("channels_last", True)), "amp": amp, "compile": compile_}


def _factory_kwargs(name: str, meta: dict[str, Any], model_args: dict[str, Any]) -> dict[str, Any]:
    info = model_info(name)
    offered = {"num_classes": meta["num_classes"]}
    if meta.get("kind", "image") == "image":
        offered.update(in_channels=meta["shape"][-1], image_size=meta["shape"][0])
    else:
        offered["data_shape"] = tuple(meta["shape"])
    sig = inspect.signature(info.factory)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    kwargs = {k: v for k, v in offered.items() if takes_any or k in sig.parameters}
    unknown = [k for k in model_args if not takes_any and k not in sig.parameters]
    if unknown:
        raise ConfigError(f"model_args for {name!r}: unknown argument(s) {unknown}; "
                         f"{name} accepts {sorted(sig.parameters)}")
    return {**kwargs, **model_args}


class EpochLog:
    """Per-epoch rows, rewritten atomically as CSV after every epoch."""

    def __init__(self, path: Path, rows: list[dict[str, Any]] | None = None):
        self.path, self.rows = path, list(rows or [])

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


def train(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one run described by ``spec`` (see ``debench train --help``) and write its metrics.

    Returns:
        The ``metrics.json`` record. Runs that diverge or whose solver fails still return (and
        write) a record, with ``status`` saying so; other errors propagate.
    """
    t_start = time.time()
    import_plugins(spec.get("plugins", []))
    info = model_info(spec["model"])
    protocol = Protocol.from_dict(spec.get("protocol", {}))
    runtime = resolve_runtime(spec.get("runtime", {}), compilable=info.compilable)
    torch.set_num_threads(runtime["threads"])
    device = torch.device(runtime["device"])
    chash = config_hash(spec, runtime)
    _check_output_paths(spec["paths"])
    metrics_path = Path(spec["paths"]["metrics"])
    workdir = Path(spec["paths"]["checkpoints"]) / chash  # another configuration never resumes from it
    run_dir = metrics_path.parent
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)

    # ---- data -------------------------------------------------------------------------------
    arrays, meta = load_cached(spec["data"]["cache"])
    classify = info.task == "classify"
    data = DeviceData(arrays, meta, device, protocol.val_fraction, split_seed=spec["seed"],
                      normalize=classify)
    del arrays
    steps_per_epoch = data.steps_per_epoch(protocol.batch_size)
    total_steps = protocol.iterations or protocol.epochs * steps_per_epoch
    n_epochs = -(-total_steps // steps_per_epoch)
    augment = dict(crop_padding=protocol.crop_padding, flip=protocol.flip) if classify else {}

    # ---- model and optimizer ---------------------------------------------------------------
    torch.manual_seed(spec["seed"])
    import random

    random.seed(spec["seed"])
    model = create_model(spec["model"], **_factory_kwargs(spec["model"], meta, spec.get("model_args", {})))
    memory_format = torch.channels_last if runtime["channels_last"] and meta.get("kind") == "image" else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    params = count_parameters(model)
    optimizer = _optimizer(model, protocol, device)
    ema = None
    if protocol.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(protocol.ema), use_buffers=True)
    step_fn = torch.compile(model, mode=runtime["compile"]) if runtime["compile"] else model
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if runtime["amp"] == "bf16" \
        else contextlib.nullcontext
    stats_hook = getattr(model, "debench_stats", None)
    reg_hook = getattr(model, "regularization_loss", None)

    def loss_of(x: torch.Tensor, y: torch.Tensor, m=step_fn) -> tuple[torch.Tensor, torch.Tensor]:
        if classify:
            out = m(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=protocol.label_smoothing)
            correct = (out.argmax(1) == y).sum()
        else:
            loss, correct = model.training_loss(x, y), torch.zeros((), device=device, dtype=torch.long)
        if reg_hook is not None:
            loss = loss + reg_hook()
        return loss, correct

    # ---- activation memory: autograd's saved bytes for one training step of one batch -------
    gen0 = torch.Generator(device=device).manual_seed(spec["seed"])
    xb, yb = next(data.train_batches(protocol.batch_size, gen0, **augment))
    rng_before = ckpt.rng_state()
    act_bytes = _activation_bytes(model, loss_of, xb, yb, autocast)
    ckpt.set_rng_state(rng_before)
    if stats_hook:
        stats_hook()
    del xb, yb

    # ---- resume ---------------------------------------------------------------------------
    tracker = make_tracker(spec.get("tracking", {}), spec["experiment"])
    epochs = EpochLog(run_dir / "epochs.csv")
    start_epoch, step, best = 0, 0, {"val": -math.inf, "epoch": None}
    state = ckpt.load_latest(workdir, chash)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        ckpt.set_rng_state(state["rng"])
        start_epoch, step, best = state["epoch"], state["step"], state["best"]
        epochs = EpochLog(run_dir / "epochs.csv", state["rows"])
        log.info("resuming %s from epoch %d (step %d)", spec["model"], start_epoch, step)
    # A run killed before its first checkpoint continues the MLflow run it had created.
    run_id_file = workdir / "mlflow_run.json"
    resume_id = state.get("mlflow_run_id") if state else None
    if resume_id is None and run_id_file.exists():
        with contextlib.suppress(ValueError, OSError):
            resume_id = json.loads(run_id_file.read_text()).get("run_id")
    tracker.start(
        run_name=f"{spec['model']}-{spec['dataset']}-seed{spec['seed']}",
        params=_flat_params(spec, runtime, chash),
        tags={"debench.preset": str(spec.get("preset")), "debench.config_hash": chash,
              **{f"provenance.{k}": str(v) for k, v in provenance.collect(device).items()}},
        resume_run_id=resume_id,
    )
    if tracker.run_id is not None and tracker.run_id != resume_id:
        atomic_write_json(run_id_file, {"run_id": tracker.run_id})

    # ---- loop -----------------------------------------------------------------------------
    status, detail, failed_epoch = "ok", None, None
    progress = _Progress(spec, n_epochs, steps_per_epoch)
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
                seen += len(y)
                step += 1
                if stats_hook:
                    _accumulate(stats, stats_hook())
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
                row.update(_evaluate(ema.module if ema is not None else model, data, protocol, classify,
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
                    "ema": ema.state_dict() if ema is not None else None,
                    "rng": ckpt.rng_state(), "rows": epochs.rows, "mlflow_run_id": tracker.run_id,
                })
    except RunFailed as exc:
        status, detail = exc.status, str(exc.args[0])
        failed_epoch = exc.args[1] if len(exc.args) > 1 else len(epochs.rows) + 1
        log.warning("%s: %s", status, detail)
    progress.close()

    # ---- results --------------------------------------------------------------------------
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "experiment": spec["experiment"], "preset": spec.get("preset"), "table": spec.get("table"),
        "mode": spec.get("mode"), "comparable": spec.get("comparable", False),
        "model": spec["model"], "dataset": spec["dataset"], "seed": spec["seed"],
        "family": info.family, "task": info.task, "paper": info.paper, "scheme": info.scheme,
        "metric": info.metric, "config_hash": chash,
        "status": status, "status_detail": detail, "failed_epoch": failed_epoch,
        "params": params, "evals_per_forward": info.evals_per_forward,
        "activation_memory_mb": act_bytes / 2**20 if act_bytes is not None else None,
        "peak_memory_mb": peak_memory_bytes(device) / 2**20,
        "batch_size": protocol.batch_size, "epochs_completed": len(epochs.rows), "steps": step,
        "wall_time_s": time.time() - t_start,
        "protocol": protocol.as_dict(), "model_args": spec.get("model_args", {}), "runtime": runtime,
        "data": {k: meta.get(k) for k in ("source", "sha256", "train_size", "test_size")},
        "provenance": provenance.collect(device), "mlflow_run_id": tracker.run_id,
        "tracking_uri": redact(spec.get("tracking", {}).get("uri")), "epoch_csv": "epochs.csv",
    }
    record.update({"nfe_forward": None, "nfe_backward": None})  # null unless a solver counted
    record.update(_summarize(epochs.rows, best, protocol, classify, status))
    if status == "ok":
        model = ema.module if ema is not None else model
        extra = getattr(model, "extra_eval_metrics", None)
        if classify and extra is not None:
            model.eval()
            with torch.no_grad(), autocast():
                record.update(extra(data.to_model_input(data.x_test), data.y_test, protocol.eval_batch_size))
        writer = getattr(model, "write_artifacts", None)
        if writer is not None:
            (run_dir / "artifacts").mkdir(parents=True, exist_ok=True)
            record["artifacts"] = [str(Path(p).relative_to(run_dir)) for p in writer(run_dir / "artifacts")]
    atomic_write_json(metrics_path, record)
    tracker.finish({k: v for k, v in record.items() if k in _FINAL_KEYS}, [metrics_path, epochs.path], status)
    return record


_FINAL_KEYS = ("test_accuracy", "test_error", "best_test_accuracy", "final_test_error", "params",
               "activation_memory_mb", "peak_memory_mb", "train_time_s", "epoch_time_s",
               "throughput_img_s", "nfe_forward", "nfe_backward", "bits_per_dim", "nll", "neg_elbo")


def _check_output_paths(paths: dict[str, str]) -> None:
    """Output paths come from the caller as given; a '..' component could leave the results folder."""
    for key in ("metrics", "checkpoints"):
        if ".." in Path(paths[key]).parts:
            raise ConfigError(f"paths.{key}: {paths[key]!r} has a '..' component; outputs must stay "
                              "inside their results folder (give a path without '..')")


def _optimizer(model: torch.nn.Module, p: Protocol, device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    params = [q for q in model.parameters() if q.requires_grad]
    if p.optimizer == "sgd":
        return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, nesterov=p.nesterov,
                               weight_decay=p.weight_decay, **fused)
    cls = torch.optim.Adam if p.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=p.lr, betas=(p.momentum, 0.999), weight_decay=p.weight_decay, **fused)


def _activation_bytes(model, loss_of, x, y, autocast) -> int | None:
    import copy

    probe = copy.deepcopy(model).train()
    try:
        with autocast():
            return saved_activation_bytes(lambda: loss_of(x, y, m=probe)[0], exclude=list(probe.parameters()))
    except RunFailed:
        return None


@torch.no_grad()
def _evaluate(model, data: DeviceData, p: Protocol, classify: bool, autocast, stats_hook) -> dict[str, float]:
    model.eval()
    if stats_hook:
        stats_hook()
    out: dict[str, float] = {}
    if not classify:
        with torch.enable_grad() if getattr(model, "eval_needs_grad", False) else contextlib.nullcontext():
            out.update({f"test_{k}" if k in ("loss",) else k: float(v) for k, v in
                        model.evaluate_metrics(data.to_model_input(data.x_test), data.y_test,
                                               p.eval_batch_size).items()})
        return out
    splits = ["test"] + (["val"] if data.y_val is not None else [])
    for split in splits:
        loss_sum = torch.zeros((), device=data.device)
        correct = torch.zeros((), device=data.device, dtype=torch.long)
        n, stats = 0, {}
        for x, y in data.eval_batches(split, p.eval_batch_size):
            with autocast():
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
            if stats_hook:
                _accumulate(stats, stats_hook())
        out[f"{split}_loss"] = loss_sum.item() / n
        out[f"{split}_accuracy"] = 100.0 * correct.item() / n
        if split == "test":
            out.update({f"eval_{k}": v / max(stats.get("_n", 1), 1) for k, v in stats.items() if k != "_n"})
    return out


def _summarize(rows: list[dict], best: dict, p: Protocol, classify: bool, status: str) -> dict[str, Any]:
    evaluated = [r for r in rows if "test_accuracy" in r or "test_loss" in r or not classify]
    s: dict[str, Any] = {}
    if rows:
        times = [r["epoch_time_s"] for r in rows]
        s["train_time_s"] = sum(times)
        s["epoch_time_s"] = sum(times) / len(times)
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


def _accumulate(acc: dict[str, float], stats: dict[str, float]) -> None:
    acc["_n"] = acc.get("_n", 0) + 1
    for k, v in stats.items():
        acc[k] = acc.get(k, 0.0) + float(v)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _flat_params(spec: dict, runtime: dict, chash: str) -> dict[str, Any]:
    flat = {"model": spec["model"], "dataset": spec["dataset"], "seed": spec["seed"],
            "preset": spec.get("preset"), "config_hash": chash}
    flat.update({f"protocol.{k}": v for k, v in spec.get("protocol", {}).items()})
    flat.update({f"model_args.{k}": v for k, v in spec.get("model_args", {}).items()})
    flat.update({f"runtime.{k}": v for k, v in runtime.items()})
    return flat


class _Progress:
    """A tqdm bar on a terminal; one line per epoch (and every 30 s) in a log file."""

    def __init__(self, spec: dict, n_epochs: int, steps_per_epoch: int):
        self.name = f"{spec['model']}/{spec['dataset']}/seed{spec['seed']}"
        self.n_epochs, self.tty = n_epochs, sys.stderr.isatty()
        self.bar, self.last_print = None, time.time()
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=n_epochs * steps_per_epoch, desc=self.name, unit="step", leave=False)

    def step(self, epoch: int, step: int) -> None:
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh() if step % 10 == 0 else None
        elif time.time() - self.last_print > 30:
            print(f"[{self.name}] epoch {epoch + 1}/{self.n_epochs} step {step}", file=sys.stderr, flush=True)
            self.last_print = time.time()

    def epoch_done(self, row: dict) -> None:
        parts = [f"epoch {row['epoch']}/{self.n_epochs}", f"loss {row['train_loss']:.4f}"]
        if "train_accuracy" in row:
            parts.append(f"train acc {row['train_accuracy']:.2f}%")
        if "test_accuracy" in row:
            parts.append(f"test acc {row['test_accuracy']:.2f}%")
        parts.append(f"{row['images_per_s']:.0f} img/s")
        msg = f"[{self.name}] " + ", ".join(parts)
        if self.bar is not None:
            self.bar.write(msg)
        else:
            print(msg, file=sys.stderr, flush=True)
        self.last_print = time.time()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
