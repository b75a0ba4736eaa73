"""``debench plan``: what a configuration will cost, before the first job.

For every run the configuration asks for (experiment x dataset x model x seed), the number of
training images it processes follows from its resolved protocol (``iterations x batch_size``, or
``epochs x`` the train split less its validation share). Dividing by a *measured* training
throughput gives hours on each machine class with a measurement for that model under the same
training loop (precision and compile mode) in ``docs/measurements/*.json``: the files
``benchmarks/throughput.py --out`` and ``debench calibrate --out`` write (a GPU calibration file
adds its card as a machine class).

Where a machine has no measurement of a model, its time is *scaled* from ResNet-20's on that
machine by the ratio of training FLOPs per image (``debench calibrate`` counts them on the CPU with
``torch.utils.flop_counter``, solver evaluations of continuous-depth models included) and marked as
scaled, with the error that rule makes on this CPU (predicting every calibrated model's CPU time
from ResNet-20's: :func:`scaling_error`). "Unknown" remains only where neither exists.

Estimates cover training steps only, one job at a time per device: evaluation, data preparation
and the per-job start-up (about 4 s on a 2-core CPU, ``docs/measurements/job_overhead_cpu.txt``)
are not included, and the table says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debench.errors import ConfigError

# the throughput.py variant name of a training loop: precision, then its compile mode
_COMPILE_SUFFIX = {False: "", "default": "+compile", "reduce-overhead": "+cudagraphs"}
# measurement rows' field naming the fp32 math of a CUDA measurement (written since IEEE fp32
# became the trainer's fp32, debench.train.runtime.apply_math_mode); a CUDA row without it was
# timed under torch's default, TF32 convolutions, and is loaded as a ``tf32`` loop
FP32_MATH = "fp32_math"


def loop_name(precision: str, compile_mode: str | bool) -> str:
    """The throughput.py variant name of a loop training in ``precision`` under ``compile_mode``."""
    suffix = _COMPILE_SUFFIX.get(compile_mode)
    return precision + suffix if suffix is not None else f"{precision}+{compile_mode}"


def _as_measured(row: dict[str, Any]) -> str:
    """A measurement row's loop as it ran: a CUDA ``fp32`` row timed before IEEE fp32 was set
    (no ``fp32_math`` field) or under TF32 is a ``tf32`` loop."""
    loop = str(row["loop"])
    cuda = not is_cpu(str(row["device"]))
    if cuda and loop.split("+")[0] == "fp32" and row.get(FP32_MATH, "tf32") != "ieee":
        return "tf32" + loop[len("fp32"):]
    return loop


@dataclass(frozen=True)
class Measurement:
    """Median training throughput of one model under one loop on one machine."""

    device: str
    model: str
    loop: str
    img_s: float
    source: str
    flops_per_image: float | None = None


SUPERSEDED = "superseded.json"


def superseded(folder: Path) -> set[tuple[str, str, str]]:
    """``(file, model, loop)`` of raw measurements withdrawn in ``folder/superseded.json``.

    Raw outputs stay as they were measured; a row found wrong later (too few warm-up steps, say) is
    withdrawn there with its reason and what replaces it, instead of being edited away. ``"model":
    "*"`` with ``"loop": "*"`` withdraws every row of the file (a calibration timed on a shared,
    loaded machine, replaced by one on a quiet machine).

    Raises:
        ConfigError: an entry lacks ``file``, ``model``, ``loop`` or ``reason``, or names a file
            that is not there.
    """
    path = Path(folder) / SUPERSEDED
    if not path.exists():
        return set()
    out = set()
    for i, e in enumerate(json.loads(path.read_text())):
        missing = [k for k in ("file", "model", "loop", "reason") if not e.get(k)]
        if missing:
            raise ConfigError(f"{path}: entry {i} lacks {', '.join(missing)}")
        if not (Path(folder) / e["file"]).exists():
            raise ConfigError(f"{path}: entry {i} names {e['file']}, which is not in {folder}")
        out.add((e["file"], e["model"], e["loop"]))
    return out


def load_measurements(folder: Path) -> list[Measurement]:
    """Every throughput row (``model``, ``loop``, ``device``, ``median_img_s``) in ``folder/*.json``.

    Raises:
        ConfigError: if ``folder`` does not exist (naming it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"measurements folder {folder} not found (run from the repository root "
                          "or pass --measurements)")
    found: dict[tuple[str, str, str], Measurement] = {}
    withdrawn = superseded(folder)
    for path in sorted(folder.rglob("*.json")):  # a session folder (h200_<date>/) too
        if path.name == SUPERSEDED:
            continue
        try:
            rows = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for r in rows if isinstance(rows, list) else []:
            if isinstance(r, dict) and {"model", "loop", "device", "median_img_s"} <= r.keys():
                rel = path.relative_to(folder).as_posix()
                if (rel, str(r["model"]), str(r["loop"])) in withdrawn or (rel, "*", "*") in withdrawn:
                    continue
                if r.get("unstable"):  # debench calibrate timed a warm-up step: not a throughput
                    continue
                m = Measurement(str(r["device"]), str(r["model"]), _as_measured(r),
                                float(r["median_img_s"]), path.name,
                                float(r["flops_per_image"]) if r.get("flops_per_image") else None)
                key = (m.device, m.model, m.loop)
                # several files measured the same loop: keep the slowest (an estimate of cost
                # should not rest on the luckiest run)
                old = found.get(key)
                if old is None or m.img_s < old.img_s:
                    found[key] = m
                if old is not None and not found[key].flops_per_image:  # a FLOP count is kept either way
                    found[key] = dataclasses.replace(found[key], flops_per_image=m.flops_per_image or
                                                     old.flops_per_image)
    return list(found.values())


def training_loop(runtime: dict[str, Any], device_type: str, model: str, timed_with: list[str] | None = None) -> str:
    """The throughput.py loop name a run of ``model`` uses on ``device_type`` under ``runtime``
    (the trainer's own precision and compile resolution, :mod:`debench.train.runtime`)."""
    from debench.registry import model_info
    from debench.train.runtime import continuous_depth, resolve_compile, resolve_precision

    info = model_info(model)
    train = resolve_precision(runtime.get("amp", "auto"), device_type, continuous_depth(info),
                              info.task == "classify")["train"]
    return loop_name(train, resolve_compile(runtime.get("compile", "auto"), device_type, model, timed_with))


def images_per_run(config: dict, experiment: str, dataset: str, model: str) -> int | None:
    """Training images one run processes under its resolved protocol (None: size unknown)."""
    from debench.config import protocol_for
    from debench.data.cache import DATASETS
    from debench.train.protocol import Protocol

    p = Protocol.from_dict(protocol_for(config, experiment, model), f"experiments.{experiment}.protocol")
    if p.iterations is not None:
        return p.iterations * p.batch_size
    spec = DATASETS.get(dataset)
    if spec is None:
        return None
    train = spec.sizes[0]
    data = config.get("data", {})
    if spec.kind == "image" and data.get("source") == "synthetic":
        train = int(data.get("synthetic", {}).get("train_size", train))
    return p.epochs * int(train * (1 - p.val_fraction))


REFERENCE = "resnet20"  # the model other models' times are scaled from


def is_cpu(device: str) -> bool:
    """Whether a measurement's machine class is a CPU (its name starts with ``CPU``)."""
    return device.startswith("CPU")


def flops_per_image(measurements: list[Measurement]) -> dict[str, float]:
    """Training FLOPs per image of each model, counted on a CPU (``debench calibrate``)."""
    out: dict[str, float] = {}
    for m in sorted(measurements, key=lambda m: not is_cpu(m.device)):  # CPU counts first (fp32, eager)
        if m.flops_per_image and m.model not in out:
            out[m.model] = m.flops_per_image
    return out


def scaling_error(measurements: list[Measurement], reference: str = REFERENCE) -> dict[str, Any] | None:
    """How well FLOP scaling predicts time where both are measured: each CPU class's models.

    Every model calibrated on a CPU class (and with FLOPs) gets a predicted throughput
    ``img_s(reference) x flops(reference) / flops(model)``; the ratio is predicted / measured time
    (above 1: the rule over-estimates). Returns ``n``, ``median``, ``worst`` (the ratio farthest
    from 1, either way), ``worst_model``, ``factor`` (``max(worst, 1/worst)``: the figure printed
    beside scaled hours), ``device`` and ``ratios`` per model; None without a CPU calibration.
    """
    flops = flops_per_image(measurements)
    for device in sorted({m.device for m in measurements if is_cpu(m.device)}):
        rows = {m.model: m for m in measurements if m.device == device and m.loop == "fp32"}
        ref = rows.get(reference)
        if ref is None or reference not in flops:
            continue
        ratios = {}
        for model, m in rows.items():
            if model == reference or model not in flops:
                continue
            predicted_img_s = ref.img_s * flops[reference] / flops[model]
            ratios[model] = m.img_s / predicted_img_s  # predicted time / measured time
        if not ratios:
            continue
        worst_model = max(ratios, key=lambda k: abs(math.log(ratios[k])))
        worst = ratios[worst_model]
        return {"device": device, "n": len(ratios), "median": statistics.median(ratios.values()),
                "worst": worst, "worst_model": worst_model, "factor": max(worst, 1 / worst),
                "ratios": dict(sorted(ratios.items()))}
    return None


def _estimate(device: str, model: str, loop: str, index: dict, flops: dict[str, float]
              ) -> tuple[Measurement | None, str]:
    """The throughput used for ``model`` on ``device``: measured (same loop, or for an fp32 loop the
    same model timed in TF32 or bf16 under the same compile mode, a lower bound the plan names), or
    scaled, or none.

    Returns:
        (a Measurement whose ``img_s`` is the estimate, how: ``measured``, ``scaled`` or ``unknown``).
    """
    m = index.get((device, model, loop))
    if m is not None:
        return m, "measured"
    if loop.startswith("fp32"):  # the same model timed in TF32, else bf16 (GPU rows from before IEEE fp32)
        for lower in ("tf32", "bf16"):
            m = index.get((device, model, loop.replace("fp32", lower, 1)))
            if m is not None:
                return m, "measured"
    if model not in flops or REFERENCE not in flops:
        return None, "unknown"
    # the run's own loop first, then the nearest in precision: an IEEE fp32 GPU run falls back on TF32
    near = (loop, "fp32", loop.replace("fp32", "tf32", 1), "tf32", "bf16", "bf16+cudagraphs")
    refs = [index.get((device, REFERENCE, lp)) for lp in dict.fromkeys(near)]
    ref = next((r for r in refs if r is not None), None)
    if ref is None:
        return None, "unknown"
    img_s = ref.img_s * flops[REFERENCE] / flops[model]
    return Measurement(device, model, ref.loop, img_s, ref.source), "scaled"


def plan(config: dict, measurements: list[Measurement]) -> list[dict[str, Any]]:
    """One row per (experiment, dataset, model): runs, images, and hours per measured machine.

    Returns:
        Rows with ``experiment``, ``dataset``, ``model``, ``runs``, ``images`` (all seeds) and,
        per machine, ``hours`` (``None`` where neither measured nor scalable), ``how``
        (``measured``/``scaled``/``unknown``), the ``source`` file and the ``loop`` of the
        throughput used.
    """
    from debench.config import expand_runs, run_spec

    machines = sorted({(m.device, "cpu" if is_cpu(m.device) else "cuda") for m in measurements})
    index = {(m.device, m.model, m.loop): m for m in measurements}
    flops = flops_per_image(measurements)
    groups: dict[tuple[str, str, str], int] = {}
    for run in expand_runs(config):
        if config["experiments"][run["experiment"]].get("kind", "train") != "train":
            continue  # measurement runs train nothing: seconds to minutes each, not estimated here
        key = (run["experiment"], run["dataset"], run["model"])
        groups[key] = groups.get(key, 0) + 1
    rows = []
    for (exp, ds, model), n in groups.items():
        per_run = images_per_run(config, exp, ds, model)
        timed_with = run_spec(config, exp, ds, model, 0, cache="", metrics="", checkpoints="",
                              tracking={})["timed_with"]
        row: dict[str, Any] = {"experiment": exp, "dataset": ds, "model": model, "runs": n,
                               "images": None if per_run is None else per_run * n, "machines": {}}
        for device, kind in machines:
            loop = training_loop(config.get("runtime", {}), kind, model, timed_with)
            m, how = _estimate(device, model, loop, index, flops)
            hours = None if m is None or per_run is None else per_run * n / m.img_s / 3600
            row["machines"][device] = {"hours": hours, "how": how if hours is not None else "unknown",
                                       "source": m.source if m else None, "loop": m.loop if m else None,
                                       "wanted": loop}
        rows.append(row)
    return rows


def measurement_runs(config: dict) -> int:
    """Runs of experiments that measure instead of training (``kind: measure``)."""
    from debench.config import expand_runs

    return sum(config["experiments"][r["experiment"]].get("kind", "train") != "train" for r in expand_runs(config))


def format_plan(rows: list[dict[str, Any]], error: dict[str, Any] | None = None) -> str:
    """The plan as text: per experiment and in total, measured and scaled hours, sources, unknowns.

    Args:
        rows: :func:`plan`'s rows.
        error: :func:`scaling_error`, printed beside every scaled figure (``x/`` its factor).
    """
    machines = sorted({d for r in rows for d in r["machines"]}, key=lambda d: (not is_cpu(d), d))
    factor = f" x/{error['factor']:.1f}" if error else " (error unknown)"
    lines = ["training images only, one job at a time per device; evaluation and per-job start-up excluded.",
             "hours = measured + scaled (scaled: from ResNet-20 on that machine by training FLOPs per image;",
             f"x/F beside it: the worst error factor of that rule on this CPU"
             + (f", {error['n']} models, median ratio {error['median']:.2f}" if error else "") + ");",
             "unknown = neither measured nor scalable there", ""]
    width = 34
    head = f"{'experiment':<28}{'runs':>6}{'images (M)':>12}" + "".join(f"  {d[:width]:>{width}}" for d in machines)
    lines += [head, "-" * len(head)]
    by_exp: dict[str, list[dict]] = {}
    for r in rows:
        by_exp.setdefault(r["experiment"], []).append(r)

    def cells(group: list[dict]) -> str:
        out = []
        for d in machines:
            cell = [r["machines"][d] | {"runs": r["runs"]} for r in group]
            total = sum(c["hours"] for c in cell if c["hours"] is not None)
            scaled = sum(c["hours"] for c in cell if c["how"] == "scaled")
            unknown = sum(c["runs"] for c in cell if c["hours"] is None)
            text = f"{total:.1f} h" if any(c["hours"] is not None for c in cell) else "-"
            if scaled:
                text += f" ({scaled:.1f} scaled{factor})"
            if unknown:
                text += f" +{unknown} unknown"
            out.append(f"  {text:>{width}}")
        return "".join(out)

    for exp, group in by_exp.items():
        imgs = [r["images"] for r in group if r["images"] is not None]
        lines.append(f"{exp:<28}{sum(r['runs'] for r in group):>6}{sum(imgs) / 1e6:>12.1f}" + cells(group))
    imgs = [r["images"] for r in rows if r["images"] is not None]
    lines += ["-" * len(head), f"{'total':<28}{sum(r['runs'] for r in rows):>6}{sum(imgs) / 1e6:>12.1f}" + cells(rows), ""]
    lines.append("machines and sources:")
    for d in machines:
        cs = [v for r in rows for dd, v in r["machines"].items() if dd == d]
        measured = sorted({f"{v['source']}" for v in cs if v["how"] == "measured"})
        n_meas = len({r["model"] for r in rows if r["machines"][d]["how"] == "measured"})
        n_scaled = len({r["model"] for r in rows if r["machines"][d]["how"] == "scaled"})
        lines.append(f"  {d}: {n_meas} models measured ({', '.join(measured) or 'none'}), {n_scaled} scaled")
        other = sorted({f"{v['wanted']} from {v['loop']}" for v in cs
                        if v["loop"] is not None and v["loop"] != v["wanted"]})
        if other:
            lines.append(f"    timed under another loop than the runs train in ({'; '.join(other)}): "
                         "IEEE fp32 is slower than TF32 or bf16 on a GPU, so those hours are a lower bound")
    unknown = sorted({r["model"] for r in rows if any(v["hours"] is None for v in r["machines"].values())})
    lines.append(f"unknown on at least one machine ({len(unknown)} models): {', '.join(unknown) or 'none'}")
    if error:
        lines.append(f"scaling error on {error['device']}: median predicted/measured time {error['median']:.2f}, "
                     f"worst {error['worst']:.2f} ({error['worst_model']}) over {error['n']} models")
    return "\n".join(lines)


def hours_total(rows: list[dict[str, Any]], device: str) -> float:
    """Sum of the known hours on ``device`` (nan if none is known)."""
    known = [r["machines"][device]["hours"] for r in rows if r["machines"].get(device, {}).get("hours") is not None]
    return sum(known) if known else math.nan
