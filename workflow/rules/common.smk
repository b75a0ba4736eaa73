import json
import os
import sys
from pathlib import Path

from debench import forkserver
from debench.gpu_slots import schedule as gpu_schedule
from debench.config import (
    data_dir,
    expand_runs,
    run_identity,
    run_spec,
    validate_config,
)
from debench.errors import ConfigError
from debench.report.plots import PLOTS
from debench.report.tables import TABLE_NAMES, TABLE_SPECS
from debench.track.tracker import default_tracking_uri

# debench's own gate, as `debench plan` and `debench status` read a config: the schema with its
# defaults, then the cross-field checks. An error is one line naming the file, the key's path and
# line and the closest valid key; it ends the run before any job, without Snakemake's traceback
# (or, from snakemake.utils.validate, a dump of the whole schema and config).
try:
    validate_config(
        config,
        [str(f) for f in workflow.configfiles],
        schema_path=workflow.source_path("../schemas/config.schema.yaml"),
    )
except ConfigError as exc:
    sys.exit(f"debench: error: {exc}")

# The rules call `debench`: the one installed beside the interpreter running Snakemake comes
# first, so `.venv/bin/snakemake` works without activating the venv (jobs inherit this PATH;
# under --sdm conda the activated environment's own bin still goes in front).
os.environ.update(
    PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
)

PRESET = config["preset"]
RESULTS = f"results/{PRESET}"
DATA_DIR = data_dir(config)
RUNS = expand_runs(config)
# every survey table; one without runs in the preset is written as "not yet run"
TABLES = list(TABLE_NAMES)
EXPERIMENTS = sorted(config["experiments"])


wildcard_constraints:
    experiment=r"[A-Za-z0-9_]+",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",
    seed=r"\d+",


# the server of a local run (debench.forkserver): onstart starts it, onsuccess/onerror stop it
FORK_SERVER = []


def start_fork_server():
    """A local run forks its training jobs from one preloaded server (config runtime.fork_server, opt-in).

    The server starts with the thread variables Snakemake gives a train job (OMP_NUM_THREADS and
    the like, set to its threads: runtime.threads, at most --cores); a job whose variables differ
    runs in its own process (debench.forkserver).
    """
    if workflow.local_exec and config["runtime"].get("fork_server", False):
        threads = min(config["runtime"].get("threads", 1), workflow.cores or 1)
        FORK_SERVER.append(
            forkserver.start(f"{RESULTS}/logs/fork_server.log", threads=threads)
        )


def stop_fork_server():
    while FORK_SERVER:
        forkserver.stop(FORK_SERVER.pop())


def tracking_uri():
    """Config key mlflow.tracking_uri, else MLFLOW_TRACKING_URI, else SQLite under results/."""
    return (
        config["mlflow"].get("tracking_uri")
        or os.environ.get("MLFLOW_TRACKING_URI")
        or default_tracking_uri(RESULTS)
    )


def run_metrics(run):
    return f"{RESULTS}/runs/{run['experiment']}/{run['dataset']}/{run['model']}/seed{run['seed']}/metrics.json"


def all_metrics():
    return [run_metrics(r) for r in RUNS]


def data_cache(wildcards):
    """The run's dataset cache, ancient: rewriting it in place never reruns a finished run."""
    return ancient(f"{DATA_DIR}/{wildcards.dataset}.npz")


def data_options():
    opts = dict(config["data"].get("synthetic", {}))
    if config["data"].get("npz_dir"):
        opts["npz_dir"] = config["data"]["npz_dir"]
    opts["download_dir"] = f"{config['data']['cache_dir']}/downloads"
    return json.dumps(opts, sort_keys=True)


def train_spec(wildcards, input, output):
    spec = run_spec(
        config,
        wildcards.experiment,
        wildcards.dataset,
        wildcards.model,
        int(wildcards.seed),
        cache=str(input.data),
        metrics=str(output.metrics),
        checkpoints=f"{RESULTS}/checkpoints/{wildcards.experiment}/{wildcards.dataset}/{wildcards.model}/seed{wildcards.seed}",
        tracking={"enabled": config["mlflow"]["enabled"], "uri": tracking_uri()},
    )
    if (
        config["experiments"][wildcards.experiment].get("kind", "train") != "train"
    ):  # train specs unchanged
        spec["kind"] = config["experiments"][wildcards.experiment]["kind"]
    return json.dumps(spec, sort_keys=True)


def train_identity(wildcards):
    """The run's result-deciding settings as JSON (debench.config.run_identity).

    A function of the wildcards alone, so Snakemake records it with metrics.json and reruns
    the job when it changes; the full spec is computed from input and output, which Snakemake
    leaves out of that check.
    """
    identity = run_identity(
        config,
        wildcards.experiment,
        wildcards.dataset,
        wildcards.model,
        int(wildcards.seed),
    )
    return json.dumps(identity, sort_keys=True)


def train_threads(wildcards):
    """Cores one training job asks for (config runtime.threads); Snakemake caps it at --cores."""
    return config["runtime"].get("threads", 1)


# safe by default (debench.gpu_slots.schedule): with runtime.device cuda, or auto on a GPU host, a
# local run registers the resource gpu = GPUs x runtime.jobs_per_gpu itself (unless --resources gpu=
# names it) and each training job takes its units of it, so `snakemake --cores all` never packs more
# jobs onto a GPU than asked; the CPU, and a cluster executor, are unchanged
GPU_SCHEDULE = gpu_schedule(config["runtime"], local=workflow.local_exec)
if GPU_SCHEDULE.slots:
    if "gpu" not in workflow.global_resources:
        workflow.register_resource("gpu", GPU_SCHEDULE.slots)
    print(GPU_SCHEDULE.describe(), file=sys.stderr)


def train_gpu(wildcards, attempt):
    """GPU slots one training job takes (0 on the CPU); a retry after running out of memory runs alone."""
    return GPU_SCHEDULE.units(wildcards.model, attempt)


def train_retries():
    """Packed jobs (jobs_per_gpu > 1) get one retry, alone on a GPU, for an out-of-memory failure."""
    return 1 if GPU_SCHEDULE.slots and GPU_SCHEDULE.jobs_per_gpu > 1 else 0


def gpu_slots(wildcards, resources):
    """'auto' when the job holds GPU slots (the default on a GPU host, or a profile's train:gpu=1)."""
    return "auto" if getattr(resources, "gpu", 0) else "off"


def results_dir(runs_csv):
    """results/<preset>/ from the path of its runs.csv."""
    return Path(runs_csv).parent


def report_category(section):
    """The Snakemake report category of a survey section (a table name, or "overview")."""
    return TABLE_SPECS[section].title if section in TABLE_SPECS else "Across the survey"


def get_final_output():
    return [f"{RESULTS}/report/report.html", f"{RESULTS}/tables/summary.json"]
