"""Progress of a preset's DAG in one line, from the run records alone (``debench status``).

A run is *done* when its ``metrics.json`` says ``status: ok`` and *failed* when its record says
otherwise (a NaN loss, a solver failure). A record that is unreadable or breaks the run-record
schema (:mod:`debench.record_format`) is *invalid*, with the reason (and, when its job's log says
the run finished, that too): an unknown ``status`` is never counted as a failure. A run whose job
left a log but no record is

* *running* when a live ``debench train`` process of this host trains it (read from ``/proc``);
* *failed* when its log ends in an error (a traceback, ``debench train: error: ...``), or says
  the run finished although no record is there;
* *stopped* when no live process trains it and none will on another host: no Snakemake works in
  the folder above ``results/``, or the ones that do run their jobs on this host (a machine stop,
  a killed Snakemake); the line says the checkpoint epoch it resumes from;
* else (no ``/proc``, or a Snakemake that submits jobs to a cluster): *running* while its log is
  younger than ``stale_s``, *failed* after.

A run is *left* when the config expects it and nothing of it exists yet, and *published* instead
when a published run table holds its finished record (a campaign that goes on elsewhere, or on a
new machine after some seeds joined ``results/published/runs.csv``: those are not trained again;
``results/<preset>/PUBLISHED`` names the table, :func:`finished_rows`). The time left is, for
each run not finished, its remaining steps at the pace of its model's epochs so far (the median
epoch of a running or stopped run of the same dataset, model and batch size, :func:`pace`; a
stopped run resumes from its checkpoint), else the mean wall time of the finished runs of the same
model (Snakemake's benchmark file, else the record's train time; all finished runs where a model
has none; a running run counts half); the sum is divided by the jobs running at once. With nothing
left to run, the line says so instead.
"""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
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
    stopped: list[tuple] = field(default_factory=list)  # a log, no record, and no live process
    published: list[tuple] = field(default_factory=list)  # no record here; a finished one in the published table
    published_from: str | None = None  # that table, as the line names it
    why: dict[tuple, str] = field(default_factory=dict)  # a failed or stopped run: what its log or the host says
    eta_s: float | None = None
    durations: int = 0  # finished runs the estimate averaged
    paced: int = 0  # unfinished runs estimated from the pace of their model's epochs so far

    def line(self) -> str:
        """The one-line summary ``debench status`` prints."""
        total = (len(self.done) + len(self.running) + len(self.failed) + len(self.left) + len(self.invalid)
                 + len(self.stopped) + len(self.published))
        if not (self.running or self.left or self.stopped):
            eta = "nothing left to run" + (" (rerun the failed runs to finish)" if self.failed or self.invalid else "")
        elif self.eta_s is None:
            eta = "no finished run to estimate the time left from"
        else:
            basis = [f"{self.paced} runs at the pace of the epochs so far"] if self.paced else []
            basis += [f"mean of {self.durations} finished runs"] if self.durations else []
            eta = f"about {_hms(self.eta_s)} left ({'; '.join(basis)}, {max(len(self.running), 1)} at a time)"
        return (f"{self.preset}: {len(self.done)}/{total} done, "
                + (f"{len(self.published)} published ({self.published_from}), " if self.published else "")
                + f"{len(self.running)} running, "
                + (f"{len(self.stopped)} stopped, " if self.stopped else "")
                + f"{len(self.failed)} failed, {len(self.left)} left"
                f"{f', {len(self.invalid)} invalid record(s)' if self.invalid else ''}; {eta}")


def _hms(seconds: float) -> str:
    m = int(round(seconds / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else (f"{m} min" if m >= 1 else "under 1 min")


@dataclass
class Live:
    """What this host's processes tell about the jobs of one workflow folder (:func:`live_jobs`)."""

    trains: dict[str, int] = field(default_factory=dict)  # resolved metrics.json path -> pid of its `debench train`
    snakemakes: list[int] = field(default_factory=list)  # Snakemake processes working in the workflow folder
    remote: bool = False  # one of them may run jobs on other hosts (a cluster executor): absence proves nothing


_REMOTE_FLAGS = ("--cluster", "--cluster-generic-submit-cmd", "--cluster-sync", "--slurm", "--kubernetes",
                 "--drmaa", "--flux", "--tibanna", "--google-lifesciences")
_REMOTE_KEYS = ("cluster", "cluster-generic-submit-cmd", "cluster-sync", "slurm", "kubernetes", "drmaa", "flux")


def _option(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """The values of the options ``names`` in ``argv`` (``--x v`` and ``--x=v``)."""
    found = []
    for i, arg in enumerate(argv):
        key, eq, value = arg.partition("=")
        if key in names:
            found.append(value if eq else (argv[i + 1] if i + 1 < len(argv) else ""))
    return found


def _train_metrics(argv: list[str], cwd: Path | None) -> str | None:
    """The resolved ``metrics.json`` path a ``debench train --spec ...`` command line writes, else None."""
    at = next((i for i in range(1, len(argv)) if argv[i] == "train"
               and (Path(argv[i - 1]).name == "debench" or argv[i - 1] == "debench.cli")), None)
    if at is None:
        return None
    specs = _option(argv[at + 1:], ("--spec",))
    try:
        text = specs[0]
        if text.startswith("@"):
            text = (Path(cwd or ".") / text[1:]).read_text()
        metrics = Path(json.loads(text)["paths"]["metrics"])
    except (IndexError, OSError, ValueError, KeyError, TypeError):
        return None
    if not metrics.is_absolute():
        if cwd is None:
            return None
        metrics = cwd / metrics
    return os.path.realpath(metrics)


def _is_snakemake(argv: list[str]) -> bool:
    return (Path(argv[0]).name == "snakemake" or (len(argv) > 1 and Path(argv[1]).name == "snakemake")
            or argv[1:3] == ["-m", "snakemake"])


def _may_run_remotely(argv: list[str], cwd: Path) -> bool:
    """Whether a Snakemake command line (with its profiles) may submit jobs to other hosts."""
    if any(arg.partition("=")[0] in _REMOTE_FLAGS for arg in argv):
        return True
    if any(v not in ("local", "dryrun", "touch") for v in _option(argv, ("--executor", "-e"))):
        return True
    profiles = _option(argv, ("--profile", "--workflow-profile"))
    if not _option(argv, ("--workflow-profile",)) and (cwd / "profiles" / "default").is_dir():
        profiles.append(str(cwd / "profiles" / "default"))  # Snakemake 8's default workflow profile
    for name in profiles:
        if name == "none":
            continue
        places = [cwd / name, Path.home() / ".config" / "snakemake" / name, Path("/etc/xdg/snakemake") / name]
        folder = next((p for p in places if p.is_dir()), None)
        try:
            settings = yaml.safe_load(((folder or places[0]) / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            return True  # a profile this process cannot read: it may name any executor
        if not isinstance(settings, dict):
            return True
        if str(settings.get("executor", "local")) not in ("local", "dryrun", "touch") or any(
                k in settings for k in _REMOTE_KEYS):
            return True
    return False


def live_jobs(workdir: Path, proc: Path = Path("/proc")) -> Live | None:
    """The live ``debench train`` processes of this host and the Snakemake processes working in
    ``workdir`` (the folder above ``results/``), read from ``proc``; None without a ``/proc``.

    A process whose working directory cannot be read (another user's) counts as working in
    ``workdir``: a Snakemake that might run the jobs is never missed.
    """
    if not (proc / "self" / "cmdline").exists():
        return None
    workdir, live, me = Path(os.path.realpath(workdir)), Live(), os.getpid()
    try:
        entries = [d for d in proc.iterdir() if d.name.isdigit() and int(d.name) != me]
    except OSError:
        return None
    for d in entries:
        try:
            raw = (d / "cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        argv = [a.decode(errors="replace") for a in raw.split(b"\0")[:-1 if raw.endswith(b"\0") else None]]
        if not argv:
            continue  # a zombie or a kernel thread
        try:
            cwd = Path(os.readlink(d / "cwd"))
        except OSError:
            cwd = None
        metrics = _train_metrics(argv, cwd)
        if metrics is not None:
            live.trains[metrics] = int(d.name)
        elif _is_snakemake(argv) and (cwd is None or cwd == workdir):
            live.snakemakes.append(int(d.name))
            live.remote = live.remote or _may_run_remotely(argv, cwd or workdir)
    return live


_PROGRESS = re.compile(r"^\[[^\]]+\] epoch \d+")
_FINISHED = re.compile(r"^\S+ \S+ seed \d+: status (\S+?),")
_ERROR_LINE = re.compile(r"^debench [\w-]+: (error: |out of GPU memory)")


def log_end(log: Path) -> tuple[str, str] | None:
    """How a job's log ends: ``("error", last line)`` for a traceback after the last progress line or
    a ``debench ...: error:`` line, ``("finished", status line)`` when ``debench train`` printed the
    run's status, else None (still training, or cut off)."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln]
    if not lines:
        return None
    last_progress = max((i for i, ln in enumerate(lines) if _PROGRESS.match(ln)), default=-1)
    if _FINISHED.match(lines[-1]):
        return "finished", lines[-1]
    if _ERROR_LINE.match(lines[-1]) or any(
            ln.startswith("Traceback (most recent call last)") for ln in lines[last_progress + 1:]):
        return "error", lines[-1]
    return None


def run_rel(run: tuple) -> Path:
    """A run's folder under ``runs/``, ``checkpoints/`` and ``logs/train/``: experiment/dataset/model/seed<k>."""
    return Path(run[0]) / run[1] / run[2] / f"seed{run[3]}"


def checkpoint_epoch(results: Path, run: tuple) -> int | None:
    """The epoch of a run's newest checkpoint (in its newest config-hash folder), None without one."""
    ckpts = _checkpoints(results, run_rel(run))
    epochs = [int(m.group(1)) for q in ckpts if (m := re.match(r"ckpt-epoch(\d+)\.pt$", q.name))]
    return max(epochs) if epochs else None


def resumable(results: Path, runs: list[tuple]) -> list[Path]:
    """The ``metrics.json`` paths of the runs that are not finished but have a checkpoint, the
    furthest checkpoint first: a restarted campaign resumes these before it starts a new seed, so
    a partly trained seed finishes first (Snakemake alone would pick any unfinished job)."""
    out = []
    for run in runs:
        metrics = results / "runs" / run_rel(run) / "metrics.json"
        if not metrics.exists() and (epoch := checkpoint_epoch(results, run)) is not None:
            out.append((-epoch, metrics))
    return [m for _, m in sorted(out)]


def to_train(results: Path, runs: list[tuple], published: set[tuple]) -> list[Path]:
    """The ``metrics.json`` paths of the runs still to train: not finished here and not in the
    published table, those with a checkpoint first (furthest first), then the rest in config order.
    The campaign script passes them to Snakemake as its targets when it skips published runs."""
    keep = [run for run in runs if run not in published]
    first = resumable(results, keep)
    rest = [results / "runs" / run_rel(run) / "metrics.json" for run in keep]
    return first + [m for m in rest if not m.exists() and m not in first]


PUBLISHED_FILE = "PUBLISHED"  # in results/<preset>/: the published table whose finished runs are not retrained


def _workflow_dir(results: Path) -> Path:
    """The workflow folder above ``results/<preset>``, found without following links: a campaign's
    ``results/<preset>`` may link to its state kept outside the checkout (``scripts/cpu_campaign.sh``)."""
    return Path(os.path.abspath(results)).parent.parent


def campaign_state(results: Path, environ: dict | None = None) -> Path | None:
    """Where ``scripts/cpu_campaign.sh`` keeps ``results/<preset>`` by default, outside the checkout:
    ``${XDG_STATE_HOME:-~/.local/state}/debench<workflow folder>/results/<preset>`` (the script's
    rule; a test holds the two equal). None without a home folder."""
    env = os.environ if environ is None else environ
    home = env.get("XDG_STATE_HOME") or (f"{env['HOME']}/.local/state" if env.get("HOME") else "")
    if not home:
        return None
    return Path(f"{home}/debench{_workflow_dir(results)}") / "results" / Path(results).name


def published_source(results: Path, given: str | None = None) -> Path | None:
    """The published run table a preset's campaign skips: ``given`` (``--published``), else the path
    ``results/<preset>/PUBLISHED`` holds, relative to the workflow folder above ``results/``; None
    when neither names one.

    Raises:
        FileNotFoundError: the table named does not exist (the message says who named it).
    """
    if given is None:
        note = results / PUBLISHED_FILE
        if not note.is_file() or not note.read_text().strip():
            return None
        path = Path(note.read_text().strip())
        path = path if path.is_absolute() else _workflow_dir(results) / path
        if not path.is_file():
            raise FileNotFoundError(f"{note} names {path}, which does not exist: restore it, or delete {note} "
                                    "to train every run of the preset here")
        return path
    if not Path(given).is_file():
        raise FileNotFoundError(f"--published {given}: no such file")
    return Path(given)


def finished_rows(table: Path) -> dict[tuple, dict]:
    """The row of each finished (``status`` ok) run in a run table (``results/published/runs.csv``,
    written by ``debench merge-runs``), by ``(experiment, dataset, model, seed)``."""
    with Path(table).open(newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"experiment", "dataset", "model", "seed", "status"}
    if rows and not need <= rows[0].keys():
        raise ValueError(f"{table}: not a run table: no column(s) {sorted(need - rows[0].keys())}")
    return {(r["experiment"], r["dataset"], r["model"], int(float(r["seed"]))): r for r in rows if r["status"] == "ok"}


def published_commit(table: Path, runs: list[tuple], finished: dict[tuple, dict] | None = None) -> str | None:
    """The commit at which ``table``'s finished runs among ``runs`` were trained (their
    ``provenance.git_commit``): a campaign restarted on a new machine pins it, so its remaining seeds
    run the code its published ones ran. None when the table holds none of ``runs`` finished.

    Raises:
        ValueError: those runs ran at several commits or on a tree with uncommitted changes (no one
            commit holds their code), or the table has no ``provenance.git_commit`` column.
    """
    finished = finished_rows(table) if finished is None else finished  # (already read by the caller)
    rows = [finished[run] for run in runs if run in finished]
    if not rows:
        return None
    if "provenance.git_commit" not in rows[0]:
        raise ValueError(f"{table}: no column provenance.git_commit: cannot tell which code its runs ran")
    name = lambda r: f"{r['model']} seed {r['seed']}"  # noqa: E731
    dirty = [name(r) for r in rows if r.get("provenance.git_dirty", "").strip().lower() in ("true", "1")]
    if dirty:
        raise ValueError(f"{table}: {', '.join(dirty)} ran on a tree with uncommitted changes: no commit holds "
                         "that code; name the commit to run (CAMPAIGN_COMMIT=...)")
    commits = {r["provenance.git_commit"].strip() for r in rows}
    if len(commits) > 1 or not next(iter(commits)):
        listed = ", ".join(f"{name(r)} at {r['provenance.git_commit'] or '(none)'}" for r in rows)
        raise ValueError(f"{table}: the published runs do not name one commit ({listed}); name the commit to "
                         "run (CAMPAIGN_COMMIT=...)")
    return commits.pop()


def _checkpoints(results: Path, rel: Path) -> list[Path]:
    """A run's checkpoints, oldest first, in its newest config-hash folder only (another folder
    belongs to a superseded configuration); one removed while listed is left out."""
    def mtime(q: Path) -> float:
        try:
            return q.stat().st_mtime
        except OSError:
            return float("nan")

    ckpts = [(t, q) for q in (results / "checkpoints" / rel).glob("*/ckpt-epoch*.pt") if (t := mtime(q)) == t]
    ckpts.sort(key=lambda tq: tq[0])
    return [q for _, q in ckpts if q.parent == ckpts[-1][1].parent]


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
             now: float | None = None, live: Live | None | bool = True,
             protocols: dict[tuple, dict] | None = None, published: set[tuple] | None = None,
             published_from: str | None = None) -> Progress:
    """Classify every expected run of ``results`` (``results/<preset>``) and estimate the time left.

    Args:
        results: the preset's results folder.
        runs: the runs the config expects, as ``(experiment, dataset, model, seed)``.
        preset: its name, for the summary line.
        stale_s: seconds after which a job's quiet log without a record counts as failed, where
            this host cannot tell whether its process lives.
        now: the current time (tests pass it).
        live: the host's live jobs (:func:`live_jobs`); True (default) reads them for the folder
            above ``results/``; None: unknown, the log's age decides.
        protocols: each run's protocol (:func:`run_protocol`); with them, an unfinished run's time
            left comes from the pace of its model's epochs so far (:func:`pace`), which a campaign
            of long, resumed runs needs: its first run finishes hours after the others start.
        published: the runs a published table holds finished (:func:`finished_rows`); one of
            them with nothing here counts as published, not left.
        published_from: that table's path, for the summary line.

    Returns:
        A :class:`Progress`.
    """
    now = time.time() if now is None else now
    if live is True:
        live = live_jobs(_workflow_dir(results))
    out, spent = Progress(preset, published_from=published_from), {}
    for run in runs:
        rel = run_rel(run)
        metrics = results / "runs" / rel / "metrics.json"
        log = results / "logs" / "train" / rel.parent / f"seed{run[3]}.log"
        if metrics.exists():
            try:
                record = read_record(metrics)  # parsed and checked against the run-record schema
            except RecordFormatError as exc:
                end = log_end(log)
                out.invalid.append((run, str(exc) + (
                    f"; its job's log ends with {end[1]!r}: the run finished and its record was damaged "
                    "since; delete the record to rerun it" if end and end[0] == "finished" else "")))
                continue
            if record["status"] == "ok":
                out.done.append(run)
                seconds = _duration(results, run, record)
                if seconds is not None:
                    spent.setdefault(run[2], []).append(seconds)
            else:
                out.failed.append(run)
                out.why[run] = f"record status {record['status']}"
        elif run in (published or ()) and not log.exists():
            out.published.append(run)  # a job of it here (running, stopped) still shows as such
        elif log.exists():
            _classify_job(out, results, run, log, os.path.realpath(metrics), live, now - _mtime(log) < stale_s)
        else:
            out.left.append(run)
    _estimate(out, results, spent, protocols)
    return out


def _estimate(out: Progress, results: Path, spent: dict[str, list[float]], protocols: dict | None) -> None:
    """Set ``out.eta_s``: each unfinished run's remaining steps at the pace of its model's epochs so
    far (:func:`pace`; needs ``protocols``), else the mean wall time of its model's finished runs (a
    running run counts half); divided by the jobs running at once. Left None when a run has neither."""
    every = [s for v in spent.values() for s in v]
    mean = sum(every) / len(every) if every else None
    paces: dict[tuple, Pace] = {}
    own: dict[tuple, Pace] = {}  # each running or stopped run's pace, its epochs.csv read once
    if protocols is not None:
        for run in out.running + out.stopped:
            if (p := pace(results, run)) is not None:
                own[run] = p
                key = _pace_key(run, protocols)
                if key not in paces or p.epochs > paces[key].epochs:
                    paces[key] = p
    work, paced, averaged = 0.0, 0, 0
    for run in out.left + out.stopped + out.running:
        p = paces.get(_pace_key(run, protocols)) if protocols is not None else None
        total = planned_steps(protocols.get(run), p.steps_per_epoch) if p is not None else None
        if p is not None and total:
            if run in out.running:
                done = own.get(run, p).step
            else:
                epoch = checkpoint_epoch(results, run) if run in out.stopped else None
                done = round((epoch or 0) * p.steps_per_epoch)
            work += max(total - done, 0) * p.step_s
            paced += 1
            continue
        finished = spent.get(run[2])
        seconds = sum(finished) / len(finished) if finished else mean
        if seconds is None:
            return
        work += seconds / 2 if run in out.running else seconds
        averaged += 1
    if paced or averaged:
        out.eta_s, out.durations, out.paced = work / max(len(out.running), 1), len(every) if averaged else 0, paced


def _pace_key(run: tuple, protocols: dict) -> tuple:
    """Runs that train at one pace: the same dataset, model and batch size."""
    return run[1], run[2], (protocols.get(run) or {}).get("batch_size")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _classify_job(out: Progress, results: Path, run: tuple, log: Path, metrics: str, live: Live | None,
                  fresh: bool) -> None:
    """A run with a job log and no record: running, failed or stopped (the module's rules)."""
    if live is not None and metrics in live.trains:
        out.running.append(run)
        return
    end = log_end(log)
    if end is not None:
        out.failed.append(run)
        out.why[run] = (f"its log ends with {end[1]!r}" if end[0] == "error" else
                        f"its log ends with {end[1]!r} but it has no metrics.json (removed since?)")
        return
    if live is not None and not (live.snakemakes and live.remote):
        epoch = checkpoint_epoch(results, run)
        out.stopped.append(run)
        out.why[run] = ("no live process; " + (f"resumes from checkpoint epoch {epoch}" if epoch is not None
                                               else "no checkpoint: restarts from epoch 1")
                        + ("" if live.snakemakes else
                           f"; no Snakemake works in {_workflow_dir(results)}: rerun it "
                           "(--rerun-incomplete) to resume"))
        return
    if fresh:
        out.running.append(run)
    else:
        out.failed.append(run)
        out.why[run] = "its log has been quiet too long and no record was written"


def run_protocol(config: dict, run: tuple) -> dict:
    """The protocol a loaded ``config`` gives ``run`` (defaults and overrides applied)."""
    from debench.config import run_identity

    return run_identity(config, *run)["protocol"]


@dataclass
class Pace:
    """How fast a run trains, from its ``epochs.csv`` (:func:`pace`)."""

    epoch: int  # the last epoch written
    step: int  # its step
    steps_per_epoch: float
    epoch_s: float  # seconds per epoch: the median epoch, as wall time when the checkpoints tell it
    epochs: int  # how many epochs the median is over
    wall: bool  # epoch_s includes evaluation and checkpoint (else training alone)
    test_error: float | None  # after the last epoch, in %

    @property
    def step_s(self) -> float:
        return self.epoch_s / self.steps_per_epoch


def pace(results: Path, run: tuple) -> Pace | None:
    """A run's pace: the median of its epochs' training times (``epoch_time_s``), so an epoch slowed
    by other work on the machine, or paused, does not set the estimate, scaled to wall time (with
    evaluation and checkpoint) by the ratio of the gap between its two newest checkpoints to the
    last epoch's training time. That ratio is used only between 1 and 2: a gap across a stop and a
    restart says nothing of an epoch, and the pace is then training only. None without a finished
    epoch."""
    try:
        with (results / "runs" / run_rel(run) / "epochs.csv").open() as f:
            rows = list(csv.DictReader(f))
        last = rows[-1]
        epoch, step = int(last["epoch"]), int(last["step"])
    except (OSError, IndexError, KeyError, ValueError):
        return None
    times = []
    for row in rows:
        try:
            times.append(float(row["epoch_time_s"]))
        except (KeyError, TypeError, ValueError):
            continue
    times = [t for t in times if t > 0]
    if not times or epoch <= 0:
        return None
    median = statistics.median(times)
    ckpts = _checkpoints(results, run_rel(run))
    ratio = None
    if len(ckpts) >= 2:
        try:
            ratio = (ckpts[-1].stat().st_mtime - ckpts[-2].stat().st_mtime) / float(last["epoch_time_s"])
        except (OSError, KeyError, TypeError, ValueError, ZeroDivisionError):
            ratio = None
    wall = ratio is not None and 1.0 <= ratio <= 2.0
    try:
        error = 100.0 - float(last["test_accuracy"])
    except (KeyError, TypeError, ValueError):
        error = None
    return Pace(epoch, step, step / epoch, median * (ratio if wall else 1.0), len(times), wall, error)


def planned_steps(protocol: dict | None, steps_per_epoch: float) -> int | None:
    """The steps a run's protocol plans: its ``iterations``, or ``epochs`` times the steps per epoch."""
    protocol = protocol or {}
    if protocol.get("iterations"):
        return int(protocol["iterations"])
    return round(protocol["epochs"] * steps_per_epoch) if protocol.get("epochs") else None


def running_line(results: Path, run: tuple, protocol: dict | None = None) -> str | None:
    """One line on a running run, from its ``epochs.csv`` and checkpoint times: epoch, step, the
    last test error, its pace (:func:`pace`: the median epoch) and the time it has left at that pace.
    None when no epoch has finished.

    Args:
        results: the preset's results folder.
        run: ``(experiment, dataset, model, seed)``.
        protocol: the run's protocol (:func:`run_protocol`): its ``iterations``, or its
            ``epochs`` times the steps per epoch read from the run's rows, give the steps planned.
    """
    p = pace(results, run)
    if p is None:
        return None
    total = planned_steps(protocol, p.steps_per_epoch)
    parts = [f"running {'/'.join(map(str, run[:3]))}/seed{run[3]}: epoch {p.epoch}"
             + (f" of {-(-total // round(p.steps_per_epoch))}" if total else ""),
             f"step {p.step}" + (f"/{total}" if total else "")]
    if p.test_error is not None:
        parts.append(f"test error {p.test_error:.2f}% after epoch {p.epoch}")
    parts.append(f"{p.epoch_s:.0f} s per epoch (median of {p.epochs}, {'wall' if p.wall else 'training only'})")
    if total and total > p.step:
        parts.append(f"about {_hms((total - p.step) * p.step_s)} left for this run")
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
