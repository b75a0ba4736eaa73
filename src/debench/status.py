"""Progress of a preset's DAG in one line, from the run records alone (``debench status``).

A run is *done* when its ``metrics.json`` says ``status: ok``, *failed* when its record says
otherwise (a NaN loss, a solver failure) or when its job left a log but no record and the log
has been quiet for ``stale_s``, *running* when its log is younger than that, and *left* when the
config expects it and nothing of it exists yet. A record that is unreadable or breaks the
run-record schema (:mod:`debench.record_format`) is *invalid*, with the reason: an unknown
``status`` is never counted as a failure. The time left is the mean wall time of the
finished runs of the same model (Snakemake's benchmark file, else the record's train time; all
finished runs where a model has none) times the runs left (a running run counts half), divided
by the jobs running at once.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from debench.record_format import RecordFormatError, read_record


@dataclass
class Progress:
    """Counts of one preset's runs and the estimated seconds left (None: nothing to estimate from)."""

    preset: str
    done: list[tuple] = field(default_factory=list)
    running: list[tuple] = field(default_factory=list)
    failed: list[tuple] = field(default_factory=list)
    left: list[tuple] = field(default_factory=list)
    invalid: list[tuple[tuple, str]] = field(default_factory=list)  # (run, why its record was refused)
    eta_s: float | None = None
    durations: int = 0

    def line(self) -> str:
        """The one-line summary ``debench status`` prints."""
        total = len(self.done) + len(self.running) + len(self.failed) + len(self.left) + len(self.invalid)
        eta = "no finished run to estimate the time left from" if self.eta_s is None else (
            f"about {_hms(self.eta_s)} left (mean of {self.durations} finished runs, "
            f"{max(len(self.running), 1)} at a time)")
        return (f"{self.preset}: {len(self.done)}/{total} done, {len(self.running)} running, "
                f"{len(self.failed)} failed, {len(self.left)} left"
                f"{f', {len(self.invalid)} invalid record(s)' if self.invalid else ''}; {eta}")


def _hms(seconds: float) -> str:
    m = int(round(seconds / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{max(m, 1)} min"


def expected_runs(config_path: Path) -> tuple[str, list[tuple]]:
    """``(preset, [(experiment, dataset, model, seed), ...])`` the config at ``config_path`` asks for.

    Raises:
        debench.errors.ConfigError: the config is unreadable or invalid (the file and key are named).
    """
    from debench.config import expand_runs, load_config

    config = load_config(config_path)  # validated with defaults, as the workflow reads it
    runs = [(r["experiment"], r["dataset"], r["model"], r["seed"]) for r in expand_runs(config)]
    return str(config["preset"]), runs


def _duration(results: Path, run: tuple, record: dict) -> float | None:
    bench = results / "benchmarks" / "train" / run[0] / run[1] / run[2] / f"seed{run[3]}.tsv"
    try:
        with bench.open() as f:
            return float(next(csv.DictReader(f, delimiter="\t"))["s"])
    except (OSError, StopIteration, KeyError, ValueError):
        value = record.get("train_time_s")
        return float(value) if isinstance(value, (int, float)) else None


def progress(results: Path, runs: list[tuple], preset: str, stale_s: float = 1800.0,
             now: float | None = None) -> Progress:
    """Classify every expected run of ``results`` (``results/<preset>``) and estimate the time left.

    Args:
        results: the preset's results folder.
        runs: the runs the config expects, as ``(experiment, dataset, model, seed)``.
        preset: its name, for the summary line.
        stale_s: seconds after which a job's quiet log without a record counts as failed.
        now: the current time (tests pass it).

    Returns:
        A :class:`Progress`.
    """
    now = time.time() if now is None else now
    out, spent = Progress(preset), {}
    for run in runs:
        rel = Path(run[0]) / run[1] / run[2] / f"seed{run[3]}"
        metrics = results / "runs" / rel / "metrics.json"
        log = results / "logs" / "train" / rel.parent / f"seed{run[3]}.log"
        if metrics.exists():
            try:
                record = read_record(metrics)  # parsed and checked against the run-record schema
            except RecordFormatError as exc:
                out.invalid.append((run, str(exc)))
                continue
            if record["status"] == "ok":
                out.done.append(run)
                seconds = _duration(results, run, record)
                if seconds is not None:
                    spent.setdefault(run[2], []).append(seconds)
            else:
                out.failed.append(run)
        elif log.exists():
            (out.running if now - log.stat().st_mtime < stale_s else out.failed).append(run)
        else:
            out.left.append(run)
    every = [s for v in spent.values() for s in v]
    if every:
        mean = sum(every) / len(every)

        def per(run):
            own = spent.get(run[2])
            return sum(own) / len(own) if own else mean

        work = sum(per(r) for r in out.left) + sum(per(r) / 2 for r in out.running)
        out.eta_s, out.durations = work / max(len(out.running), 1), len(every)
    return out


def run_protocol(config: dict, run: tuple) -> dict:
    """The protocol a loaded ``config`` gives ``run`` (defaults and overrides applied)."""
    from debench.config import run_identity

    return run_identity(config, *run)["protocol"]


def running_line(results: Path, run: tuple, protocol: dict | None = None) -> str | None:
    """One line on a running run, from its ``epochs.csv`` and checkpoint times: epoch, step, the
    last test error, the wall time of its last epoch and the time it has left.

    The wall time of an epoch (training, evaluation and checkpoint) is the gap between the two
    newest checkpoints (one is written per epoch, the last two are kept); with a single checkpoint
    it is the epoch's training time alone, and the line says so. None when no epoch has finished.

    Args:
        results: the preset's results folder.
        run: ``(experiment, dataset, model, seed)``.
        protocol: the run's protocol (:func:`run_protocol`): its ``iterations``, or its
            ``epochs`` times the steps per epoch read from the run's rows, give the steps planned.
    """
    rel = Path(run[0]) / run[1] / run[2] / f"seed{run[3]}"
    try:
        with (results / "runs" / rel / "epochs.csv").open() as f:
            rows = list(csv.DictReader(f))
        last = rows[-1]
        epoch, step = int(last["epoch"]), int(last["step"])
    except (OSError, IndexError, KeyError, ValueError):
        return None
    per_epoch = step / epoch
    protocol = protocol or {}
    total = protocol.get("iterations") or (round(protocol["epochs"] * per_epoch) if protocol.get("epochs") else None)
    # checkpoints sit in one folder per config hash: only the newest folder is this run's
    ckpts = sorted((results / "checkpoints" / rel).glob("*/ckpt-epoch*.pt"), key=lambda q: q.stat().st_mtime)
    ckpts = [q for q in ckpts if ckpts and q.parent == ckpts[-1].parent]
    if len(ckpts) >= 2:
        epoch_s, how = ckpts[-1].stat().st_mtime - ckpts[-2].stat().st_mtime, "wall"
    else:
        try:
            epoch_s, how = float(last["epoch_time_s"]), "training only"
        except (KeyError, ValueError):
            epoch_s, how = None, ""
    parts = [f"running {'/'.join(map(str, run[:3]))}/seed{run[3]}: epoch {epoch}"
             + (f" of {-(-total // round(per_epoch))}" if total else ""),
             f"step {step}" + (f"/{total}" if total else "")]
    try:
        parts.append(f"test error {100.0 - float(last['test_accuracy']):.2f}% after epoch {epoch}")
    except (KeyError, ValueError):
        pass
    if epoch_s:
        parts.append(f"{epoch_s:.0f} s per epoch ({how})")
        if total and total > step:
            parts.append(f"about {_hms((total - step) / per_epoch * epoch_s)} left for this run")
        elif total:
            parts.append("all steps done, writing its record")
    return ", ".join(parts)


def find_config(name: str, config_dir: Path = Path("config")) -> Path:
    """A config file given its path, or the file under ``config_dir`` whose ``preset`` is ``name``.

    Raises:
        debench.errors.ConfigError: neither exists; the message lists the presets found.
    """
    if Path(name).is_file():
        return Path(name)
    found = {}
    for path in sorted(config_dir.glob("*.yaml")):
        try:
            found[str((yaml.safe_load(path.read_text()) or {}).get("preset"))] = path
        except (OSError, yaml.YAMLError):
            continue
    if name in found:
        return found[name]
    from debench.errors import ConfigError

    raise ConfigError(f"no config file {name!r} and no preset {name!r} in {config_dir}/ "
                      f"(presets there: {', '.join(sorted(found)) or 'none'})")
