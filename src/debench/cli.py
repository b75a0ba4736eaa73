"""The ``debench`` command line; ``debench --help`` lists its commands (:func:`build_parser`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def _spec(arg: str) -> dict:
    if arg.startswith("@"):
        return json.loads(Path(arg[1:]).read_text())
    return json.loads(arg)


def _hold_gpu_slot(spec: dict, mode: str, lock_dir: str | None, units: int = 1):
    """``--gpu-slots auto``: lock a free GPU of this host for the process (before CUDA starts)."""
    if mode == "off" or str(spec.get("runtime", {}).get("device", "auto")) == "cpu":
        return None
    from debench.gpu_slots import acquire

    jobs = spec.get("runtime", {}).get("jobs_per_gpu", 1)
    return acquire(lock_dir=Path(lock_dir) if lock_dir else None, jobs_per_gpu=jobs, units=units)


def cmd_train(a: argparse.Namespace) -> int:
    spec = _spec(a.spec)
    slot = _hold_gpu_slot(spec, a.gpu_slots, a.gpu_lock_dir, a.gpu_units)  # held until this process exits
    if spec.get("kind") == "measure":  # an experiment of kind measure (debench.measurement)
        from debench.measurement import measure as train
    else:
        from debench.train.loop import train

    if a.threads:
        spec.setdefault("runtime", {})["threads"] = a.threads
    if a.tracking_ids:
        init = json.loads(Path(a.tracking_ids).read_text())
        tracking = spec.setdefault("tracking", {})
        tracking["experiment_id"] = init["experiment_ids"].get(spec["experiment"])
        if init.get("reachable") is False and tracking.get("enabled", True):
            # `track init` found the store down: no run waits on it; `debench track sync` uploads later.
            logging.getLogger("debench.track").warning(
                "MLflow store %s was unreachable at `track init`: this run is not tracked live; "
                "metrics.json is complete; upload later with `debench track sync`", init.get("tracking_uri"))
            tracking["enabled"] = False
    try:
        record = train(spec)
    except Exception as exc:
        if type(exc).__name__ != "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch here
            raise
        jobs = spec.get("runtime", {}).get("jobs_per_gpu", 1)
        print(f"debench train: out of GPU memory: model {spec['model']}, batch size "
              f"{spec.get('protocol', {}).get('batch_size', '?')}, experiment {spec['experiment']}, "
              f"runtime.jobs_per_gpu {jobs} ({a.gpu_units} of its slots held on GPU "
              f"{slot.device if slot else '?'}); Snakemake retries it alone on a GPU when jobs_per_gpu > 1, "
              "else lower the batch size or use a larger card", file=sys.stderr)
        return 3
    key = record["metric"]
    print(f"{record['model']} {record['dataset']} seed {record['seed']}: status {record['status']}, "
          f"{key} {record.get(key)}" + (f", GPU {slot.device}" if slot else ""), file=sys.stderr)
    return 0


def cmd_prepare(a: argparse.Namespace) -> int:
    from debench.data.cache import prepare_dataset

    options = json.loads(a.options) if a.options else {}
    meta = prepare_dataset(a.dataset, a.source, Path(a.out), **options)
    print(f"cached {a.dataset} ({meta['source']}): {meta['train_size']} train / {meta['test_size']} test "
          f"-> {a.out} (sha256 {meta['sha256'][:12]})", file=sys.stderr)
    return 0


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """``header`` and ``rows`` as lines of aligned columns: each column as wide as its longest cell,
    two spaces between columns, the last column unpadded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([*(f"{str(c):<{w}}" for c, w in zip(r, widths)), str(r[-1])]) for r in [header, *rows]]


def cmd_models(a: argparse.Namespace) -> int:
    from debench.registry import list_models, model_info

    names = list_models(a.pattern, family=a.family)
    if not names:
        print(f"debench models: no registered model matches {a.pattern!r}"
              + (f" in family {a.family!r}" if a.family else ""), file=sys.stderr)
        return 1
    rows = [(n, (i := model_info(n)).family, i.task, i.scheme, i.paper) for n in names]
    print("\n".join(table(("model", "family", "task", "scheme", "paper"), rows)))
    return 0


def cmd_track_init(a: argparse.Namespace) -> int:
    from debench.track.atomic import atomic_write_json
    from debench.track.tracker import init_store, redact

    ids, reachable = {}, None
    if a.enabled:
        try:
            ids, reachable = init_store(a.uri, a.experiments), True
        except Exception as exc:  # connection refused, timeout, bad credentials: tracking is optional
            reachable = False
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"debench track init: warning: MLflow store {redact(a.uri)} unreachable "
                  f"({type(exc).__name__}: {redact(first_line)[:200]}); runs train untracked and "
                  "metrics.json stays complete; upload later with `debench track sync`", file=sys.stderr)
    atomic_write_json(a.out, {"tracking_uri": redact(a.uri), "experiment_ids": ids, "reachable": reachable})
    return 0


def cmd_track_sync(a: argparse.Namespace) -> int:
    from debench.track.sync import sync
    from debench.track.tracker import redact

    rep = sync(Path(a.runs), a.uri, min_age_s=a.min_age, dry_run=a.dry_run)
    for p in rep.uploaded:
        print(f"{'would upload' if a.dry_run else 'uploaded'} {p}", file=sys.stderr)
    for s in rep.skipped:
        print(f"skipped {s}", file=sys.stderr)
    print(f"{redact(a.uri)}: {len(rep.uploaded)} {'would upload' if a.dry_run else 'uploaded'}, "
          f"{len(rep.complete)} already complete, {len(rep.skipped)} skipped", file=sys.stderr)
    return 0


def cmd_mlflow_server(a: argparse.Namespace) -> int:
    import os
    import signal
    import subprocess

    from debench.track.tracker import redact
    from debench.track.ui import server_args

    root = Path(a.root).resolve()
    uri = a.backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
    artifacts = a.artifacts_destination or str(root / "artifacts")
    if uri.startswith("sqlite:") or "://" not in artifacts:
        root.mkdir(parents=True, exist_ok=True)
    workers = a.workers or (1 if uri.startswith("sqlite:") else 4)  # SQLite takes one writer at a time
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", a.host, "--port", str(a.port),
           "--backend-store-uri", uri, "--serve-artifacts", "--artifacts-destination", artifacts,
           "--workers", str(workers), *server_args()]
    if a.allowed_hosts:
        cmd += ["--allowed-hosts", a.allowed_hosts]
    print(f"MLflow server on http://{a.host}:{a.port} (store {redact(uri)}, artifacts {artifacts}); "
          f"jobs: mlflow.tracking_uri or MLFLOW_TRACKING_URI=http://<this host>:{a.port}", file=sys.stderr)
    # its own process group, so that stopping this process (by pid) stops the server's workers too
    server = subprocess.Popen(cmd, start_new_session=True)

    def stop(signum, frame):
        os.killpg(server.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return server.wait()
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def cmd_aggregate(a: argparse.Namespace) -> int:
    from debench.report.aggregate import aggregate

    aggregate(Path(a.runs), Path(a.published), Path(a.out), tolerances=json.loads(a.tolerances or "{}"),
              expected=json.loads(Path(a.expected).read_text()) if a.expected else None,
              metrics=[Path(m) for m in a.metrics] if a.metrics is not None else None, unreadable=a.unreadable)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from debench.report.html import build_report

    build_report(Path(a.tables), Path(a.out), runs_dir=Path(a.runs) if a.runs else None)
    return 0


def cmd_regenerate(a: argparse.Namespace) -> int:
    from debench.report.regenerate import regenerate

    regenerate(Path(a.runs_csv), Path(a.out), Path(a.published) if a.published else None,
               tolerances=json.loads(a.tolerances) if a.tolerances else None,
               runs_dir=Path(a.runs_dir) if a.runs_dir else None)
    print(f"tables and report rebuilt from {a.runs_csv} -> {a.out}", file=sys.stderr)
    return 0


def cmd_merge_runs(a: argparse.Namespace) -> int:
    from debench.report.runs import merge_runs

    merged = merge_runs([Path(s) for s in a.sources], Path(a.into), copy_artifacts=a.copy_artifacts)
    print(f"{len(merged)} run(s) in {a.into}", file=sys.stderr)
    return 0


def cmd_plan(a: argparse.Namespace) -> int:
    from debench.config import load_config
    from debench.plan import format_plan, load_measurements, measurement_runs, plan, scaling_error
    from debench.status import find_config

    path = find_config(a.config or a.configfile)
    config = load_config(path)
    measurements = load_measurements(Path(a.measurements))
    rows = plan(config, measurements)
    n_measure = measurement_runs(config)
    print(f"plan for {path} (preset {config['preset']}): {sum(r['runs'] for r in rows)} training runs"
          + (f", and {n_measure} measurement runs (kind: measure; no training, not estimated)" if n_measure else ""))
    print(format_plan(rows, scaling_error(measurements)))
    if a.scaling:
        err = scaling_error(measurements)
        print("\nFLOP scaling checked on the CPU: predicted / measured time per model (from ResNet-20's)")
        for model, r in sorted((err or {}).get("ratios", {}).items(), key=lambda kv: kv[1]):
            print(f"  {model:34s} {r:6.2f}")
    return 0


def cmd_calibrate(a: argparse.Namespace) -> int:
    from debench.calibrate import calibrate
    from debench.config import load_config, resolve_models
    from debench.registry import list_models
    from debench.status import find_config

    config = None
    if a.configfile != "none":
        path = find_config(a.configfile)
        try:
            config = load_config(path)
        except ModuleNotFoundError as exc:  # a GPU box without jsonschema: the protocols as written
            import yaml

            print(f"debench calibrate: {exc.name} is not installed: {path} read without schema "
                  "validation or defaults", file=sys.stderr)
            config = yaml.safe_load(path.read_text())
    models = resolve_models(a.models, "--models") if a.models else list_models()
    runtime = dict((config or {}).get("runtime", {}))
    if a.compile is not None:
        runtime["compile"] = {"off": False, "auto": "auto"}.get(a.compile, a.compile)
    rows = calibrate(models, config, device_str=a.device, threads=a.threads, steps=a.steps, warmup=a.warmup,
                     count_flops=not a.no_flops, max_step_s=a.max_step_s, max_batch=a.max_batch,
                     model_timeout_s=a.model_timeout_s, runtime=runtime,
                     out=Path(a.out) if a.out else None, resume=a.resume)
    return 0 if any("median_img_s" in r for r in rows) else 1


REPORT_COMMANDS = ("aggregate", "report", "regenerate", "merge-runs")


def _user_errors(cmd: str) -> tuple[type[Exception], ...]:
    """Errors shown as one line (exit 2). Report commands import nothing that imports torch."""
    from debench.report.schema import ReportInputError

    if cmd in REPORT_COMMANDS:
        return (ReportInputError,)
    from debench.errors import ConfigError, DatasetError
    from debench.registry import UnknownModelError

    return (ConfigError, DatasetError, UnknownModelError, ReportInputError)


def _shown(path: Path) -> str:
    """A path as a user reads it: relative to the working folder when inside it."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)


def cmd_status(a: argparse.Namespace) -> int:
    from debench.config import load_config
    from debench.status import (campaign_state, expected_runs, find_config, finished_rows, progress,
                                published_commit, published_source, resumable, run_protocol, running_line, to_train)

    if not Path(a.results).is_dir():
        print(f"debench status: error: results folder {a.results} does not exist (--results names the folder "
              "holding <preset>/, `results` of the workflow folder by default)", file=sys.stderr)
        return 2
    path = find_config(a.config)
    preset, runs = expected_runs(path)
    results = Path(a.results) / preset
    state = campaign_state(results)
    if not results.exists() and state is not None and state.is_dir():
        print(f"debench status: note: {results} does not exist here, but {state} holds this preset's campaign "
              f"state (a recreated checkout?): `make cpu-campaign CAMPAIGN={preset}` links it back and resumes",
              file=sys.stderr)
    try:
        table = published_source(results, a.published)
        finished = finished_rows(table) if table is not None else {}
        published = set(finished)
    except (OSError, ValueError) as exc:
        print(f"debench status: error: {exc}", file=sys.stderr)
        return 2
    if a.published_commit:
        if table is None:
            print("debench status: error: --published-commit needs a published table (--published RUNS_CSV, or "
                  f"{results / 'PUBLISHED'})", file=sys.stderr)
            return 2
        try:
            commit = published_commit(table, runs, finished)
        except (KeyError, ValueError) as exc:
            print(f"debench status: error: {exc}", file=sys.stderr)
            return 2
        if commit:
            print(commit)
        return 0
    if a.resumable or a.to_train:
        for metrics in (to_train(results, runs, published) if a.to_train
                        else resumable(results, [r for r in runs if r not in published])):
            print(metrics)
        return 0
    config = load_config(path)
    protocols = {run: run_protocol(config, run) for run in runs}
    prog = progress(results, runs, preset, stale_s=60 * a.stale_min, protocols=protocols, published=published,
                    published_from=_shown(table) if table is not None else None)
    print(prog.line())
    for run in prog.running:
        line = running_line(results, run, protocols[run])
        if line:
            print(line)
    name = lambda run: f"{'/'.join(map(str, run[:3]))}/seed{run[3]}"  # noqa: E731
    for run in prog.stopped:  # always: no process trains them
        print(f"stopped {name(run)}: {prog.why[run]}")
    for run in prog.failed if a.verbose else []:
        print(f"failed: {name(run)} (log: {results / 'logs' / 'train' / name(run)}.log)"
              + (f": {prog.why[run]}" if run in prog.why else ""))
    for _, why in prog.invalid:  # always: a record the report would refuse
        print(f"invalid record: {why}")
    return 0


def cmd_fork_server(a: argparse.Namespace) -> int:
    from debench.forkserver.server import serve

    serve(a.socket, parent_pid=a.parent_pid, idle_s=a.idle_s)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``debench`` argument parser; its description names every subcommand (generated, so a new
    command cannot be left out of ``debench --help``)."""
    p = argparse.ArgumentParser(prog="debench", usage="%(prog)s [-h] COMMAND ...",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", prog="debench",
                           help=argparse.SUPPRESS)  # listed in the description

    t = sub.add_parser("train", help="train one run from a JSON spec (the Snakemake train rule calls this)")
    t.add_argument("--spec", required=True, help="run spec as JSON, or @path to a JSON file")
    t.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    t.add_argument("--tracking-ids", default=None, help="experiments.json written by `debench track init`")
    t.add_argument("--gpu-slots", default="off", choices=["auto", "off"],
                   help="auto: hold a free GPU of this host for the run and set CUDA_VISIBLE_DEVICES to it "
                        "(debench.gpu_slots; a no-op without GPUs and inside SLURM jobs)")
    t.add_argument("--gpu-units", type=int, default=1,
                   help="slots of one GPU to hold (a model too large to share a GPU runtime.jobs_per_gpu ways)")
    t.add_argument("--gpu-lock-dir", default=None,
                   help="lock folder shared by the jobs of this host (default $DEBENCH_GPU_LOCK_DIR or "
                        "<tmp>/debench-gpu-slots)")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("prepare-data", help="cache one dataset under resources/")
    d.add_argument("--dataset", required=True)
    d.add_argument("--source", default="torchvision", choices=["torchvision", "npz", "synthetic"])
    d.add_argument("--out", required=True, help="path of the .npz cache (a .json sidecar is written beside)")
    d.add_argument("--options", default=None, help="JSON: npz_dir, download_dir, train_size, test_size, seed")
    d.set_defaults(func=cmd_prepare)

    m = sub.add_parser("models", help="list registered models")
    m.add_argument("pattern", nargs="?", default="*")
    m.add_argument("--family", default=None)
    m.set_defaults(func=cmd_models)

    tr = sub.add_parser("track", help="MLflow store management")
    tsub = tr.add_subparsers(dest="track_cmd", required=True)
    ti = tsub.add_parser("init", help="create the store and experiments once, before jobs fan out")
    ti.add_argument("--uri", required=True)
    ti.add_argument("--experiments", nargs="+", required=True)
    ti.add_argument("--out", required=True)
    ti.add_argument("--disabled", dest="enabled", action="store_false")
    ti.set_defaults(func=cmd_track_init)
    ts = tsub.add_parser("sync", help="upload runs whose MLflow run is missing or incomplete (after an outage)")
    ts.add_argument("--runs", required=True, help="folder searched for */metrics.json (results/<preset>/runs)")
    ts.add_argument("--uri", required=True, help="MLflow tracking URI to complete")
    ts.add_argument("--min-age", type=float, default=60.0,
                    help="seconds a metrics.json with a RUNNING MLflow run is left to its trainer")
    ts.add_argument("--dry-run", action="store_true", help="list what would be uploaded")
    ts.set_defaults(func=cmd_track_sync)

    ms = sub.add_parser("mlflow-server", help="a shared MLflow tracking server for parallel or cluster jobs")
    ms.add_argument("--root", default="results/mlflow-server",
                    help="folder of the default SQLite store and artifacts")
    ms.add_argument("--backend-store-uri", default=None,
                    help="SQLAlchemy URI of the store, e.g. postgresql://user:pw@db:5432/mlflow "
                         "(default: sqlite:///<root>/mlflow.db)")
    ms.add_argument("--artifacts-destination", default=None,
                    help="where the server keeps artifacts (default <root>/artifacts); jobs upload through it")
    ms.add_argument("--host", default="127.0.0.1", help="interface; 0.0.0.0 to serve cluster nodes")
    ms.add_argument("--port", type=int, default=5000)
    ms.add_argument("--workers", type=int, default=None, help="server workers (default 1 for SQLite, else 4)")
    ms.add_argument("--allowed-hosts", default=None,
                    help="Host headers accepted besides localhost (MLflow's --allowed-hosts), e.g. 'login1:5000'")
    ms.set_defaults(func=cmd_mlflow_server)

    ag = sub.add_parser("aggregate", help="collect metrics.json files into runs.csv and tables")
    ag.add_argument("--runs", required=True, help="folder searched for */metrics.json")
    ag.add_argument("--published", required=True, help="published_results.csv")
    ag.add_argument("--out", required=True, help="output folder for runs.csv and tables/")
    ag.add_argument("--tolerances", default=None,
                    help='JSON {metric: tolerance}: a number is absolute, a string such as "2%%" relative')
    ag.add_argument("--expected", default=None, help="JSON file listing the runs the config expects")
    ag.add_argument("--metrics", nargs="*", default=None,
                    help="exactly the metrics.json files the config asks for (the workflow passes them): "
                         "absent ones are listed as missing, any other record under --runs as stale")
    ag.add_argument("--unreadable", default="fail", choices=["fail", "show"],
                    help="fail (default): a damaged or incomplete metrics.json stops the aggregate, naming the "
                         "file; show: it is listed in the report as unreadable")
    ag.set_defaults(func=cmd_aggregate)

    r = sub.add_parser("report", help="plots and the self-contained HTML report from tables")
    r.add_argument("--tables", required=True)
    r.add_argument("--runs", default=None)
    r.add_argument("--out", required=True, help="report folder (report.html and plots)")
    r.set_defaults(func=cmd_report)

    rg = sub.add_parser("regenerate", help="rebuild tables, plots and the HTML report from a runs.csv (no training)")
    rg.add_argument("--runs-csv", required=True, help="stored runs, e.g. results/published/runs.csv")
    rg.add_argument("--out", required=True, help="output folder: runs.csv, tables/, report/")
    rg.add_argument("--published", default=None,
                    help="published_results.csv (default: config/reference/ of the working directory, else of "
                         "this checkout)")
    rg.add_argument("--tolerances", default=None,
                    help='JSON {metric: tolerance}, absolute (number) or relative ("2%%") (default: the survey\'s)')
    rg.add_argument("--runs-dir", default=None, help="run folders with model artifacts (optional)")
    rg.set_defaults(func=cmd_regenerate)

    mr = sub.add_parser("merge-runs", help="merge runs (runs.csv files or results folders) into one runs.csv")
    mr.add_argument("sources", nargs="+", help="runs.csv files, results/<preset>/ folders or folders of run folders")
    mr.add_argument("--into", required=True, help="the runs.csv to update (newest row per run wins)")
    mr.add_argument("--copy-artifacts", action="store_true",
                    help="copy the kept runs' model artifacts to runs/ beside --into (embedded by regenerate)")
    mr.set_defaults(func=cmd_merge_runs)

    pl = sub.add_parser("plan", help="runs, images and estimated device-hours of a config, before any job")
    pl.add_argument("config", nargs="?", default=None, help="the config file, or a preset name found in config/*.yaml")
    pl.add_argument("--configfile", default="config/config.yaml", help="the config file when none is given")
    pl.add_argument("--scaling", action="store_true", help="also list the FLOP-scaling check's ratio per model")
    pl.add_argument("--measurements", default="docs/measurements",
                    help="folder of throughput JSON files (benchmarks/throughput.py --out, debench calibrate --out)")
    pl.set_defaults(func=cmd_plan)

    ca = sub.add_parser("calibrate", help="time a few training steps of every registered model here (for debench plan)")
    ca.add_argument("--configfile", default="config/config.yaml",
                    help="config file or preset name whose protocols (batch size, optimizer) are timed; 'none': defaults")
    ca.add_argument("--models", nargs="+", default=None, help="model names or globs (default: every registered model)")
    ca.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ca.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ca.add_argument("--steps", type=int, default=3, help="timed optimizer steps per model")
    ca.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation, cuDNN autotuning)")
    ca.add_argument("--max-step-s", type=float, default=None,
                    help="stop timing a model once its timed steps took this many seconds (at least one step)")
    ca.add_argument("--model-timeout-s", type=int, default=None,
                    help="give up on a model after this many seconds (an error row) and go on")
    ca.add_argument("--max-batch", type=int, default=None,
                    help="time at most this many images per step (a slow CPU; rows keep the protocol's batch_size "
                    "and say timed_batch)")
    ca.add_argument("--compile", default=None, choices=["auto", "off", "default", "reduce-overhead"],
                    help="override runtime.compile (default: the config's, as a run would use)")
    ca.add_argument("--no-flops", action="store_true", help="skip counting FLOPs per image")
    ca.add_argument("--out", default=None, help="write the rows as JSON here (rewritten after every model)")
    ca.add_argument("--resume", action="store_true", help="keep the models --out already measured on this device")
    ca.set_defaults(func=cmd_calibrate)

    st = sub.add_parser("status", help="one line: runs done, running, stopped, failed and left, and the time left")
    st.add_argument("config", help="the config file, or a preset name found in config/*.yaml")
    st.add_argument("--results", default="results", help="folder holding results/<preset>/")
    st.add_argument("--stale-min", type=float, default=30.0,
                    help="minutes after which a job's quiet log without metrics.json counts as failed, where this "
                         "host cannot tell whether its process lives (no /proc, a cluster executor)")
    st.add_argument("-v", "--verbose", action="store_true", help="also list each failed run and its log")
    st.add_argument("--resumable", action="store_true",
                    help="only list the metrics.json of unfinished runs that have a checkpoint, furthest first "
                         "(for snakemake --prioritize: resume those before starting new ones)")
    st.add_argument("--to-train", action="store_true",
                    help="only list the metrics.json of the runs still to train: not finished here and not in the "
                         "published table, resumable ones first (the campaign script's Snakemake targets)")
    st.add_argument("--published", default=None, metavar="RUNS_CSV",
                    help="a run table (results/published/runs.csv) whose finished runs count as published, not "
                         "left (default: the table results/<preset>/PUBLISHED names, if that file exists)")
    st.add_argument("--published-commit", action="store_true",
                    help="only print the commit the published table's finished runs of this preset ran at (nothing "
                         "when it holds none; an error when they ran at several): the campaign script pins it on a "
                         "new machine")
    st.set_defaults(func=cmd_status)

    fs = sub.add_parser("fork-server", help="preload torch, MLflow and debench once and fork each `debench train` "
                        "of this host from it (the Snakefile starts one per local workflow; debench.forkserver)")
    fs.add_argument("--socket", required=True, help="the Unix socket to listen on")
    fs.add_argument("--parent-pid", type=int, default=None, help="end, once idle, when this process has ended")
    fs.add_argument("--idle-s", type=float, default=900.0, help="end after this many seconds without a job")
    fs.set_defaults(func=cmd_fork_server)

    import shutil
    import textwrap

    helps = {c.dest: c.help for c in sub._choices_actions}
    width, columns = max(map(len, sub.choices)), max(shutil.get_terminal_size().columns - 2, 60)
    p.description = "debench: the DE-inspired deep nets benchmark. Commands (`debench COMMAND --help`):\n" + "\n".join(
        textwrap.fill(f"  {name:<{width}}  {helps.get(name) or ''}", columns, subsequent_indent=" " * (width + 4))
        for name in sub.choices)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = build_parser()
    a = p.parse_args(argv)
    try:
        return a.func(a)
    except _user_errors(a.cmd) as exc:
        print(f"debench {a.cmd}: error: {exc}", file=sys.stderr)
        return 2


def run() -> None:
    """The console script: :func:`main`, then, after a ``train`` that returned, a fast exit.

    A training process ends with everything durable: ``metrics.json`` and the checkpoint are
    fsynced and renamed, and the MLflow run is ended through the client, each write committed.
    What remains is the interpreter's teardown of torch and MLflow's module graph, which costs
    about 1.35 s per process on a 2-core CPU (``benchmarks/job_overhead.py``), about a quarter
    of a smoke-preset job. So ``train`` flushes logging and the standard streams and leaves with
    ``os._exit``; the at-exit callbacks it skips (MLflow's fluent-run and telemetry flushes,
    torch.compile statistics) have nothing to do for a run ended through the client. An
    exception still unwinds and exits normally, with its traceback.
    """
    if len(sys.argv) > 1 and sys.argv[1] == "train":
        from debench.forkserver import delegate  # a local DAG's preloaded fork server, if any

        code = delegate(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    try:
        code = main()
        sys.stdout.flush()  # here, not at the interpreter's exit, where a closed pipe is not caught
    except BrokenPipeError:
        # the reader of our output left (`debench status ... | head -1`): no traceback, and the
        # exit status a shell gives a writer killed by SIGPIPE; stdout now points at /dev/null so
        # the interpreter's final flush does not fail the same way
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + 13)
    if len(sys.argv) > 1 and sys.argv[1] == "train":
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
