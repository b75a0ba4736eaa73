"""``debench calibrate``: time a few training steps of every registered model, here.

For each model the calibration takes the protocol (batch size, optimizer) and dataset of the
first training experiment of the config that lists it (a model no experiment lists: the
registry's default protocol on CIFAR-10, or MNIST for a name containing ``mnist``), builds the
model exactly as ``debench train`` does (same factory arguments, precision, compile mode, memory
layout, optimizer), feeds it synthetic data of the dataset's shape resident on the device, and
times ``--steps`` optimizer steps after ``--warmup`` untimed ones. It also counts the floating
point operations of one whole training step (forward, loss and backward, every solver function
evaluation included, so an adaptive solver's NFE at this step is in the count) with
``torch.utils.flop_counter.FlopCounterMode``, and on CUDA records the peak memory.

One JSON row per model (``model``, ``loop``, ``device``, ``median_img_s`` and the rest); the
rows are what :mod:`debench.plan` reads from ``docs/measurements/*.json``. A model that fails
(out of memory, a missing package) gets a row with ``error`` and no throughput: the calibration
goes on with the next one.

Caveats, printed in the output too: the few steps are timed at initialisation, where an
adaptive solver's NFE is the early-training one (it usually grows later); the data are synthetic
(same shape, so the same cost per step except for adaptive solvers).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("debench.calibrate")


def model_protocols(config: dict | None, models: list[str]) -> dict[str, dict[str, Any]]:
    """For each model: ``experiment``, ``dataset`` and the protocol dict it is calibrated at."""
    from debench.config import expand_runs, protocol_for

    found: dict[str, dict[str, Any]] = {}
    if config is not None:
        for run in expand_runs(config):
            exp = config["experiments"][run["experiment"]]
            if exp.get("kind", "train") != "train" or run["model"] in found:
                continue
            found[run["model"]] = {"experiment": run["experiment"], "dataset": run["dataset"],
                                   "protocol": protocol_for(config, run["experiment"], run["model"]),
                                   "model_args": exp.get("model_args", {}).get(run["model"], {})}
    for m in models:
        if m not in found:
            found[m] = {"experiment": None, "dataset": "mnist" if "mnist" in m else "cifar10",
                        "protocol": dict((config or {}).get("defaults", {}).get("protocol", {})),
                        "model_args": {}}
    return {m: found[m] for m in models}


def device_name(device: Any, threads: int) -> str:
    """The machine class a measurement belongs to: the GPU's name, or the CPU model and threads."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from debench.track.provenance import cpu_model

    return f"CPU {cpu_model()} x{threads} threads"


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


OUTLIER = 5.0  # a timed step this many times slower than the fastest one marks the row unstable


def time_steps(one_step, steps: int, max_step_s: float | None, sync, clock=time.perf_counter) -> tuple[list[float], int]:
    """Seconds of each of up to ``steps`` calls of ``one_step`` (which returns its batch size).

    ``max_step_s`` bounds a slow model's timing: it stops once the fastest step times the steps
    taken exceeds it. The fastest, not the sum: one slow step (a late cuDNN autotune) must not end
    the timing after two steps, whose median would then be that outlier's average.
    """
    times, n = [], 0
    for _ in range(steps):
        sync()
        t0 = clock()
        n = one_step()
        sync()
        times.append(clock() - t0)
        if max_step_s is not None and min(times) * len(times) > max_step_s:
            break  # a slow model: fewer timed steps rather than hours
    return times, n


def calibrate_model(name: str, setup: dict[str, Any], runtime_cfg: dict[str, Any], device_str: str,
                    threads: int, steps: int, warmup: int, cache_dir: Path, count_flops: bool = True,
                    max_step_s: float | None = None, max_batch: int | None = None) -> dict[str, Any]:
    """Time ``steps`` training steps of ``name`` (after ``warmup``) and count one step's FLOPs.

    Returns:
        The row: ``model``, ``loop``, ``device``, ``batch_size``, ``median_img_s``, ``s_per_step``
        (each timed step), ``flops_per_image`` (None if not counted), ``nfe`` (forward solver
        evaluations of the counted step where the model reports them), ``peak_memory_mb`` (CUDA).
    """
    import torch
    import torch.nn.functional as F

    from debench.data import DeviceData, load_cached, prepare_dataset
    from debench.data.cache import DATASETS
    from debench.plan import FP32_MATH, loop_name
    from debench.registry import create_model, model_info
    from debench.train.build import factory_kwargs, make_optimizer
    from debench.train.protocol import Protocol
    from debench.train.runtime import apply_math_mode, continuous_depth, resolve_runtime

    info = model_info(name)
    proto = dict(setup["protocol"])
    if "epochs" not in proto and "iterations" not in proto:
        proto["epochs"] = 1  # the length does not change a step's cost
    p = Protocol.from_dict(proto)
    protocol_batch = p.batch_size
    if max_batch is not None and p.batch_size > max_batch:  # a slow CPU: per-image cost at a smaller batch
        import dataclasses

        p = dataclasses.replace(p, batch_size=max_batch)
    ds = setup["dataset"]
    # enough rows for a few batches, a whole number of them (array datasets build at their own sizes)
    rows = -(-max(2 * p.batch_size, 256) // p.batch_size) * p.batch_size
    cache = cache_dir / f"{ds}-{rows}.npz"
    if not cache.exists():
        spec = DATASETS[ds]
        prepare_dataset(ds, "synthetic", cache, train_size=rows, test_size=64, seed=0)
        del spec
    arrays, meta = load_cached(cache)
    classify = info.task == "classify"
    rt = resolve_runtime({**runtime_cfg, "device": device_str, "threads": threads}, name,
                         adaptive=continuous_depth(info), classify=classify, timed_with=[])
    loop = loop_name(rt["precision"]["train"], rt["compile"])
    fp32_math = apply_math_mode(rt["precision"])
    device = torch.device(rt["device"])
    torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    data = DeviceData(arrays, meta, device, 0.0, split_seed=0, normalize=classify, norm=p.input_norm)
    kwargs = factory_kwargs(name, meta, setup.get("model_args", {}))
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    image = meta.get("kind") == "image"
    model = model.to(device, memory_format=torch.channels_last if rt["channels_last"] and image
                     else torch.contiguous_format)
    opt = make_optimizer(model, p, device)
    step_fn = torch.compile(model, mode=rt["compile"]) if rt["compile"] else model
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if rt["amp"] == "bf16" \
        else contextlib.nullcontext
    stats_hook = getattr(model, "debench_stats", None)
    reg_hook = getattr(model, "regularization_loss", None)
    augment = dict(crop_padding=p.crop_padding, flip=p.flip) if classify else {}

    full = min(p.batch_size, data.num_train)

    def batches():
        """Full batches only: an epoch's smaller last batch would be timed as a fast step of
        ``batch_size`` images (the median then mixed sizes, and the row was marked unstable)."""
        gen = torch.Generator(device=device).manual_seed(0)
        while True:
            yield from (b for b in data.train_batches(p.batch_size, gen, **augment) if len(b[1]) == full)

    it = batches()

    def one_step(m: Callable = step_fn) -> int:
        x, y = next(it)
        with autocast():
            if classify:
                loss = F.cross_entropy(m(x).float(), y, label_smoothing=p.label_smoothing)
            else:
                loss = m.training_loss(x, y)
            if reg_hook is not None:
                loss = loss + reg_hook()
        loss.backward()
        if p.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return len(y)

    row: dict[str, Any] = {"model": name, "loop": loop, FP32_MATH: fp32_math, "family": info.family, "task": info.task,
                           "experiment": setup["experiment"], "dataset": ds, "batch_size": protocol_batch,
                           "timed_batch": p.batch_size,
                           "optimizer": p.optimizer, "threads": threads}
    flops, nfe, method = None, None, None
    if count_flops:
        flops, nfe, method = _count_flops(model, one_step, stats_hook, opt)
    t_warm = time.perf_counter()
    for _ in range(warmup):
        one_step()
    _sync(device)
    warm_s = time.perf_counter() - t_warm
    times, n = time_steps(one_step, steps, max_step_s, lambda: _sync(device))
    med = statistics.median(times)
    if max(times) > OUTLIER * min(times):
        row["unstable"] = (f"timed steps range {min(times):.4g} to {max(times):.4g} s: a warm-up step "
                           "(autotuning, allocator growth) was timed; calibrate again with more --warmup")
    row.update({"median_img_s": n / med, "s_per_step": times, "warmup_s": warm_s,
                "flops_per_image": flops, "flops_method": method, "nfe_counted_step": nfe,
                "peak_memory_mb": (torch.cuda.max_memory_allocated(device) / 2**20
                                   if device.type == "cuda" else None)})
    return row


def _count_flops(model: Any, one_step: Callable, stats_hook: Callable | None, opt: Any
                 ) -> tuple[float | None, dict | None, str | None]:
    """FLOPs per image of one eager training step, the solver's NFE in it, and how they were counted.

    The whole step (forward, loss, backward) is counted where ``FlopCounterMode`` can follow it.
    An adjoint backward calls ``autograd.grad`` inside the backward pass, which the counter cannot
    follow: then the forward alone is counted and the backward is taken as two forward-evaluation
    costs (a vector-Jacobian product) per backward solver evaluation, or twice the forward where the
    model counts no backward evaluations (plain backpropagation).
    """
    from torch.utils.flop_counter import FlopCounterMode

    if stats_hook:
        stats_hook()  # reset the solver's counters
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            n = one_step(model)  # eager: the counter sees every op, a compiled graph would hide them
        stats = stats_hook() if stats_hook else None
        return counter.get_total_flops() / n, stats, "forward+backward counted"
    except RuntimeError:
        opt.zero_grad(set_to_none=True)
    if stats_hook:
        stats_hook()
    fwd = FlopCounterMode(display=False)
    holder: dict[str, Any] = {}

    class _CountForward:
        def __call__(self, x: Any) -> Any:
            with fwd:
                return model(x)

        def training_loss(self, x: Any, y: Any) -> Any:
            with fwd:
                return model.training_loss(x, y)

    try:
        n = one_step(_CountForward())
    except RuntimeError as exc:  # the forward itself differentiates (FFJORD's trace): not countable
        opt.zero_grad(set_to_none=True)
        return None, None, f"not countable: {str(exc).splitlines()[0][:120]}"
    stats = stats_hook() if stats_hook else None
    f = fwd.get_total_flops()
    nf, nb = (stats or {}).get("nfe_forward"), (stats or {}).get("nfe_backward")
    if nf and nb:
        holder["flops"] = f * (1 + 2 * nb / nf)
        method = "forward counted; adjoint backward = 2 x forward cost per evaluation x NFE backward / NFE forward"
    else:
        holder["flops"] = 3 * f
        method = "forward counted; backward = 2 x forward"
    return holder["flops"] / n, stats, method


def _too_long(signum: int, frame: Any) -> None:
    raise TimeoutError("over --model-timeout-s")


def calibrate(models: list[str], config: dict | None, device_str: str = "cpu", threads: int = 1,
              steps: int = 3, warmup: int = 1, count_flops: bool = True, max_step_s: float | None = None,
              max_batch: int | None = None, model_timeout_s: int | None = None,
              runtime: dict[str, Any] | None = None, echo: Callable[[str], None] = print,
              out: Path | None = None, resume: bool = False) -> list[dict[str, Any]]:
    """Calibrate ``models`` one after the other; a failing model gets an ``error`` row.

    Rows are written to ``out`` (JSON) after every model, so an interrupted calibration keeps
    what it measured; ``resume`` keeps the measured rows of ``out`` (same device) and times the rest.
    """
    import torch

    runtime = dict(runtime if runtime is not None else (config or {}).get("runtime", {}))
    setups = model_protocols(config, models)
    device = torch.device(device_str)
    name = device_name(device, threads)
    echo(f"device: {name}; torch {torch.__version__}; python {platform.python_version()}; "
         f"{steps} timed step(s) after {warmup} warm-up; load average {os.getloadavg()[0]:.2f}")
    rows: list[dict[str, Any]] = []
    if resume and out is not None and Path(out).exists():  # keep what an interrupted calibration measured
        rows = [r for r in json.loads(Path(out).read_text()) if "median_img_s" in r and r.get("device") == name
                and r["model"] in models]
        echo(f"resuming: {len(rows)} model(s) already measured in {out}")
    done = {r["model"] for r in rows}
    with tempfile.TemporaryDirectory(prefix="debench-calibrate-") as tmp:
        for i, m in enumerate(models, 1):
            if m in done:
                continue
            t0 = time.perf_counter()
            if model_timeout_s:  # a model stuck in one step (a stiff adaptive solve) must not eat the budget
                signal.signal(signal.SIGALRM, _too_long)
                signal.alarm(model_timeout_s)
            try:
                row = calibrate_model(m, setups[m], runtime, device_str, threads, steps, warmup, Path(tmp),
                                      count_flops, max_step_s, max_batch)
                msg = (f"{row['median_img_s']:10.1f} img/s  batch {row['timed_batch']:4d}/{row['batch_size']:4d}"
                       f"  {row['loop']:16s}"
                       f" MFLOP/img {row['flops_per_image'] / 1e6 if row['flops_per_image'] else float('nan'):10.1f}"
                       + (f"  peak {row['peak_memory_mb']:.0f} MB" if row["peak_memory_mb"] else ""))
            except ModuleNotFoundError as exc:  # a package this machine lacks (torchsde on the GPU box)
                row = {"model": m, "error": f"ModuleNotFoundError: {exc}", "skipped": f"needs {exc.name}",
                       "experiment": setups[m]["experiment"], "dataset": setups[m]["dataset"]}
                msg = f"SKIPPED (needs {exc.name})"
            except Exception as exc:  # noqa: BLE001 - one model's failure must not stop the others
                err = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
                row = {"model": m, "error": err, "experiment": setups[m]["experiment"],
                       "dataset": setups[m]["dataset"]}
                msg = f"FAILED {err}"
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            finally:
                if model_timeout_s:
                    signal.alarm(0)
            row["device"] = name
            row["wall_s"] = time.perf_counter() - t0
            rows.append(row)
            echo(f"[{i}/{len(models)}] {m:34s} {msg}  ({row['wall_s']:.1f} s)")
            if out is not None:
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                Path(out).write_text(json.dumps(rows, indent=1) + "\n")
    skipped = [f"{r['model']} ({r['skipped']})" for r in rows if "skipped" in r]
    failed = [r["model"] for r in rows if "error" in r and "skipped" not in r]
    echo(f"calibrated {len(rows) - len(failed) - len(skipped)} of {len(rows)} models"
         + (f"; skipped: {', '.join(skipped)}" if skipped else "")
         + (f"; failed: {', '.join(failed)}" if failed else ""))
    return rows
