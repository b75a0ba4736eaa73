"""``debench plan``: what a configuration will cost, before the first job.

For every run the configuration asks for (experiment x dataset x model x seed), the number of
training images it processes follows from its resolved protocol (``iterations x batch_size``, or
``epochs x`` the train split less its validation share). Dividing by a *measured* training
throughput gives hours on each machine that has a measurement for that model under the same
training loop (precision and compile mode) in ``docs/measurements/*.json`` (the files
``benchmarks/throughput.py --out`` writes). A model never measured on a machine is counted as
unknown there, never guessed from another model.

Estimates cover training steps only, one job at a time per device: evaluation, data preparation
and the per-job start-up (about 4 s on a 2-core CPU, ``docs/measurements/job_overhead_cpu.txt``)
are not included, and the table says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debench.errors import ConfigError

# the throughput.py variant name for a training loop: (amp, compile mode)
_LOOPS = {("off", False): "fp32", ("bf16", False): "bf16", ("bf16", "default"): "bf16+compile",
          ("bf16", "reduce-overhead"): "bf16+cudagraphs", ("off", "reduce-overhead"): "fp32+cudagraphs"}


@dataclass(frozen=True)
class Measurement:
    """Median training throughput of one model under one loop on one machine."""

    device: str
    model: str
    loop: str
    img_s: float
    source: str


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
    for path in sorted(folder.glob("*.json")):
        try:
            rows = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for r in rows if isinstance(rows, list) else []:
            if isinstance(r, dict) and {"model", "loop", "device", "median_img_s"} <= r.keys():
                m = Measurement(str(r["device"]), str(r["model"]), str(r["loop"]),
                                float(r["median_img_s"]), path.name)
                key = (m.device, m.model, m.loop)
                # several files measured the same loop: keep the slowest (an estimate of cost
                # should not rest on the luckiest run)
                if key not in found or m.img_s < found[key].img_s:
                    found[key] = m
    return list(found.values())


def training_loop(runtime: dict[str, Any], device_type: str, model: str, timed_with: list[str] | None = None) -> str:
    """The throughput.py loop name a run of ``model`` uses on ``device_type`` under ``runtime``
    (the trainer's own precision and compile resolution, :mod:`debench.train.runtime`)."""
    from debench.registry import model_info
    from debench.train.runtime import continuous_depth, resolve_compile, resolve_precision

    info = model_info(model)
    train = resolve_precision(runtime.get("amp", "auto"), device_type, continuous_depth(info),
                              info.task == "classify")["train"]
    amp = "bf16" if train == "bf16" else "off"
    mode = resolve_compile(runtime.get("compile", "auto"), device_type, model, timed_with)
    return _LOOPS.get((amp, mode), f"{amp}+{mode}")


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


def plan(config: dict, measurements: list[Measurement]) -> list[dict[str, Any]]:
    """One row per (experiment, dataset, model): runs, images, and hours per measured machine.

    Returns:
        Rows with ``experiment``, ``dataset``, ``model``, ``runs``, ``images`` (all seeds) and,
        per machine, ``hours`` (``None`` where that model was never measured there) and the
        ``source`` file of the throughput used.
    """
    from debench.config import expand_runs, run_spec

    machines = sorted({(m.device, "cuda" if not m.device.startswith("CPU") else "cpu") for m in measurements})
    index = {(m.device, m.model, m.loop): m for m in measurements}
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
            m = index.get((device, model, training_loop(config.get("runtime", {}), kind, model, timed_with)))
            hours = None if m is None or per_run is None else per_run * n / m.img_s / 3600
            row["machines"][device] = {"hours": hours, "source": m.source if m else None,
                                       "loop": m.loop if m else None}
        rows.append(row)
    return rows


def measurement_runs(config: dict) -> int:
    """Runs of experiments that measure instead of training (``kind: measure``)."""
    from debench.config import expand_runs

    return sum(config["experiments"][r["experiment"]].get("kind", "train") != "train" for r in expand_runs(config))


def format_plan(rows: list[dict[str, Any]]) -> str:
    """The plan as text: per experiment and in total, with the sources and the unknowns."""
    machines = sorted({d for r in rows for d in r["machines"]})
    lines = ["training images only, one job at a time per device; evaluation and per-job start-up "
             "excluded; 'unknown' = that model was never measured there (no guess)", ""]
    head = f"{'experiment':<28}{'runs':>6}{'images (M)':>12}" + "".join(f"  {d[:30]:>30}" for d in machines)
    lines += [head, "-" * len(head)]
    by_exp: dict[str, list[dict]] = {}
    for r in rows:
        by_exp.setdefault(r["experiment"], []).append(r)

    def cells(group: list[dict]) -> str:
        out = []
        for d in machines:
            known = [r["machines"][d]["hours"] for r in group if r["machines"][d]["hours"] is not None]
            unknown = sum(r["runs"] for r in group if r["machines"][d]["hours"] is None)
            text = f"{sum(known):.2f} h" if known else "-"
            out.append(f"  {text + (f' +{unknown} unknown' if unknown else ''):>30}")
        return "".join(out)

    for exp, group in by_exp.items():
        imgs = [r["images"] for r in group if r["images"] is not None]
        lines.append(f"{exp:<28}{sum(r['runs'] for r in group):>6}{sum(imgs) / 1e6:>12.1f}" + cells(group))
    imgs = [r["images"] for r in rows if r["images"] is not None]
    lines += ["-" * len(head), f"{'total':<28}{sum(r['runs'] for r in rows):>6}{sum(imgs) / 1e6:>12.1f}" + cells(rows), ""]
    lines.append("sources (measured throughput used):")
    used = sorted({(d, r["model"], v["loop"], v["source"]) for r in rows for d, v in r["machines"].items() if v["source"]})
    lines += [f"  {d}: {m} ({loop}) from docs/measurements/{src}" for d, m, loop, src in used] or ["  none"]
    unknown = sorted({r["model"] for r in rows if any(v["hours"] is None for v in r["machines"].values())})
    lines.append(f"never measured on at least one machine ({len(unknown)} models): {', '.join(unknown)}")
    return "\n".join(lines)


def hours_total(rows: list[dict[str, Any]], device: str) -> float:
    """Sum of the known hours on ``device`` (nan if none is known)."""
    known = [r["machines"][device]["hours"] for r in rows if r["machines"].get(device, {}).get("hours") is not None]
    return sum(known) if known else math.nan
